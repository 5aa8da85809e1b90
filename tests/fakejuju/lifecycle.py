"""Lifecycle simulation: units and machines coming up and going away, as Juju 3.6 does it.

Each phase is one `step_delay` of the controller's clock; Juju's own periods (hook retry
backoff, forced-removal max-wait, the cleanup worker's period) are in seconds of that clock.
The Juju source each behaviour follows is named where it is implemented and in README.md.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
import re
from collections.abc import Callable, Collection

from tests.fakejuju import clock as clock_mod
from tests.fakejuju import model as model_mod

log = logging.getLogger(__name__)

FAIL_MODES = ("hook-error", "provisioning-error", "never-idle")
# apiserver/common/remove.go MaxWait: a forced removal without max-wait waits one minute.
DEFAULT_FORCE_MAX_WAIT = 60.0
# worker/cleaner/cleaner.go `period`: cleanups that are not due yet run at most this late.
CLEANUP_PERIOD = 30.0
# apiserver/facades/agent/retrystrategy: automatically-retry-hooks backoff.
RETRY_MIN = 5.0
RETRY_MAX = 300.0
RETRY_FACTOR = 2.0
RETRY_JITTER = 0.03
# Hooks a unit runs after its first idle (relations, leadership, config): executing again.
LATER_HOOKS = ("leader-settings-changed", "config-changed", "juju-info-relation-changed")
INSTALLING = "installing charm software"
RUNNING_INSTALL = "running install hook"
# worker/uniter/operation/runhook.go Execute: the one hook that never shows `executing`.
UPDATE_STATUS = "update-status"
_HOOK_RE = re.compile(r"^[a-z][a-z0-9-]*$")
# worker/deployer/unit_agent.go: LeadershipGuarantee 30 s; worker/leadership/tracker.go claims
# and renews (every guarantee) a lease of twice that, so a holder that stops renewing keeps it
# 30 to 60 s more. The fake takes the upper bound.
LEASE_DURATION = 60.0
# The charm store of applications seeded with storage, and how the LXD provider makes it:
# provider/lxd/storage.go (pool "lxd", model-scoped, LXD pool "juju"), state/storage.go
# storageConstraintsWithDefaults (1 GiB), state/filesystem.go FilesystemMountPoint.
STORAGE_NAME = "data"
STORAGE_POOL = "lxd"
STORAGE_SIZE = 1024
STORAGE_DIR = "/var/lib/juju/storage"

Action = Callable[[], None]


class LifecycleError(Exception):
    """A request the model refuses; carries Juju's error code ("" when Juju sends none)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclasses.dataclass
class UnitFaults:
    """Mutable fault switches consulted by the lifecycle."""

    fail_new_units: dict[str, str] = dataclasses.field(default_factory=dict)
    stuck_dying: set[str] = dataclasses.field(default_factory=set)

    def clear(self) -> None:
        """Forget every switch."""
        self.fail_new_units.clear()
        self.stuck_dying.clear()


@dataclasses.dataclass
class _FailedHook:
    """A hook that failed on a unit: the uniter waits for resolve or the retry timer."""

    hook: str
    attempt: int
    workload: model_mod.Status


@dataclasses.dataclass(order=True)
class _Cleanup:
    due: float
    seq: int
    action: Action = dataclasses.field(compare=False)


class Lifecycle:
    """Drives entity state through Juju's phases on a clock."""

    def __init__(
        self,
        state: model_mod.ModelState,
        clock: clock_mod.Clock,
        step_delay: float,
        faults: UnitFaults,
        *,
        rng: random.Random | None = None,
        unset_status: Collection[str] = (),
    ) -> None:
        self.state = state
        self.clock = clock
        self.step_delay = step_delay
        self.faults = faults
        self.rng = rng or random.Random()
        # Applications whose charm never calls status-set.
        self.unset_status: set[str] = set(unset_status)
        self._timers: dict[str, list[tuple[clock_mod._Timer, Action]]] = {}
        # Phases of units/machines whose agent is gone (lost, machine down), kept for its return.
        self._suspended: dict[str, list[Action]] = {}
        self._failed: dict[str, _FailedHook] = {}
        # The fault mode each new unit was added under (fail_new_units at AddUnits time).
        self._modes: dict[str, str] = {}
        # Units whose agent started (their leadership tracker runs), units that ran their
        # start hook, units that became leader but could not run leader-elected yet, units
        # resolved while their agent was gone, and storage whose storage-attached hook ran.
        self._agent_running: set[str] = set()
        self._started: set[str] = set()
        self._pending_leader_hook: set[str] = set()
        self._resolved: set[str] = set()
        self._storage_hooked: set[str] = set()
        self._cleanups: list[_Cleanup] = []
        self._cleanup_seq = 0
        self._cleanup_inserted = False
        # Called with a unit's name when its agent talks to the controller again (the exec
        # engine: the uniter picks up the actions queued meanwhile).
        self.agent_back_listeners: list[Callable[[str], None]] = []

    # -- plumbing -----------------------------------------------------------

    def _status(self, current: str, message: str = "", version: str = "") -> model_mod.Status:
        return model_mod.Status(current, message, self.clock.now(), version)

    def _later(self, owner: str, steps: float, action: Action) -> None:
        self._after(owner, steps * self.step_delay, action)

    def _after(self, owner: str, seconds: float, action: Action) -> None:
        def fire() -> None:
            entries = self._timers.get(owner, [])
            for entry in entries:
                if entry[0] is timer:
                    entries.remove(entry)
                    break
            action()

        timer = self.clock.call_later(seconds, fire)
        self._timers.setdefault(owner, []).append((timer, action))

    def _cancel(self, owner: str) -> None:
        for timer, _action in self._timers.pop(owner, []):
            timer.cancel()
        self._suspended.pop(owner, None)

    def _suspend(self, owner: str) -> None:
        """The agent behind `owner` stopped: its next phases wait for it to come back."""
        entries = self._timers.pop(owner, [])
        for timer, _action in entries:
            timer.cancel()
        if entries:
            self._suspended.setdefault(owner, []).extend(action for _timer, action in entries)

    def _resume(self, owner: str) -> None:
        for action in self._suspended.pop(owner, []):
            self._later(owner, 1, action)

    def _update_unit(self, name: str, **changes: object) -> model_mod.Unit | None:
        unit = self.state.units.get(name)
        if unit is None:
            return None
        unit = dataclasses.replace(unit, **changes)  # type: ignore[arg-type]
        self.state.put_unit(unit)
        return unit

    def _update_machine(self, machine_id: str, **changes: object) -> model_mod.Machine | None:
        machine = self.state.machines.get(machine_id)
        if machine is None:
            return None
        machine = dataclasses.replace(machine, **changes)  # type: ignore[arg-type]
        self.state.put_machine(machine)
        return machine

    def _instance_id(self, machine_id: str) -> str:
        return f"juju-{self.state.uuid[-6:]}-{machine_id}"

    def _filesystem_provider_id(self, filesystem_id: str) -> str:
        # provider/lxd/storage.go createFilesystem, makeFilesystemId: "<lxd pool>:<volume>".
        return f"juju:juju-{self.state.uuid[-6:]}-filesystem-{filesystem_id}"

    @staticmethod
    def _address(machine_id: str) -> str:
        number = int(machine_id)
        return f"10.42.{number // 250}.{number % 250 + 2}"

    def _agent_gone(self, unit: model_mod.Unit) -> bool:
        """Whether the unit's agent cannot act: lost itself, or its machine's agent is down."""
        machine = self.state.machines.get(unit.machine_id)
        return unit.agent_lost or (machine is not None and machine.agent_down)

    def _settled_workload(self, application: str, since: float) -> model_mod.Status:
        # runhook.go afterHook: after start, a charm that never set a status shows unknown.
        if application in self.unset_status:
            return model_mod.Status("unknown", "", since)
        return model_mod.Status("active", "", since)

    # -- seeding ------------------------------------------------------------

    def seed_application(
        self, name: str, units: int, charm: str | None = None, *, storage: bool = False
    ) -> None:
        """Create an application with settled units, back-dating their history.

        With `storage` its charm has one filesystem store and every unit one attached
        instance of it. Its first unit holds the leadership.
        """
        self.state.add_application(
            model_mod.Application(name, charm or name, storage=STORAGE_NAME if storage else "")
        )
        seeded = [self.seed_unit(name) for _ in range(units)]
        if seeded:
            self.state.leaders[name] = seeded[0]

    def seed_unit(self, application: str) -> str:
        """Create one settled unit on a new machine with a plausible past."""
        now = self.clock.now()
        machine_id = self.state.allocate_machine_id()
        unit_name = self.state.allocate_unit_name(application)
        address = self._address(machine_id)
        start = now - 3600.0
        # Walk the same phases as a new unit, an hour ago, so status history looks real.
        settled = self._settled_workload(application, start + 120.0)
        phases = [
            ("pending", "", "pending", "waiting", "waiting for machine", "allocating", ""),
            ("running", "Running", "started", "maintenance", INSTALLING, "executing",
             RUNNING_INSTALL),
            ("running", "Running", "started", settled.current, settled.message, "idle", ""),
        ]  # fmt: skip
        for offset, (inst, inst_msg, magent, wl, wl_msg, ua, ua_msg) in enumerate(phases):
            since = start + offset * 60.0
            running = inst == "running"
            self.state.put_machine(
                model_mod.Machine(
                    id=machine_id,
                    agent=model_mod.Status(magent, "", since, "3.6.1" if running else ""),
                    instance=model_mod.Status(inst, inst_msg, since),
                    instance_id=self._instance_id(machine_id) if running else "",
                    address=address if running else "",
                    clean=False,
                )
            )
            self.state.put_unit(
                model_mod.Unit(
                    name=unit_name,
                    application=application,
                    machine_id=machine_id,
                    workload=model_mod.Status(wl, wl_msg, since),
                    agent=model_mod.Status(ua, ua_msg, since, "3.6.1" if running else ""),
                    private_address=address if running else "",
                    public_address=address if running else "",
                )
            )
        self._agent_running.add(unit_name)
        self._started.add(unit_name)
        app = self.state.applications[application]
        if app.storage:
            storage_id = self.state.allocate_storage_id(app.storage)
            filesystem_id = self.state.allocate_filesystem_id()
            self.state.put_storage(
                model_mod.StorageInstance(
                    id=storage_id,
                    owner=unit_name,
                    filesystem_id=filesystem_id,
                    status=model_mod.Status("attached", "", start + 60.0),
                    attached_unit=unit_name,
                    machine_id=machine_id,
                    location=f"{STORAGE_DIR}/{storage_id}",
                    provider_id=self._filesystem_provider_id(filesystem_id),
                    pool=STORAGE_POOL,
                    size=STORAGE_SIZE,
                )
            )
            self._storage_hooked.add(storage_id)
        return unit_name

    def seed_machine(self) -> str:
        """Create a started machine that never hosted a unit (as `juju add-machine` makes)."""
        now = self.clock.now()
        machine_id = self.state.allocate_machine_id()
        self.state.put_machine(
            model_mod.Machine(
                id=machine_id,
                agent=model_mod.Status("started", "", now - 600.0, "3.6.1"),
                instance=model_mod.Status("running", "Running", now - 600.0),
                instance_id=self._instance_id(machine_id),
                address=self._address(machine_id),
            )
        )
        return machine_id

    # -- machines coming up ----------------------------------------------------

    def add_machine(self, mode: str = "") -> str:
        """A new machine (`juju add-machine`): clean, provisioned step by step."""
        machine_id = self.state.allocate_machine_id()
        self.state.put_machine(
            model_mod.Machine(
                id=machine_id, agent=self._status("pending"), instance=self._status("pending")
            )
        )
        self._later(f"machine-{machine_id}", 1, lambda: self._provision(machine_id, mode))
        return machine_id

    def _provision(self, machine_id: str, mode: str) -> None:
        machine = self.state.machines.get(machine_id)
        if machine is None or machine.life != "alive":
            return
        if mode == "provisioning-error":
            # worker/provisioner: the provider's error text, and the machine stays pending.
            self._update_machine(
                machine_id,
                instance=self._status(
                    "provisioning error",
                    f"failed to start machine {machine_id}: fake provider refused",
                ),
            )
            return
        # worker/provisioner/provisioner_task.go: provisioning "starting" while the provider works.
        self._update_machine(machine_id, instance=self._status("provisioning", "starting"))
        self._later(f"machine-{machine_id}", 1, lambda: self._machine_started(machine_id))

    def _machine_started(self, machine_id: str) -> None:
        machine = self.state.machines.get(machine_id)
        if machine is None:
            return
        # worker/instancepoller: the provider's status message as it is (LXD: "Running").
        self._update_machine(
            machine_id,
            instance=self._status("running", "Running"),
            agent=self._status("started", "", "3.6.1"),
            instance_id=self._instance_id(machine_id),
            address=self._address(machine_id),
        )
        for unit in self.state.units_on(machine_id):
            self._provision_storage(unit.name)
            if unit.life == "alive" and unit.agent.current == "allocating":
                mode = self._modes.get(unit.name, "")
                self._later(unit.name, 1, lambda n=unit.name, m=mode: self._deploy(n, m))

    @staticmethod
    def _is_up(machine: model_mod.Machine) -> bool:
        return machine.instance.current == "running" and machine.agent.current == "started"

    # -- new units ----------------------------------------------------------

    def _clean_empty_machine(self) -> model_mod.Machine | None:
        """AssignCleanEmpty's choice (state/unit.go findCleanMachineQuery): never used, empty."""
        for machine in self.state.machines.values():
            if (
                machine.clean
                and machine.life == "alive"
                and machine.jobs == ("JobHostUnits",)
                and machine.instance.current != "provisioning error"
                and not self.state.units_on(machine.id)
            ):
                return machine
        return None

    def add_units(self, application: str, count: int) -> list[str]:
        """Application.AddUnits: per unit, add it, then assign it with AssignCleanEmpty.

        deploy.go addUnits runs two transactions per unit (state AddUnit, then AssignUnit), so
        the unit first exists without a machine; `policy` is ignored (hard-coded
        AssignCleanEmpty): a clean, empty machine is used if there is one, else a new one. A
        unit of an application with storage gets its own storage instance (state/unit.go);
        the fake creates it with the assignment, so no call sees it without its filesystem.
        """
        app = self.state.applications.get(application)
        if app is None:
            raise LifecycleError(f'application "{application}" not found', "not found")
        if app.life != "alive":
            raise LifecycleError(f'application "{application}" is not alive', "not alive")
        names = []
        for _ in range(count):
            name = self.state.allocate_unit_name(application)
            unit = model_mod.Unit(
                name=name,
                application=application,
                machine_id="",
                workload=self._status("waiting", "waiting for machine"),
                agent=self._status("allocating"),
            )
            self.state.put_unit(unit)
            machine = self._clean_empty_machine()
            mode = self._modes[name] = self.faults.fail_new_units.get(application, "")
            if machine is None:
                machine = model_mod.Machine(
                    id=self.state.allocate_machine_id(),
                    agent=self._status("pending"),
                    instance=self._status("pending"),
                    clean=False,
                )
                self.state.put_machine(machine)
                self._later(f"machine-{machine.id}", 1, lambda m=machine.id, f=mode: (
                    self._provision(m, f)))  # fmt: skip
            else:
                self.state.put_machine(dataclasses.replace(machine, clean=False))
                if self._is_up(machine):
                    self._later(name, 1, lambda n=name, m=mode: self._deploy(n, m))
            self.state.put_unit(dataclasses.replace(unit, machine_id=machine.id))
            if app.storage:
                self._add_storage(name, app.storage, machine.id)
                if self._is_up(machine):
                    self._provision_storage(name)
            names.append(name)
            log.info("fake juju: added unit %s on machine %s (fault %s)", name, machine.id, mode)
        return names

    def _deploy(self, name: str, mode: str) -> None:
        """worker/deployer, then the uniter starting: waiting messages before install."""
        unit = self.state.units.get(name)
        if unit is None or unit.life != "alive":
            return
        machine = self.state.machines.get(unit.machine_id)
        address = machine.address if machine is not None else ""
        self._update_unit(
            name,
            workload=self._status("waiting", "installing agent"),
            private_address=address,
            public_address=address,
        )
        self._later(name, 1, lambda: self._initialising(name, mode))

    def _initialising(self, name: str, mode: str) -> None:
        unit = self._update_unit(name, workload=self._status("waiting", "agent initialising"))
        if unit is None:
            return
        # The unit agent runs: its leadership tracker claims a lease nobody holds.
        self._agent_running.add(name)
        self._elect(unit.application)
        if self.state.storage_of(name):
            self._later(name, 1, lambda: self._storage_attached_hooks(name, mode))
        else:
            self._later(name, 1, lambda: self._install(name, mode))

    def _storage_attached_hooks(self, name: str, mode: str) -> None:
        """worker/uniter/storage/resolver.go NextOp: on IAAS, storage-attached before install.

        The install hook waits (ErrWaiting) until every storage attachment is provisioned.
        """
        unit = self.state.units.get(name)
        if unit is None or unit.life != "alive":
            return
        storage = self.state.storage_of(name)
        if any(not s.location for s in storage):
            self._later(name, 1, lambda: self._storage_attached_hooks(name, mode))
            return
        waiting = [s for s in storage if s.id not in self._storage_hooked]
        if not waiting:
            self._install(name, mode)
            return
        self._update_unit(
            name,
            agent=self._status("executing", f"running {waiting[0].name}-storage-attached hook",
                               "3.6.1"),
        )  # fmt: skip
        self._storage_hooked.add(waiting[0].id)
        self._later(name, 1, lambda: self._storage_attached_hooks(name, mode))

    def _install(self, name: str, mode: str) -> None:
        unit = self._update_unit(
            name,
            workload=self._status("maintenance", INSTALLING),
            agent=self._status("executing", RUNNING_INSTALL, "3.6.1"),
        )
        if unit is not None and mode != "never-idle":
            self._later(name, 1, lambda: self._install_done(name, mode))

    def _install_done(self, name: str, mode: str) -> None:
        if mode == "hook-error":
            self._hook_failed(name, "install", attempt=0)
            return
        self._run_hooks(name, self._after_install(name))

    def _after_install(self, name: str) -> list[str]:
        # install -> leader-elected (the leader) or leader-settings-changed -> config-changed
        # -> start, with no idle between (worker/uniter/resolver.go, leadership/resolver.go).
        application = name.rsplit("/", 1)[0]
        if self.state.leaders.get(application) == name:
            self._pending_leader_hook.discard(name)
            return ["leader-elected", "config-changed", "start"]
        return ["leader-settings-changed", "config-changed", "start"]

    def _run_hooks(self, name: str, hooks: list[str]) -> None:
        unit = self.state.units.get(name)
        if unit is None:
            return
        if not hooks:
            self._settle(name)
            return
        hook, rest = hooks[0], hooks[1:]
        workload = unit.workload
        if hook == "start" and unit.application not in self.unset_status:
            workload = self._status("maintenance", "starting")
        self._update_unit(
            name,
            workload=workload,
            agent=self._status("executing", f"running {hook} hook", "3.6.1"),
        )
        self._later(name, 1, lambda: self._run_hooks(name, rest))

    def _settle(self, name: str) -> None:
        unit = self._update_unit(
            name,
            workload=self._settled_workload(name.rsplit("/", 1)[0], self.clock.now()),
            agent=self._status("idle", "", "3.6.1"),
        )
        if unit is not None:
            self._started.add(name)
            # After the first idle come relation, leadership and config hooks: executing again.
            later = self.rng.randint(1, 2)
            if name in self._pending_leader_hook:
                self._later(name, 1, lambda: self._leader_elected_hook(name))
            else:
                self._later(name, 1, lambda: self._later_hook(name, later))

    def _later_hook(self, name: str, remaining: int) -> None:
        unit = self.state.units.get(name)
        if unit is None or unit.life != "alive" or remaining <= 0:
            return
        hook = self.rng.choice(LATER_HOOKS)
        self._update_unit(name, agent=self._status("executing", f"running {hook} hook", "3.6.1"))

        def done() -> None:
            if self._update_unit(name, agent=self._status("idle", "", "3.6.1")):
                self._later(name, 1, lambda: self._later_hook(name, remaining - 1))

        self._later(name, 1, done)

    # -- hook errors --------------------------------------------------------

    def _hook_failed(self, name: str, hook: str, attempt: int) -> None:
        """Uniter reportHookError: workload `error`, agent shown idle, until a retry or resolve."""
        unit = self.state.units.get(name)
        if unit is None:
            return
        before = self._failed.get(name)
        workload = before.workload if before is not None else unit.workload
        self._failed[name] = _FailedHook(hook, attempt, workload)
        message = f'hook failed: "{hook}"'
        if (unit.workload.current, unit.workload.message, unit.agent.current) == (
            "error",
            message,
            "idle",
        ):
            # An update-status retry left the error showing: the same status again writes
            # nothing (state/status.go setStatus), only the latest history record's time.
            self.state.touch_history(unit.tag, "workload", self.clock.now())
        else:
            self._update_unit(
                name,
                workload=self._status("error", message),
                agent=self._status("idle", "", "3.6.1"),
            )
        # automatically-retry-hooks (on by default): 5 s, 10 s, ... up to 5 min, +-3 %.
        delay = min(RETRY_MAX, RETRY_MIN * RETRY_FACTOR**attempt)
        delay *= 1.0 + self.rng.uniform(-RETRY_JITTER, RETRY_JITTER)
        self._after(name, delay, lambda: self._retry_hook(name))

    def _retry_hook(self, name: str) -> None:
        failed = self._failed.get(name)
        if failed is None or self.state.units.get(name) is None:
            return
        if failed.hook != UPDATE_STATUS:
            # The retry runs the hook for real: executing, and the stored workload status
            # shows. runhook.go Execute skips SetExecutingStatus for update-status, so its
            # retry changes nothing visible: the error stays.
            self._update_unit(
                name,
                workload=failed.workload,
                agent=self._status("executing", f"running {failed.hook} hook", "3.6.1"),
            )
        self._later(name, 1, lambda: self._hook_failed(name, failed.hook, failed.attempt + 1))

    def error_unit(self, name: str, hook: str = UPDATE_STATUS) -> None:
        """A hook fails on a settled unit: workload `error`, agent idle, retried with backoff.

        update-status runs without `executing` (runhook.go Execute), so the error shows at
        once; any other hook shows `executing` "running <hook> hook" for a step first.
        """
        unit = self.state.units.get(name)
        if unit is None:
            raise LifecycleError(f'unit "{name}" not found', "not found")
        if not _HOOK_RE.match(hook):
            raise LifecycleError(f"invalid hook name {hook!r}", "not valid")
        if (
            unit.life != "alive"
            or name not in self._started
            or name in self._failed
            or self._agent_gone(unit)
        ):
            raise LifecycleError(
                f'unit "{name}" is not a settled unit whose agent runs hooks', "not valid"
            )
        log.info("fake juju: hook %s fails on unit %s", hook, name)
        # The uniter runs one operation at a time: what was queued waits behind the error.
        self._cancel(name)
        self._failed[name] = _FailedHook(hook, 0, unit.workload)
        if hook == UPDATE_STATUS:
            self._hook_failed(name, hook, attempt=0)
            return
        self._update_unit(name, agent=self._status("executing", f"running {hook} hook", "3.6.1"))
        self._later(name, 1, lambda: self._hook_failed(name, hook, attempt=0))

    def resolve_unit(self, name: str) -> None:
        """`juju resolve` (retrying the hook): the hook runs again and succeeds.

        state/unit.go Resolve refuses a unit that is not in error; worker/uniter/resolver.go
        nextOpHookError (ResolvedRetryHooks) stops the retry timer and runs the hook. A unit
        whose agent is gone acts on it when the agent is back.
        """
        unit = self.state.units.get(name)
        if unit is None:
            raise LifecycleError(f'unit "{name}" not found', "not found")
        if name not in self._failed:
            raise LifecycleError(f'unit "{name}" is not in an error state', "")
        if self._agent_gone(unit):
            self._resolved.add(name)
            return
        self._run_resolved(name)

    def _run_resolved(self, name: str) -> None:
        failed = self._failed.get(name)
        self._resolved.discard(name)
        if failed is None:
            return
        self._cancel(name)
        if failed.hook != UPDATE_STATUS:
            self._update_unit(
                name,
                workload=failed.workload,
                agent=self._status("executing", f"running {failed.hook} hook", "3.6.1"),
            )
        self._later(name, 1, lambda: self._hook_succeeded(name, failed))

    def _hook_succeeded(self, name: str, failed: _FailedHook) -> None:
        """The resolved hook ran: the uniter goes on where it stopped."""
        self._failed.pop(name, None)
        unit = self.state.units.get(name)
        if unit is None:
            return
        if unit.life == "dying":
            self._teardown(name, delay=0)
            return
        if failed.hook == "install":
            self._run_hooks(name, self._after_install(name))
            return
        # Back to the workload status the charm had set, agent idle (uniter onIdle).
        self._update_unit(name, workload=failed.workload, agent=self._status("idle", "", "3.6.1"))
        if name in self._pending_leader_hook:
            self._later(name, 1, lambda: self._leader_elected_hook(name))

    # -- leadership -----------------------------------------------------------

    def _lease_owner(self, application: str) -> str:
        return f"lease-{application}"

    def _can_accept_leadership(self, unit: model_mod.Unit) -> bool:
        """worker/uniter/leadership/resolver.go NextOp: installed, alive, no hook pending."""
        return (
            unit.name in self._started
            and unit.life == "alive"
            and unit.name not in self._failed
            and not self._agent_gone(unit)
        )

    def set_leader(self, name: str) -> None:
        """Leadership of the unit's application moves to that unit (it runs leader-elected)."""
        unit = self.state.units.get(name)
        if unit is None:
            raise LifecycleError(f'unit "{name}" not found', "not found")
        if unit.life != "alive" or name not in self._agent_running or self._agent_gone(unit):
            raise LifecycleError(
                f'unit "{name}" cannot claim leadership: its agent is not running', "not valid"
            )
        if self.state.leaders.get(unit.application) != name:
            self._become_leader(name)

    def _become_leader(self, name: str) -> None:
        unit = self.state.units[name]
        previous = self.state.leaders.get(unit.application)
        if previous is not None:
            # operation/leader.go resignLeadership runs no hook.
            self._pending_leader_hook.discard(previous)
        self.state.leaders[unit.application] = name
        self._cancel(self._lease_owner(unit.application))
        log.info("fake juju: %s is the leader of %s", name, unit.application)
        if self._can_accept_leadership(unit):
            self._cancel(name)
            self._leader_elected_hook(name)
        else:
            # Not installed yet, dying or in a hook error: leader-elected waits for it.
            self._pending_leader_hook.add(name)

    def _leader_elected_hook(self, name: str) -> None:
        """operation/leader.go acceptLeadership: the leader-elected hook, then idle."""
        self._pending_leader_hook.discard(name)
        unit = self.state.units.get(name)
        if unit is None or self.state.leaders.get(unit.application) != name:
            return
        self._update_unit(
            name, agent=self._status("executing", "running leader-elected hook", "3.6.1")
        )

        def done() -> None:
            self._update_unit(name, agent=self._status("idle", "", "3.6.1"))

        self._later(name, 1, done)

    def _elect(self, application: str) -> None:
        """A free lease goes to a claiming unit: the lowest-numbered alive one whose agent runs."""
        if application in self.state.leaders:
            return
        candidates = [
            u
            for u in self.state.units.values()
            if u.application == application
            and u.life == "alive"
            and u.name in self._agent_running
            and not self._agent_gone(u)
        ]
        if candidates:
            self._become_leader(min(candidates, key=lambda u: u.number).name)

    def _revoke_leadership(self, name: str) -> None:
        """apiserver/common/unit.go RevokeLeadershipFunc: a unit the uniter set dead lets go.

        The lease manager then unblocks the waiting trackers (worker/lease/manager.go
        retryingRevoke, checkBlocks), which claim it at once: a step later here.
        """
        application = name.rsplit("/", 1)[0]
        if self.state.leaders.get(application) != name:
            return
        del self.state.leaders[application]
        self._pending_leader_hook.discard(name)
        owner = self._lease_owner(application)
        self._cancel(owner)
        self._later(owner, 1, lambda: self._elect(application))

    def _leader_stopped_renewing(self, name: str) -> None:
        """The holder's agent stopped (lost, forced dead, removed): the lease runs out."""
        application = name.rsplit("/", 1)[0]
        owner = self._lease_owner(application)
        if self.state.leaders.get(application) != name or self._timers.get(owner):
            return
        self._after(owner, LEASE_DURATION, lambda: self._lease_expired(application, name))

    def _leader_renewing_again(self, name: str) -> None:
        application = name.rsplit("/", 1)[0]
        if self.state.leaders.get(application) == name:
            self._cancel(self._lease_owner(application))

    def _lease_expired(self, application: str, holder: str) -> None:
        if self.state.leaders.get(application) != holder:
            return
        del self.state.leaders[application]
        self._pending_leader_hook.discard(holder)
        log.info("fake juju: the leadership lease of %s (%s) expired", application, holder)
        self._elect(application)

    # -- storage ----------------------------------------------------------------

    def _add_storage(self, name: str, store: str, machine_id: str) -> None:
        """state/unit.go: the unit's storage instance, its filesystem and both attachments."""
        self.state.put_storage(
            model_mod.StorageInstance(
                id=self.state.allocate_storage_id(store),
                owner=name,
                filesystem_id=self.state.allocate_filesystem_id(),
                status=self._status("pending"),
                attached_unit=name,
                machine_id=machine_id,
                pool=STORAGE_POOL,
                size=STORAGE_SIZE,
            )
        )

    def _provision_storage(self, name: str) -> None:
        """worker/storageprovisioner: create the filesystem (attaching), then attach it."""
        for storage in self.state.storage_of(name):
            if storage.provider_id:
                continue
            owner = f"storage-{storage.id}"
            self._later(owner, 1, lambda s=storage.id: self._filesystem_created(s))

    def _filesystem_created(self, storage_id: str) -> None:
        storage = self.state.storage.get(storage_id)
        if storage is None:
            return
        attaching = storage.machine_id and storage.machine_attachment_life == "alive"
        self.state.put_storage(
            dataclasses.replace(
                storage,
                provider_id=self._filesystem_provider_id(storage.filesystem_id),
                status=self._status("attaching" if attaching else "detached"),
            )
        )
        if attaching:
            self._later(f"storage-{storage_id}", 1, lambda: self._filesystem_attached(storage_id))

    def _filesystem_attached(self, storage_id: str) -> None:
        storage = self.state.storage.get(storage_id)
        if storage is None or not storage.machine_id or storage.machine_attachment_life != "alive":
            return
        self.state.put_storage(
            dataclasses.replace(
                storage,
                status=self._status("attached"),
                location=f"{STORAGE_DIR}/{storage_id}",
            )
        )

    def _storage_dying(self, name: str, destroy_storage: bool) -> None:
        """state/cleanup.go cleanupDyingUnit: attachments dying (and the storage with them)."""
        for storage in self.state.storage_of(name):
            self.state.put_storage(
                dataclasses.replace(
                    storage,
                    attachment_life="dying",
                    life="dying" if destroy_storage else storage.life,
                )
            )

    def _release_storage(self, storage_id: str) -> None:
        """state/storage.go removeStorageAttachmentOps: the unit's attachment goes.

        Storage being destroyed goes with its last attachment; otherwise the unit that owned
        it disowns it and the storage provisioner detaches its filesystem a step later.
        """
        storage = self.state.storage.get(storage_id)
        if storage is None:
            return
        self._storage_hooked.discard(storage_id)
        owner = f"storage-{storage_id}"
        if storage.life != "alive":
            self._cancel(owner)
            self.state.remove_storage(storage_id)
            return
        self.state.put_storage(
            dataclasses.replace(
                storage, owner="", attached_unit="", machine_attachment_life="dying"
            )
        )
        self._later(owner, 1, lambda: self._filesystem_detached(storage_id))

    def _filesystem_detached(self, storage_id: str) -> None:
        storage = self.state.storage.get(storage_id)
        if storage is None:
            return
        self.state.put_storage(
            dataclasses.replace(
                storage,
                machine_id="",
                location="",
                machine_attachment_life="alive",
                # filesystem_ops.go detachFilesystems: "detached"; one never created stays.
                status=self._status("detached") if storage.provider_id else storage.status,
            )
        )

    # -- removal ------------------------------------------------------------

    def is_stuck(self, unit: model_mod.Unit) -> bool:
        """Whether a unit cannot finish dying on its own: its agent cannot run the stop hooks.

        worker/uniter/resolver.go NextOp: while a hook has failed the uniter only waits for
        resolution, so a dying unit in error never runs stop/remove; a lost agent runs nothing.
        """
        return (
            unit.name in self.faults.stuck_dying
            or unit.name in self._failed
            or self._agent_gone(unit)
        )

    def destroy_unit(
        self,
        name: str,
        force: bool,
        max_wait: float | None,
        destroy_storage: bool = False,
    ) -> None:
        """Application.DestroyUnit (state/unit.go DestroyUnitOperation.destroyOps)."""
        unit = self.state.units.get(name)
        if unit is None:
            # application.go DestroyUnit: a plain error, so no code.
            raise LifecycleError(f'unit "{name}" does not exist', "")
        log.info("fake juju: destroying unit %s (force=%s, max-wait=%s)", name, force, max_wait)
        if unit.life != "alive" and not force:
            return
        if unit.life == "alive":
            if not unit.machine_id or unit.agent.current == "allocating":
                # Its agent never set a status: removed at once, in the same transaction.
                self._remove_unit(name, force=force, max_wait=max_wait)
                return
            self._update_unit(name, life="dying")
            self._storage_dying(name, destroy_storage)
            if not self.is_stuck(unit):
                self._cancel(name)
                self._teardown(name)
        elif unit.life == "dying" and not self.is_stuck(unit) and not self._timers.get(name):
            # Dying but nothing scheduled (it was stuck before): resume the teardown.
            self._teardown(name)
        if force:
            # cleanup.go cleanupDyingUnit -> cleanupForceDestroyedUnit after max-wait ->
            # cleanupForceRemoveUnit after max-wait again; the cleaner runs them when due.
            wait = DEFAULT_FORCE_MAX_WAIT if max_wait is None else max_wait
            self._schedule_cleanup(
                self.clock.now() + wait, lambda: self._force_destroyed_unit(name, wait)
            )

    def _teardown(self, name: str, delay: int = 1) -> None:
        """A dying unit's uniter: storage-detaching hooks first, then stop and remove.

        worker/uniter/storage/resolver.go: storage whose storage-attached hook never ran is
        let go at once (maybeShortCircuitRemoval); the other gets its storage-detaching hook,
        after which the attachment is removed (state/storage.go RemoveStorageAttachment).
        """
        for storage in self.state.storage_of(name):
            if storage.id not in self._storage_hooked:
                self._release_storage(storage.id)
        hooked = self.state.storage_of(name)
        step: Action = (
            functools.partial(self._storage_detaching_hook, name, hooked[0].id)
            if hooked
            else functools.partial(self._stop_hook, name)
        )
        if delay:
            self._later(name, delay, step)
        else:
            step()

    def _storage_detaching_hook(self, name: str, storage_id: str) -> None:
        unit = self.state.units.get(name)
        storage = self.state.storage.get(storage_id)
        if unit is None or unit.life == "dead" or storage is None:
            return
        self._update_unit(
            name,
            agent=self._status("executing", f"running {storage.name}-storage-detaching hook",
                               "3.6.1"),
        )  # fmt: skip

        def done() -> None:
            self._release_storage(storage_id)
            self._teardown(name, delay=0)

        self._later(name, 1, done)

    def _stop_hook(self, name: str) -> None:

        unit = self.state.units.get(name)
        if unit is None or unit.life == "dead":
            return
        self._update_unit(
            name,
            workload=self._status("maintenance", "stopping charm software"),
            agent=self._status("executing", "running stop hook", "3.6.1"),
        )
        self._later(name, 1, lambda: self._remove_hook(name))

    def _remove_hook(self, name: str) -> None:
        unit = self._update_unit(
            name,
            workload=self._status("maintenance", "cleaning up prior to charm deletion"),
            agent=self._status("executing", "running remove hook", "3.6.1"),
        )
        if unit is not None:
            self._later(name, 1, lambda: self._unit_dead(name))

    def _unit_dead(self, name: str) -> None:
        unit = self._update_unit(
            name,
            life="dead",
            workload=self._status("terminated", ""),
            agent=self._status("idle", "", "3.6.1"),
        )
        if unit is not None:
            # The uniter set it dead through the API, which revokes its leadership.
            self._revoke_leadership(name)
            # The deployer removes a dead unit.
            self._later(name, 1, lambda: self._remove_unit(name))
            log.info("fake juju: unit %s is dead", name)

    def _force_destroyed_unit(self, name: str, max_wait: float) -> None:
        unit = self.state.units.get(name)
        if unit is None:
            return
        if unit.life != "dead":
            self._cancel(name)
            self._failed.pop(name, None)
            # cleanupForceDestroyedUnit: forceRemoveUnitStorageAttachments, then EnsureDead in
            # state, which revokes nothing: the unit's lease runs out.
            for storage in self.state.storage_of(name):
                self._release_storage(storage.id)
            self._update_unit(name, life="dead")
            self._leader_stopped_renewing(name)
        self._schedule_cleanup(
            self.clock.now() + max_wait,
            lambda: self._remove_unit(name, force=True, max_wait=max_wait),
        )

    def _remove_unit(
        self,
        name: str,
        *,
        force: bool = False,
        max_wait: float | None = None,
        release_host: bool = True,
    ) -> None:
        unit = self.state.units.get(name)
        if unit is None:
            return
        self._cancel(name)
        self._failed.pop(name, None)
        self._modes.pop(name, None)
        self._agent_running.discard(name)
        self._started.discard(name)
        self._pending_leader_hook.discard(name)
        self._resolved.discard(name)
        # application.go removeUnitOps, removeStorageInstancesOps: storage it still owns goes.
        for storage in list(self.state.storage.values()):
            if storage.owner == name:
                self._storage_hooked.discard(storage.id)
                self._cancel(f"storage-{storage.id}")
                self.state.remove_storage(storage.id)
        self.state.remove_unit(name)
        self._leader_stopped_renewing(name)

        machine = self.state.machines.get(unit.machine_id)
        if (
            release_host
            and machine is not None
            and machine.life == "alive"
            and not self.state.units_on(machine.id)
            and "JobManageModel" not in machine.jobs
        ):
            # unit.go destroyHostOps: the unit was its only principal, so the machine goes too.
            self._machine_dying(machine.id, force=force, max_wait=max_wait)

    def destroy_machine(
        self, machine_id: str, force: bool, max_wait: float | None = None
    ) -> list[str]:
        """Destroy a machine (MachineManager.DestroyMachineWithParams); return its units."""
        machine = self.state.machines.get(machine_id)
        if machine is None:
            raise LifecycleError(f"machine {machine_id} not found", "not found")
        units = sorted(u.name for u in self.state.units_on(machine_id))
        if units and not force:
            raise LifecycleError(
                f'machine {machine_id} has unit "{units[0]}" assigned',
                "machine has assigned units",
            )
        if machine.life != "alive" and not force:
            return units
        if units:
            # machine.go ForceDestroy inserts a cleanupForceDestroyedMachine document and
            # changes nothing else; the cleaner runs it on insertion (a step later).
            wait = DEFAULT_FORCE_MAX_WAIT if max_wait is None else max_wait
            self._schedule_cleanup(
                self.clock.now(), lambda: self._obliterate_machine(machine_id, wait)
            )
            return units
        self._machine_dying(machine_id, force=force, max_wait=max_wait)
        return units

    def _obliterate_machine(self, machine_id: str, max_wait: float) -> None:
        """state/cleanup.go cleanupForceDestroyedMachineInternal: the host dies, units with it.

        Every principal is obliterated (obliterateUnit: DestroyWithForce, storage attachments
        removed, EnsureDead, RemoveWithForce) in that one cleanup, whatever its agent is
        doing; then the machine is set dead and the cleanupForceRemoveMachine backstop removes
        it max-wait later.
        """
        if machine_id not in self.state.machines:
            return
        for unit in sorted(u.name for u in self.state.units_on(machine_id)):
            for storage in self.state.storage_of(unit):
                self._release_storage(storage.id)
            self._remove_unit(unit, force=True, max_wait=max_wait, release_host=False)
            log.info("fake juju: unit %s obliterated with machine %s", unit, machine_id)
        self._force_destroyed_machine(machine_id, max_wait)

    def _machine_dying(self, machine_id: str, *, force: bool, max_wait: float | None) -> None:
        machine = self._update_machine(machine_id, life="dying")
        if machine is None:
            return
        if force:
            wait = DEFAULT_FORCE_MAX_WAIT if max_wait is None else max_wait
            self._schedule_cleanup(
                self.clock.now(), lambda: self._force_destroyed_machine(machine_id, wait)
            )
        elif not machine.agent_down or machine.agent.current == "pending":
            # The machine agent sets it dead; a machine that never started goes at once.
            self._later(f"machine-{machine_id}", 1, lambda: self._machine_dead(machine_id))

    def _force_destroyed_machine(self, machine_id: str, max_wait: float) -> None:
        if machine_id not in self.state.machines:
            return
        self._cancel(f"machine-{machine_id}")
        self._update_machine(machine_id, life="dead")
        self._schedule_cleanup(
            self.clock.now() + max_wait, lambda: self._machine_removed(machine_id)
        )

    def _machine_dead(self, machine_id: str) -> None:
        machine = self._update_machine(machine_id, life="dead", agent=self._status("stopped"))
        if machine is not None:
            self._later(f"machine-{machine_id}", 1, lambda: self._machine_removed(machine_id))

    def _machine_removed(self, machine_id: str) -> None:
        if machine_id in self.state.machines:
            self._cancel(f"machine-{machine_id}")
            self.state.remove_machine(machine_id)
            log.info("fake juju: machine %s removed", machine_id)

    # -- the cleanup worker ---------------------------------------------------

    def _schedule_cleanup(self, due: float, action: Action) -> None:
        """Insert a cleanup document: the cleaner's watcher wakes it a step later."""
        self._cleanup_seq += 1
        self._cleanups.append(_Cleanup(due, self._cleanup_seq, action))
        self._cleanup_inserted = True
        self._cancel("cleaner")
        self._later("cleaner", 1, self._run_cleanups)

    def _run_cleanups(self) -> None:
        """worker/cleaner: run every due cleanup; wake again on insertion or after `period`."""
        now = self.clock.now()
        due = sorted(c for c in self._cleanups if c.due <= now)
        self._cleanups = [c for c in self._cleanups if c.due > now]
        self._cleanup_inserted = False
        for cleanup in due:
            cleanup.action()
        if self._cleanups and not self._cleanup_inserted:
            self._cancel("cleaner")
            self._after("cleaner", CLEANUP_PERIOD, self._run_cleanups)

    @property
    def cleanups_pending(self) -> int:
        """Cleanup documents not run yet."""
        return len(self._cleanups)

    # -- agent faults -------------------------------------------------------

    def set_unit_lost(self, name: str, lost: bool = True) -> None:
        """The unit's agent stops (or starts again) talking to the controller.

        Presence only shows in FullStatus (apiserver/common/unitstatus.go); the unit makes no
        progress meanwhile: its next phases wait until the agent is back.
        """
        unit = self.state.units.get(name)
        if unit is None:
            raise LifecycleError(f'unit "{name}" not found', "not found")
        self.state.units[name] = dataclasses.replace(unit, agent_lost=lost)
        if lost:
            self._suspend(name)
            self._leader_stopped_renewing(name)
            return
        self._agent_back(name)

    def _agent_back(self, name: str) -> None:
        """The unit's agent talks to the controller again: it picks up where it was."""
        unit = self.state.units.get(name)
        if unit is None or self._agent_gone(unit):
            return
        self._resume(name)
        if unit.life != "dead":
            self._leader_renewing_again(name)
        if name in self._resolved:
            self._run_resolved(name)
        elif unit.life == "dying" and not self._timers.get(name) and not self.is_stuck(unit):
            # Back again and told to die: it runs its teardown now.
            self._teardown(name)
        if unit.life == "alive" and name in self._agent_running:
            self._elect(unit.application)
        for listener in list(self.agent_back_listeners):
            listener(name)

    def set_machine_down(self, machine_id: str, down: bool = True) -> None:
        """A machine's agent (and with it its unit agents) stops, or comes back."""
        machine = self.state.machines.get(machine_id)
        if machine is None:
            raise LifecycleError(f"machine {machine_id} not found", "not found")
        self.state.machines[machine_id] = dataclasses.replace(machine, agent_down=down)
        owner = f"machine-{machine_id}"
        units = [u.name for u in self.state.units_on(machine_id)]
        if down:
            self._suspend(owner)
            for name in units:
                self._suspend(name)
                self._leader_stopped_renewing(name)
            return
        self._resume(owner)
        for name in units:
            self._agent_back(name)
        if machine.life == "dying" and not self._timers.get(owner):
            self._later(owner, 1, lambda: self._machine_dead(machine_id))

"""Lifecycle simulation: units and machines coming up and going away, as Juju 3.6 does it.

Each phase is one `step_delay` of the controller's clock; Juju's own periods (hook retry
backoff, forced-removal max-wait, the cleanup worker's period) are in seconds of that clock.
The Juju source each behaviour follows is named where it is implemented and in README.md.
"""

from __future__ import annotations

import dataclasses
import logging
import random
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
        self._cleanups: list[_Cleanup] = []
        self._cleanup_seq = 0
        self._cleanup_inserted = False

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

    def seed_application(self, name: str, units: int, charm: str | None = None) -> None:
        """Create an application with settled units, back-dating their history."""
        self.state.add_application(model_mod.Application(name, charm or name))
        for _ in range(units):
            self.seed_unit(name)

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
        AssignCleanEmpty): a clean, empty machine is used if there is one, else a new one.
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
        if self._update_unit(name, workload=self._status("waiting", "agent initialising")):
            self._later(name, 1, lambda: self._install(name, mode))

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
        # install -> leader-settings-changed -> config-changed -> start, with no idle between.
        self._run_hooks(name, ["leader-settings-changed", "config-changed", "start"])

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
            # After the first idle come relation, leadership and config hooks: executing again.
            later = self.rng.randint(1, 2)
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
        self._update_unit(
            name,
            workload=self._status("error", f'hook failed: "{hook}"'),
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
        # The retry runs the hook for real: executing, and the stored workload status shows.
        self._update_unit(
            name,
            workload=failed.workload,
            agent=self._status("executing", f"running {failed.hook} hook", "3.6.1"),
        )
        self._later(name, 1, lambda: self._hook_failed(name, failed.hook, failed.attempt + 1))

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

    def destroy_unit(self, name: str, force: bool, max_wait: float | None) -> None:
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
            if not self.is_stuck(unit):
                self._cancel(name)
                self._failed.pop(name, None)
                self._later(name, 1, lambda: self._stop_hook(name))
        elif unit.life == "dying" and not self.is_stuck(unit) and not self._timers.get(name):
            # Dying but nothing scheduled (it was stuck before): resume the teardown.
            self._later(name, 1, lambda: self._stop_hook(name))
        if force:
            # cleanup.go cleanupDyingUnit -> cleanupForceDestroyedUnit after max-wait ->
            # cleanupForceRemoveUnit after max-wait again; the cleaner runs them when due.
            wait = DEFAULT_FORCE_MAX_WAIT if max_wait is None else max_wait
            self._schedule_cleanup(
                self.clock.now() + wait, lambda: self._force_destroyed_unit(name, wait)
            )

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
            self._update_unit(name, life="dead")
        self._schedule_cleanup(
            self.clock.now() + max_wait,
            lambda: self._remove_unit(name, force=True, max_wait=max_wait),
        )

    def _remove_unit(
        self, name: str, *, force: bool = False, max_wait: float | None = None
    ) -> None:
        unit = self.state.units.get(name)
        if unit is None:
            return
        self._cancel(name)
        self._failed.pop(name, None)
        self._modes.pop(name, None)
        self.state.remove_unit(name)
        machine = self.state.machines.get(unit.machine_id)
        if (
            machine is not None
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
        for unit in units:
            self.destroy_unit(unit, force=True, max_wait=max_wait)
        if not units:
            self._machine_dying(machine_id, force=force, max_wait=max_wait)
        return units

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
            return
        self._resume(name)
        if unit.life == "dying" and not self._timers.get(name) and name not in self._failed:
            # Back again and told to die: it runs its stop hooks now.
            self._later(name, 1, lambda: self._stop_hook(name))

    def set_machine_down(self, machine_id: str, down: bool = True) -> None:
        """A machine's agent (and with it its unit agents) stops, or comes back."""
        machine = self.state.machines.get(machine_id)
        if machine is None:
            raise LifecycleError(f"machine {machine_id} not found", "not found")
        self.state.machines[machine_id] = dataclasses.replace(machine, agent_down=down)
        owners = [f"machine-{machine_id}", *(u.name for u in self.state.units_on(machine_id))]
        for owner in owners:
            if down:
                self._suspend(owner)
            else:
                self._resume(owner)
        if not down and machine.life == "dying" and not self._timers.get(owners[0]):
            self._later(owners[0], 1, lambda: self._machine_dead(machine_id))

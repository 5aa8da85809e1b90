"""Lifecycle simulation: units and machines coming up and going away, one step at a time."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from tests.fakejuju import clock as clock_mod
from tests.fakejuju import model as model_mod

log = logging.getLogger(__name__)

FAIL_MODES = ("hook-error", "provisioning-error", "never-idle")
# Juju's default --max-wait for forced removals.
DEFAULT_FORCE_MAX_WAIT = 60.0


class LifecycleError(Exception):
    """A request the model refuses; carries Juju's error code."""

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


class Lifecycle:
    """Drives entity state through Juju's phases on a clock, one step_delay per step."""

    def __init__(
        self,
        state: model_mod.ModelState,
        clock: clock_mod.Clock,
        step_delay: float,
        faults: UnitFaults,
    ) -> None:
        self.state = state
        self.clock = clock
        self.step_delay = step_delay
        self.faults = faults
        self._timers: dict[str, list[clock_mod._Timer]] = {}

    # -- plumbing -----------------------------------------------------------

    def _status(self, current: str, message: str = "") -> model_mod.Status:
        return model_mod.Status(current, message, self.clock.now())

    def _later(self, owner: str, steps: float, action: Callable[[], None]) -> None:
        self._after(owner, steps * self.step_delay, action)

    def _after(self, owner: str, seconds: float, action: Callable[[], None]) -> None:
        def fire() -> None:
            timers = self._timers.get(owner, [])
            if timer in timers:
                timers.remove(timer)
            action()

        timer = self.clock.call_later(seconds, fire)
        self._timers.setdefault(owner, []).append(timer)

    def _cancel(self, owner: str) -> None:
        for timer in self._timers.pop(owner, []):
            timer.cancel()

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
        phases = [
            ("pending", "", "pending", "", "waiting", "waiting for machine", "allocating", ""),
            ("running", "", "started", "", "maintenance", "installing charm software",
             "executing", "running install hook"),
            ("running", "", "started", "", "active", "", "idle", ""),
        ]  # fmt: skip
        for offset, (inst, inst_msg, magent, magent_msg, wl, wl_msg, ua, ua_msg) in enumerate(
            phases
        ):
            since = start + offset * 60.0
            running = inst == "running"
            self.state.put_machine(
                model_mod.Machine(
                    id=machine_id,
                    agent=model_mod.Status(magent, magent_msg, since),
                    instance=model_mod.Status(inst, inst_msg, since),
                    instance_id=self._instance_id(machine_id) if running else "",
                    address=address if running else "",
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

    # -- new units ----------------------------------------------------------

    def add_units(self, application: str, count: int) -> list[str]:
        """Add units on new machines (Application.AddUnits); they start allocating."""
        app = self.state.applications.get(application)
        if app is None:
            raise LifecycleError(f'application "{application}" not found', "not found")
        if app.life != "alive":
            raise LifecycleError(f'application "{application}" is not alive', "not alive")
        names = []
        for _ in range(count):
            machine_id = self.state.allocate_machine_id()
            name = self.state.allocate_unit_name(application)
            self.state.put_machine(
                model_mod.Machine(
                    id=machine_id,
                    agent=self._status("pending"),
                    instance=self._status("pending"),
                )
            )
            self.state.put_unit(
                model_mod.Unit(
                    name=name,
                    application=application,
                    machine_id=machine_id,
                    workload=self._status("waiting", "waiting for machine"),
                    agent=self._status("allocating"),
                )
            )
            mode = self.faults.fail_new_units.get(application, "")
            self._later(name, 1, lambda n=name, m=mode: self._provision(n, m))
            names.append(name)
            log.info("fake juju: added unit %s on machine %s (fault %s)", name, machine_id, mode)
        return names

    def _provision(self, name: str, mode: str) -> None:
        unit = self.state.units.get(name)
        if unit is None:
            return
        if mode == "provisioning-error":
            self._update_machine(
                unit.machine_id,
                instance=self._status(
                    "provisioning error",
                    f"failed to start machine {unit.machine_id}: fake provider refused",
                ),
            )
            return
        self._update_machine(unit.machine_id, instance=self._status("provisioning", "starting"))
        self._later(name, 1, lambda: self._machine_started(name, mode))

    def _machine_started(self, name: str, mode: str) -> None:
        unit = self.state.units.get(name)
        if unit is None:
            return
        address = self._address(unit.machine_id)
        self._update_machine(
            unit.machine_id,
            instance=self._status("running"),
            agent=model_mod.Status("started", "", self.clock.now(), "3.6.1"),
            instance_id=self._instance_id(unit.machine_id),
            address=address,
        )
        if unit.life != "alive":
            return
        self._update_unit(
            name,
            workload=self._status("maintenance", "installing charm software"),
            agent=model_mod.Status("executing", "running install hook", self.clock.now(), "3.6.1"),
            private_address=address,
            public_address=address,
        )
        if mode == "never-idle":
            return
        self._later(name, 1, lambda: self._install_done(name, mode))

    def _install_done(self, name: str, mode: str) -> None:
        unit = self.state.units.get(name)
        if unit is None or unit.life != "alive":
            return
        if mode == "hook-error":
            self._update_unit(
                name,
                workload=self._status("error", 'hook failed: "install"'),
                agent=dataclasses.replace(unit.agent, current="idle", message="",
                                          since=self.clock.now()),
            )  # fmt: skip
            return
        self._update_unit(
            name,
            workload=self._status("maintenance", "starting"),
            agent=dataclasses.replace(unit.agent, message="running start hook",
                                      since=self.clock.now()),
        )  # fmt: skip
        self._later(name, 1, lambda: self._settle(name))

    def _settle(self, name: str) -> None:
        unit = self.state.units.get(name)
        if unit is None or unit.life != "alive":
            return
        self._update_unit(
            name,
            workload=self._status("active"),
            agent=dataclasses.replace(unit.agent, current="idle", message="",
                                      since=self.clock.now()),
        )  # fmt: skip

    # -- removal ------------------------------------------------------------

    def is_stuck(self, unit: model_mod.Unit) -> bool:
        """Return whether a unit cannot finish dying on its own."""
        return unit.name in self.faults.stuck_dying or unit.agent_lost

    def destroy_unit(self, name: str, force: bool, max_wait: float | None) -> None:
        """Start removing a unit (Application.DestroyUnit)."""
        unit = self.state.units.get(name)
        if unit is None:
            raise LifecycleError(f'unit "{name}" not found', "not found")
        if unit.life == "dead":
            return
        if unit.life == "alive":
            self._cancel(name)
            self._update_unit(name, life="dying")
            if not self.is_stuck(unit):
                self._later(name, 1, lambda: self._stop_hook(name))
        elif not self.is_stuck(unit) and not self._timers.get(name):
            # Dying but nothing scheduled (it was stuck before): resume the teardown.
            self._later(name, 1, lambda: self._stop_hook(name))
        if force and self.is_stuck(unit):
            wait = DEFAULT_FORCE_MAX_WAIT if max_wait is None else max_wait
            self._cancel(name + "#force")
            self._after(name + "#force", wait, lambda: self._unit_dead(name, forced=True))
        log.info("fake juju: destroying unit %s (force=%s, max-wait=%s)", name, force, max_wait)

    def _stop_hook(self, name: str) -> None:
        unit = self.state.units.get(name)
        if unit is None:
            return
        if unit.agent.current in ("allocating", ""):
            # The agent never started: the unit is simply removed.
            self._unit_dead(name, forced=False)
            return
        self._update_unit(
            name,
            workload=self._status("maintenance", "stopping charm software"),
            agent=dataclasses.replace(unit.agent, current="executing",
                                      message="running stop hook", since=self.clock.now()),
        )  # fmt: skip
        self._later(name, 1, lambda: self._unit_dead(name, forced=False))

    def _unit_dead(self, name: str, forced: bool) -> None:
        unit = self.state.units.get(name)
        if unit is None:
            return
        self._cancel(name)
        self._update_unit(
            name,
            life="dead",
            workload=self._status("terminated", "unit is being removed"),
            agent=dataclasses.replace(unit.agent, current="idle", message="",
                                      since=self.clock.now()),
        )  # fmt: skip
        self._later(name, 1, lambda: self._unit_removed(name))
        log.info("fake juju: unit %s is dead (forced=%s)", name, forced)

    def _unit_removed(self, name: str) -> None:
        unit = self.state.units.get(name)
        if unit is None:
            return
        self._cancel(name + "#force")
        self.state.remove_unit(name)
        machine = self.state.machines.get(unit.machine_id)
        if (
            machine is not None
            and machine.life == "alive"
            and not self.state.units_on(machine.id)
            and "JobManageModel" not in machine.jobs
        ):
            # Juju destroys a dedicated machine once its last unit is gone.
            self._machine_dying(machine.id)

    def destroy_machine(self, machine_id: str, force: bool) -> list[str]:
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
        if machine.life != "alive":
            return units
        if not units:
            self._machine_dying(machine_id)
            return units
        for unit in units:
            self.destroy_unit(unit, force=True, max_wait=0.0)
        return units

    def _machine_dying(self, machine_id: str) -> None:
        self._update_machine(machine_id, life="dying")
        self._later(f"machine-{machine_id}", 1, lambda: self._machine_dead(machine_id))

    def _machine_dead(self, machine_id: str) -> None:
        machine = self.state.machines.get(machine_id)
        if machine is None:
            return
        self._update_machine(
            machine_id,
            life="dead",
            agent=self._status("stopped"),
        )
        self._later(f"machine-{machine_id}", 1, lambda: self._machine_removed(machine_id))

    def _machine_removed(self, machine_id: str) -> None:
        if machine_id in self.state.machines:
            self.state.remove_machine(machine_id)
            log.info("fake juju: machine %s removed", machine_id)

    # -- agent faults -------------------------------------------------------

    def set_unit_lost(self, name: str, lost: bool = True) -> None:
        """Mark a unit agent lost (FullStatus only; no watcher delta, as in Juju)."""
        unit = self.state.units.get(name)
        if unit is None:
            raise LifecycleError(f'unit "{name}" not found', "not found")
        self.state.units[name] = dataclasses.replace(unit, agent_lost=lost)

    def set_machine_down(self, machine_id: str, down: bool = True) -> None:
        """Mark a machine agent down (FullStatus only; no watcher delta, as in Juju)."""
        machine = self.state.machines.get(machine_id)
        if machine is None:
            raise LifecycleError(f"machine {machine_id} not found", "not found")
        self.state.machines[machine_id] = dataclasses.replace(machine, agent_down=down)

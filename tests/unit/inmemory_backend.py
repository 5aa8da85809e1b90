"""Test support: an in-memory JujuBackend on virtual time with fault hooks, feeding a ModelView.

`run_virtual(coro)` runs a coroutine on an event loop whose clock jumps ahead whenever every
task is waiting, so settle periods and timeouts of minutes take microseconds of real time.
`virtual_now()` is the matching wall clock for the engine (EPOCH + loop time).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import dataclasses
import datetime
import gc
import pathlib
import random
import selectors
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, TypeVar

from tests import certs
from whirlwind import backend
from whirlwind import engine as engine_mod
from whirlwind import journal as journal_mod
from whirlwind import model as model_view
from whirlwind import settings as settings_mod
from whirlwind.chaos import commands as chaos_commands

T = TypeVar("T")

EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)

# Faults for units added by add_unit (one per call, taken from `next_unit_faults`).
HEALTHY = ""
HOOK_ERROR = "hook-error"
PROVISIONING_ERROR = "provisioning-error"
NEVER_SETTLE = "never-settle"
LOST = "lost"
FAULTS = (HEALTHY, HOOK_ERROR, PROVISIONING_ERROR, NEVER_SETTLE, LOST)


# Loop iterations without time passing before the virtual loop calls it a livelock.
MAX_SPINS = 200_000


class DeadlockError(RuntimeError):
    """Nothing is scheduled and nothing can wake the virtual loop: the test would hang."""


class _VirtualSelector(selectors.DefaultSelector):
    """Polls real file descriptors without blocking and moves virtual time instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.spins = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events:
            return events
        if timeout == 0:
            # Something is always ready: a livelock would spin forever without moving time.
            self.spins += 1
            if self.spins > MAX_SPINS:
                raise DeadlockError("virtual loop: tasks keep running without time passing")
            return []
        self.spins = 0
        if timeout is None:
            # Only another thread could wake us (call_soon_threadsafe): give it a real moment.
            events = super().select(2.0)
            if not events:
                raise DeadlockError("virtual loop: nothing scheduled and nothing to wait for")
            return events
        self.now += max(0.0, timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose time() only moves when every task waits (no real sleeping)."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a fresh VirtualTimeLoop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        # As asyncio.run: cancel what is left (a crashed agent's tasks, a backend's poller),
        # so no pending task is destroyed later by the garbage collector.
        left = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        # Finalize what is left now (a crashed agent's task whose exception nobody read logs
        # it with a traceback, and Python 3.11's traceback formatting parses source: run by
        # the garbage collector in the middle of another parse, that raises SystemError).
        gc.collect()
        loop.close()


def virtual_now() -> datetime.datetime:
    """Wall clock matching the running loop's time (virtual on VirtualTimeLoop)."""
    return EPOCH + datetime.timedelta(seconds=asyncio.get_running_loop().time())


class SimulatedCrash(BaseException):
    """Raised by a fault hook to stop the agent abruptly (no Exception handler catches it)."""


@dataclasses.dataclass(frozen=True)
class Timings:
    """Seconds the simulated Juju takes for each transition."""

    provision: float = 5.0
    install: float = 20.0
    remove: float = 5.0
    machine_remove: float = 3.0
    lost_after: float = 10.0


@dataclasses.dataclass(frozen=True)
class Call:
    """One call made to the backend."""

    at: float
    method: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class ExecRecord:
    """A command sent to a unit (run_on_unit), refused or not."""

    at: float
    unit: str
    command: str
    allowed: bool


@dataclasses.dataclass(frozen=True)
class DestroyRecord:
    """A unit removal request and how many healthy units its application keeps after it."""

    unit: str
    application: str
    healthy_left: int
    force: bool


def _status(current: str, message: str = "") -> dict[str, Any]:
    return {"current": current, "message": message, "since": "", "version": "", "data": {}}


class InMemoryBackend:
    """A JujuBackend whose Juju is a dict: unit lifecycle on loop time, faults on demand."""

    def __init__(
        self,
        *,
        timings: Timings | None = None,
        is_controller_model: bool = False,
        delta_lag: float = 0.2,
        status_poll_interval: float | None = 60.0,
    ) -> None:
        self.timings = timings or Timings()
        # As the real backend: a FullStatus poll at start and then every this many seconds
        # (lost agents and leadership show only there). None: only when asked.
        self.status_poll_interval = status_poll_interval
        self._poller: asyncio.Task[None] | None = None
        # As in Juju, a change reaches the view this long after it happened (and so after the
        # call that made it has answered).
        self.delta_lag = delta_lag
        self._deltas: collections.deque[tuple[float, list[Any]]] = collections.deque()
        self._delta_timer: asyncio.TimerHandle | None = None
        # Set-up (the model as it was before the test) reaches the view at once.
        self._setting_up = False
        self._model = model_view.ModelView()
        # The watcher's model info (the first thing a snapshot carries).
        self._model.apply_deltas(
            [["model", "change", {"name": "test", "is-controller": is_controller_model}]]
        )
        self._apps: dict[str, dict[str, Any]] = {}
        self._units: dict[str, dict[str, Any]] = {}
        self._machines: dict[str, dict[str, Any]] = {}
        self._annotations: dict[str, dict[str, str]] = {}
        self._next_number: dict[str, int] = {}
        self._next_machine = 0
        self._connected = True
        self._reconnected = asyncio.Event()
        self._lost: set[str] = set()
        # Each application's leader (FullStatus `leader: true`); unit 0 at set-up, and the
        # lowest-numbered live unit once the leader is gone.
        self._leaders: dict[str, str] = {}
        # Fault hooks.
        self.next_unit_faults: list[str] = []
        self.stuck_dying: set[str] = set()
        self.machines_stay = False
        self.fail_calls: dict[str, list[backend.BackendError]] = {}
        self.fail_after_apply: dict[str, list[backend.BackendError]] = {}
        self.before_call: Callable[[str, tuple[Any, ...]], None] | None = None
        self.after_call: Callable[[str, tuple[Any, ...]], None] | None = None
        # What happened.
        self.calls: list[Call] = []
        self.added: list[str] = []
        self.destroyed: list[DestroyRecord] = []
        # Failure injection. The chaos switch is off: every exec raises unless a test sets
        # allow_exec, so no test injects by accident. Replies are taken from exec_replies
        # (code 0 when empty); an exec to a unit in exec_hang, or whose machine agent a
        # stop-agent script stopped, never completes (its deadline ends it).
        self.allow_exec = False
        self.exec_replies: list[backend.ExecResult | backend.BackendError] = []
        self.exec_hang: set[str] = set()
        self.execs: list[ExecRecord] = []
        self._agent_stopped: set[str] = set()
        self.started = False
        self._model.synced = True

    # -- JujuBackend -----------------------------------------------------------------------

    @property
    def model(self) -> model_view.ModelView:
        """The view fed by this backend's deltas."""
        return self._model

    @property
    def connected(self) -> bool:
        """Whether the simulated connection is up."""
        return self._connected

    async def start(self) -> None:
        """Nothing to connect: mark started and start polling status."""
        self.started = True
        if self.status_poll_interval is not None and self._poller is None:
            self._poller = asyncio.ensure_future(self._poll(self.status_poll_interval))

    async def stop(self) -> None:
        """Mark stopped and stop polling."""
        self.started = False
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None

    async def _poll(self, every: float) -> None:
        while True:
            self._publish_status()
            await asyncio.sleep(every)

    async def wait_synced(self, timeout: float) -> bool:
        """True at once when connected, else after a reconnect within `timeout`."""
        if self._connected:
            return True
        # asyncio.wait, not wait_for: before 3.12 wait_for can swallow a cancellation.
        waiter = asyncio.ensure_future(self._reconnected.wait())
        try:
            await asyncio.wait([waiter], timeout=timeout)
        finally:
            waiter.cancel()
        return self._connected

    async def add_unit(self, application: str) -> str:
        """Add a unit on a new machine; its lifecycle follows `timings` and the next fault."""
        self._enter("add_unit", (application,), {})
        if application not in self._apps:
            raise backend.NotFoundError(f'application "{application}" not found')
        fault = self.next_unit_faults.pop(0) if self.next_unit_faults else HEALTHY
        name = self._create_unit(application, healthy=False)
        self.added.append(name)
        loop = asyncio.get_running_loop()
        loop.call_later(self.timings.provision, self._provisioned, name, fault)
        self._leave("add_unit", (application,))
        return name

    async def destroy_unit(
        self, unit: str, *, force: bool = False, max_wait: float | None = None
    ) -> None:
        """Mark the unit dying; it goes after `timings.remove` (never if stuck, unless forced)."""
        self._enter("destroy_unit", (unit,), {"force": force, "max_wait": max_wait})
        info = self._units.get(unit)
        if info is None:
            # Juju: a plain error without a code.
            raise backend.NotFoundError(f'unit "{unit}" does not exist')
        app = str(info["application"])
        healthy_left = self._model.count_healthy(app) - (1 if self._model.is_healthy(unit) else 0)
        self.destroyed.append(DestroyRecord(unit, app, healthy_left, force))
        if info["life"] == model_view.ALIVE:
            info["life"] = model_view.DYING
            self._emit("unit", info)
        # A unit in hook error or with a lost agent never runs its stop hooks: only force helps,
        # after two max-waits and the cleanup worker's period (state/cleanup.go).
        stuck = (
            unit in self.stuck_dying
            or unit in self._lost
            or info["workload-status"]["current"] == "error"
        )
        if force:
            delay = min(self.timings.remove, 2 * (max_wait or 0) + 30.0)
            asyncio.get_running_loop().call_later(delay, self._remove_unit, unit)
        elif not stuck:
            asyncio.get_running_loop().call_later(self.timings.remove, self._remove_unit, unit)
        self._leave("destroy_unit", (unit,))

    async def destroy_machine(self, machine_id: str, *, force: bool = False) -> None:
        """Remove the machine; refused while it hosts units (unless forced)."""
        self._enter("destroy_machine", (machine_id,), {"force": force})
        info = self._machines.get(machine_id)
        if info is None:
            raise backend.NotFoundError(f'machine "{machine_id}" not found')
        if self._units_on(machine_id) and not force:
            raise backend.BackendError(f"machine {machine_id} has units")
        if info["life"] == model_view.ALIVE:
            info["life"] = model_view.DYING
            self._emit("machine", info)
            asyncio.get_running_loop().call_later(
                self.timings.machine_remove, self._remove_machine, machine_id
            )
        self._leave("destroy_machine", (machine_id,))

    async def set_unit_annotations(self, unit: str, annotations: Mapping[str, str]) -> None:
        """Set annotations on the unit (an annotation delta follows)."""
        self._enter("set_unit_annotations", (unit, dict(annotations)), {})
        tag = model_view.unit_tag(unit)
        if unit not in self._units:
            # Juju: not "not found" but a permission error (annotations client.go findEntity).
            raise backend.BackendError(
                f'while setting annotations to "{tag}": permission denied (unauthorized access)'
            )
        current = self._annotations.setdefault(tag, {})
        for key, value in annotations.items():
            if value:
                current[key] = value
            else:
                current.pop(key, None)  # an empty value deletes the key, as in Juju
        self._emit_annotation(tag)
        self._leave("set_unit_annotations", (unit,))

    async def run_on_unit(self, unit: str, command: str, *, timeout: float) -> backend.ExecResult:
        """Record the command; refused unless allow_exec; stop-agent scripts take effect."""
        loop = asyncio.get_running_loop()
        self.execs.append(ExecRecord(loop.time(), unit, command, self.allow_exec))
        if not self.allow_exec:
            raise backend.BackendError(
                f"exec on {unit} refused: the test did not allow exec (allow_exec=False)"
            )
        self._enter("run_on_unit", (unit, command), {"timeout": timeout})
        info = self._units.get(unit)
        if info is None:
            raise backend.NotFoundError(f'unit "{unit}" not found')
        machine_id = str(info.get("machine-id") or "")
        if unit in self.exec_hang or machine_id in self._agent_stopped:
            # As the real backend: the action stays pending and the deadline ends the wait.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.Event().wait(), timeout)
            raise backend.BackendError(
                f"exec on {unit}: no result within {timeout:g}s", transient=True
            )
        reply = self.exec_replies.pop(0) if self.exec_replies else backend.ExecResult(0, "", "")
        if isinstance(reply, backend.BackendError):
            raise reply
        marker = chaos_commands.parse_marker(command)
        stop_agent = marker is not None and marker[:2] == ("stop-agent", "inject")
        if reply.code == 0 and marker is not None and stop_agent and machine_id:
            duration = float(marker[2]["duration"])
            delay = chaos_commands.STOP_AGENT_DELAY
            loop.call_later(delay, self._stop_agent, machine_id, True)
            loop.call_later(duration + delay, self._stop_agent, machine_id, False)
        self._leave("run_on_unit", (unit, command))
        return reply

    def _stop_agent(self, machine_id: str, stopped: bool) -> None:
        """The machine agent stops (its units go lost) or starts again."""
        if stopped:
            self._agent_stopped.add(machine_id)
        else:
            self._agent_stopped.discard(machine_id)
        for name in self._units_on(machine_id):
            self.set_lost(name, stopped)

    async def refresh_status(self) -> None:
        """Publish lost agents now, as a FullStatus poll would."""
        self._enter("refresh_status", (), {})
        self._publish_status()
        self._leave("refresh_status", ())

    # -- set-up and fault injection ----------------------------------------------------------

    def add_application(
        self,
        name: str,
        units: int = 3,
        *,
        subordinate: bool = False,
        born: Mapping[int, datetime.datetime] | None = None,
    ) -> list[str]:
        """Create an application with healthy units (set-up: in the view at once)."""
        with self._set_up():
            self._apps[name] = {"name": name, "life": model_view.ALIVE, "subordinate": subordinate}
            self._emit("application", self._apps[name])
            names = [self._create_unit(name, healthy=True) for _ in range(units)]
            if names and not subordinate:
                self._leaders[name] = names[0]
            for number, when in (born or {}).items():
                tag = model_view.unit_tag(f"{name}/{number}")
                self._annotations.setdefault(tag, {})["whirlwind/born"] = when.isoformat()
                self._emit_annotation(tag)
        return names

    def add_subordinate_unit(self, application: str, principal: str) -> str:
        """Put a subordinate unit of `application` next to `principal` (set-up)."""
        with self._set_up():
            return self._add_subordinate_unit(application, principal)

    def _add_subordinate_unit(self, application: str, principal: str) -> str:
        if application not in self._apps:
            self._apps[application] = {
                "name": application,
                "life": model_view.ALIVE,
                "subordinate": True,
            }
            self._emit("application", self._apps[application])
        number = self._next_number.get(application, 0)
        self._next_number[application] = number + 1
        name = f"{application}/{number}"
        self._units[name] = {
            "name": name,
            "application": application,
            "machine-id": self._units[principal]["machine-id"],
            "life": model_view.ALIVE,
            "principal": principal,
            "subordinate": True,
            "workload-status": _status("active"),
            "agent-status": _status("idle"),
        }
        self._emit("unit", self._units[name])
        return name

    def set_controller_machine(self, machine_id: str) -> None:
        """Give the machine the controller job (set-up)."""
        self._machines[machine_id]["jobs"] = ["JobHostUnits", "JobManageModel"]
        with self._set_up():
            self._emit("machine", self._machines[machine_id])

    def set_unit_status(
        self, unit: str, workload: str, agent: str = "idle", message: str = ""
    ) -> None:
        """Change a unit's workload and agent status."""
        info = self._units[unit]
        info["workload-status"] = _status(workload, message)
        info["agent-status"] = _status(agent)
        self._emit("unit", info)

    def remove_by_operator(self, unit: str) -> None:
        """`juju remove-unit`: the unit goes after `timings.remove` (not one of our calls)."""
        info = self._units.get(unit)
        if info is None or info["life"] != model_view.ALIVE:
            return
        info["life"] = model_view.DYING
        self._emit("unit", info)
        asyncio.get_running_loop().call_later(self.timings.remove, self._remove_unit, unit)

    def is_healthy_now(self, unit: str) -> bool:
        """The truth (not the agent's late view): alive, active/idle and not lost."""
        info = self._units.get(unit)
        return (
            info is not None
            and info["life"] == model_view.ALIVE
            and info["workload-status"]["current"] == "active"
            and info["agent-status"]["current"] == "idle"
            and unit not in self._lost
        )

    def set_lost(self, unit: str, lost: bool = True) -> None:
        """Make the unit's agent lost (or back), as a status poll would show."""
        if lost:
            self._lost.add(unit)
        else:
            self._lost.discard(unit)
        self._publish_status()

    def disconnect(self, seconds: float | None = None) -> None:
        """Drop the connection; with `seconds`, reconnect after that long."""
        self._connected = False
        self._deltas.clear()
        self._reconnected = asyncio.Event()
        if seconds is not None:
            asyncio.get_running_loop().call_later(seconds, self.reconnect)

    def reconnect(self) -> None:
        """Reconnect: the view gets a fresh snapshot."""
        if self._connected:
            return
        self._connected = True
        deltas: list[list[Any]] = []
        deltas += [["application", "change", dict(a)] for a in self._apps.values()]
        deltas += [["machine", "change", dict(m)] for m in self._machines.values()]
        deltas += [["unit", "change", dict(u)] for u in self._units.values()]
        deltas += [
            ["annotation", "change", {"tag": t, "annotations": dict(a)}]
            for t, a in self._annotations.items()
        ]
        self._model.apply_deltas(deltas, snapshot=True)
        self._publish_status()
        self._reconnected.set()

    def get_live_units(self, application: str) -> list[str]:
        """Names of the application's units as Juju has them (not the view)."""
        units = [u for u in self._units.values() if u["application"] == application]
        return sorted((str(u["name"]) for u in units), key=lambda n: int(n.rsplit("/", 1)[1]))

    def get_machine_ids(self) -> list[str]:
        """Machines as Juju has them."""
        return sorted(self._machines, key=int)

    def get_annotations(self, unit: str) -> dict[str, str]:
        """Annotations Juju keeps for `unit`."""
        return dict(self._annotations.get(model_view.unit_tag(unit), {}))

    def get_calls(self, method: str) -> list[Call]:
        """Calls made to `method`, in order."""
        return [c for c in self.calls if c.method == method]

    # -- internals -------------------------------------------------------------------------

    def _enter(self, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        loop_time = asyncio.get_running_loop().time()
        self.calls.append(Call(loop_time, method, args, dict(kwargs)))
        if self.before_call is not None:
            self.before_call(method, args)
        failures = self.fail_calls.get(method)
        if failures:
            raise failures.pop(0)
        if not self._connected:
            raise backend.NotConnectedError()

    def _leave(self, method: str, args: tuple[Any, ...]) -> None:
        if self.after_call is not None:
            self.after_call(method, args)
        failures = self.fail_after_apply.get(method)
        if failures:
            raise failures.pop(0)

    def _emit(self, kind: str, info: Mapping[str, Any]) -> None:
        self._send([kind, "change", copy.deepcopy(dict(info))])

    def _emit_remove(self, kind: str, info: Mapping[str, Any]) -> None:
        self._send([kind, "remove", copy.deepcopy(dict(info))])

    def _send(self, delta: list[Any]) -> None:
        """Deliver a delta `delta_lag` seconds from now, in order (set-up: at once)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or self._setting_up:
            self._model.apply_deltas([delta])
            return
        if not self._connected:
            return
        self._deltas.append((loop.time() + self.delta_lag, delta))
        if self._delta_timer is None:
            self._delta_timer = loop.call_at(self._deltas[0][0], self._deliver)

    def _deliver(self) -> None:
        loop = asyncio.get_running_loop()
        self._delta_timer = None
        batch: list[list[Any]] = []
        while self._deltas and self._deltas[0][0] <= loop.time():
            batch.append(self._deltas.popleft()[1])
        if batch and self._connected:
            self._model.apply_deltas(batch)
        if self._deltas:
            self._delta_timer = loop.call_at(self._deltas[0][0], self._deliver)

    @contextlib.contextmanager
    def _set_up(self) -> Iterator[None]:
        self._setting_up = True
        try:
            yield
        finally:
            self._setting_up = False

    def _emit_annotation(self, tag: str) -> None:
        info = {"tag": tag, "annotations": dict(self._annotations.get(tag, {}))}
        self._emit("annotation", info)

    def _publish_status(self) -> None:
        if not self._connected:
            return
        request = self._model.begin_status_poll()
        applications: dict[str, Any] = {}
        for name, info in self._units.items():
            app = applications.setdefault(str(info["application"]), {"units": {}})
            workload = info["workload-status"]["current"]
            agent = info["agent-status"]["current"]
            if name in self._lost:
                agent = "lost"
                workload = "unknown" if workload not in ("error", "terminated") else workload
            app["units"][name] = {
                "workload-status": {"status": workload},
                "agent-status": {"status": agent},
                "leader": self._leaders.get(str(info["application"])) == name,
            }
        self._model.apply_full_status({"applications": applications, "machines": {}}, request)

    def _units_on(self, machine_id: str) -> list[str]:
        return [n for n, u in self._units.items() if u["machine-id"] == machine_id]

    def _create_unit(self, application: str, *, healthy: bool) -> str:
        number = self._next_number.get(application, 0)
        self._next_number[application] = number + 1
        name = f"{application}/{number}"
        machine_id = str(self._next_machine)
        self._next_machine += 1
        self._machines[machine_id] = {
            "id": machine_id,
            "life": model_view.ALIVE,
            "instance-id": f"i-{machine_id}" if healthy else "",
            "agent-status": _status("started" if healthy else "pending"),
            "instance-status": _status("running" if healthy else "pending"),
            "jobs": ["JobHostUnits"],
        }
        self._emit("machine", self._machines[machine_id])
        self._units[name] = {
            "name": name,
            "application": application,
            "machine-id": machine_id,
            "life": model_view.ALIVE,
            "principal": "",
            "subordinate": False,
            "workload-status": _status("active" if healthy else "waiting"),
            "agent-status": _status("idle" if healthy else "allocating"),
        }
        self._emit("unit", self._units[name])
        return name

    def _clock(self) -> datetime.datetime:
        try:
            return virtual_now()
        except RuntimeError:
            return EPOCH

    def _provisioned(self, name: str, fault: str) -> None:
        info = self._units.get(name)
        if info is None or info["life"] != model_view.ALIVE:
            return
        machine = self._machines[str(info["machine-id"])]
        if fault == PROVISIONING_ERROR:
            machine["instance-status"] = _status("provisioning error", "no matching image")
            self._emit("machine", machine)
            return
        machine["instance-status"] = _status("running")
        machine["agent-status"] = _status("started")
        machine["instance-id"] = f"i-{machine['id']}"
        self._emit("machine", machine)
        info["workload-status"] = _status("maintenance", "installing")
        info["agent-status"] = _status("executing")
        self._emit("unit", info)
        if fault != NEVER_SETTLE:
            asyncio.get_running_loop().call_later(
                self.timings.install, self._installed, name, fault
            )

    def _installed(self, name: str, fault: str) -> None:
        info = self._units.get(name)
        if info is None or info["life"] != model_view.ALIVE:
            return
        if fault == HOOK_ERROR:
            info["workload-status"] = _status("error", 'hook failed: "install"')
            info["agent-status"] = _status("idle")
        else:
            info["workload-status"] = _status("active")
            info["agent-status"] = _status("idle")
        self._emit("unit", info)
        if fault == LOST:
            asyncio.get_running_loop().call_later(self.timings.lost_after, self.set_lost, name)

    def _remove_unit(self, name: str) -> None:
        info = self._units.pop(name, None)
        if info is None:
            return
        self._lost.discard(name)
        application = str(info["application"])
        if self._leaders.get(application) == name:
            self._elect(application)
        tag = model_view.unit_tag(name)
        self._annotations.pop(tag, None)
        for sub in [n for n, u in self._units.items() if u.get("principal") == name]:
            self._remove_unit(sub)
        self._emit_remove("unit", info)
        machine_id = str(info["machine-id"])
        machine = self._machines.get(machine_id)
        if (
            machine is not None
            and not self.machines_stay
            and not self._units_on(machine_id)
            and "JobManageModel" not in machine["jobs"]
        ):
            asyncio.get_running_loop().call_later(
                self.timings.machine_remove, self._remove_machine, machine_id
            )

    def _elect(self, application: str) -> None:
        live = [
            (int(n.split("/")[1]), n)
            for n, u in self._units.items()
            if u["application"] == application and u["life"] == model_view.ALIVE
        ]
        if live:
            self._leaders[application] = min(live)[1]
        else:
            self._leaders.pop(application, None)

    def set_leader(self, unit: str) -> None:
        """Move the application's leadership to `unit` (seen at the next status poll)."""
        self._leaders[str(self._units[unit]["application"])] = unit

    def get_leader(self, application: str) -> str | None:
        """The application's leader now."""
        return self._leaders.get(application)

    def _remove_machine(self, machine_id: str) -> None:
        if self._units_on(machine_id):
            return
        info = self._machines.pop(machine_id, None)
        if info is not None:
            self._emit_remove("machine", info)


CA_CERT = certs.CA_CERT


def make_settings(state_dir: pathlib.Path, **overrides: Any) -> settings_mod.AgentSettings:
    """Agent settings for tests: one target `app`, minutes-long timings (virtual time)."""
    values: dict[str, Any] = {
        "controller": settings_mod.ControllerSettings(
            endpoints=("10.0.0.1:17070",), ca_cert=CA_CERT, username="admin", password="s3cret"
        ),
        "model_uuid": "11111111-2222-3333-4444-555555555555",
        "services": ("app",),
        "interval": 600,
        "settle_period": 60,
        "settle_timeout": 600,
        "remove_timeout": 120,
        "state_dir": state_dir,
        "control_socket": state_dir / "control.sock",
        # Shared by every agent of a test, as the charm shares it between its units.
        "op_key": "test-op-key",
    }
    values.update(overrides)
    return settings_mod.AgentSettings(**values)


# -- running the real engine on this backend --------------------------------------------


@dataclasses.dataclass
class Agent:
    """One running agent: engine task, its journal and settings."""

    engine: engine_mod.Engine
    journal: journal_mod.Journal
    task: asyncio.Task[bool]

    async def stop(self) -> bool:
        """Stop the engine cleanly and close the journal."""
        self.engine.stop()
        try:
            return await self.task
        finally:
            self.journal.close()
            await self.engine._backend.stop()

    def history(self) -> list[journal_mod.Operation]:
        """Every operation, oldest first."""
        return list(reversed(self.journal.get_history(1000)))


async def start_agent(
    backend: InMemoryBackend,
    state_dir: pathlib.Path,
    *,
    seed: int = 1,
    on_commit: Callable[[str], None] | None = None,
    **overrides: Any,
) -> Agent:
    """Open the journal in `state_dir` and start an engine on `backend`."""
    settings = make_settings(state_dir, **overrides)
    await backend.start()  # as the CLI does: polling status in the background
    journal = journal_mod.Journal(
        state_dir / journal_mod.JOURNAL_FILE, on_commit=on_commit, durable=False
    )
    engine = engine_mod.Engine(
        settings, backend, journal, now=virtual_now, rng=random.Random(seed)
    )
    task = asyncio.ensure_future(engine.run())
    await asyncio.sleep(0)
    return Agent(engine, journal, task)


async def wait_until(predicate: Callable[[], bool], timeout: float = 7200.0) -> None:
    """Poll `predicate` every 5 virtual seconds; fail the test after `timeout` virtual seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(5)


def all_finished(journal: journal_mod.Journal) -> Callable[[], bool]:
    """Predicate: there is at least one operation and every operation has finished."""
    return lambda: bool(journal.get_history(1)) and not journal.get_unfinished()

"""Test support for the agent's functional tests: settings, a clock pump, invariants, agents.

The fake controller runs on its manual clock; a `ClockPump` moves it one lifecycle step at a
time while a test waits for a condition, so a test can freeze Juju at an exact point (a unit
half installed, a unit dying, a machine not yet removed) for as long as it likes. The agent
itself runs on the wall clock, either in the test's event loop (`InProcessAgent`: Engine +
LibjujuBackend + Journal) or as the real `python -m whirlwind run` process (`AgentProcess`).

`InvariantChecker` sees every change of the fake's model as it happens and records whether
the healthy-unit count of a target ever dropped below its starting value; at the end it checks
that no unit was leaked or lost and that the agent's history tells the fake's story.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import inspect
import json
import os
import pathlib
import random
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

from tests.fakejuju import clock as fake_clock
from tests.fakejuju import model as fake_model
from tests.fakejuju import server as fake_server
from whirlwind import control, engine, libjuju_backend
from whirlwind import journal as journal_mod
from whirlwind import settings as settings_mod

ROOT = pathlib.Path(__file__).resolve().parents[2]
OWN_APP = "whirlwind"

# The in-process agent: reconnects within tens of milliseconds, sees lost agents within 0.2 s.
AGENT_TIMINGS = libjuju_backend.BackendTimings(
    backoff_initial=0.05,
    backoff_max=0.5,
    stable_after=60.0,
    connect_timeout=5.0,
    snapshot_timeout=5.0,
    call_timeout=3.0,
    status_timeout=3.0,
    status_poll_interval=0.2,
    close_timeout=1.0,
    stop_timeout=3.0,
)

Predicate = Callable[[], "bool | Awaitable[bool]"]


class WaitTimeoutError(AssertionError):
    """A bounded wait of a test ran out."""


# -- settings ------------------------------------------------------------------------------------


def make_settings(
    fake: fake_server.FakeJujuController,
    state_dir: pathlib.Path,
    services: Sequence[str],
    **overrides: Any,
) -> settings_mod.AgentSettings:
    """Agent settings on `fake`: fast deadlines; no interval trigger or metrics unless asked."""
    values: dict[str, Any] = {
        "controller": settings_mod.ControllerSettings(
            endpoints=(fake.endpoint,),
            ca_cert=fake.ca_cert,
            username=fake.username,
            password=fake.password,
        ),
        "model_uuid": fake.model_uuid,
        "services": tuple(services),
        "interval": 3600,
        "settle_period": 0,
        "settle_timeout": 30,
        "remove_timeout": 30,
        "state_dir": state_dir / "state",
        "control_socket": state_dir / "control.sock",
        "status_poll_interval": 1,
        "own_application": OWN_APP,
        # Off unless a test asks for a port: agents of parallel tests must not all bind 9587.
        "metrics_port": 0,
    }
    values.update(overrides)
    return settings_mod.AgentSettings(**values)


def write_settings(settings: settings_mod.AgentSettings, folder: pathlib.Path) -> pathlib.Path:
    """Render settings as the charm does (password in its own 0600 file); return the path."""
    password_file = folder / "credentials"
    settings_mod.write_file_atomically(
        password_file, settings.controller.password + "\n", mode=0o600
    )
    path = folder / "settings.yaml"
    settings_mod.write_file_atomically(path, settings_mod.dump_settings(settings, password_file))
    return path


# -- waiting -----------------------------------------------------------------------------------


async def _holds(predicate: Predicate) -> bool:
    value = predicate()
    if inspect.isawaitable(value):
        value = await value
    return bool(value)


async def wait_for(
    predicate: Predicate, timeout: float = 10.0, what: str = "condition", interval: float = 0.02
) -> None:
    """Wait (real time, bounded) until `predicate` holds; fail the test otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await _holds(predicate):
        if loop.time() > deadline:
            raise WaitTimeoutError(f"{what}: not reached within {timeout}s")
        await asyncio.sleep(interval)


class ClockPump:
    """Moves the fake's manual clock one lifecycle step per tick while the test waits."""

    def __init__(
        self, fake: fake_server.FakeJujuController, step: float = 1.0, period: float = 0.02
    ) -> None:
        self.fake = fake
        self.step = step
        self.period = period

    async def tick(self) -> None:
        """One step of fake time, then a moment of real time for the agent to react."""
        await self.fake.advance(self.step)
        await asyncio.sleep(self.period)

    async def until(self, predicate: Predicate, timeout: float = 15.0, what: str = "") -> None:
        """Tick until `predicate` holds (checked before every tick); the clock then stays put."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await _holds(predicate):
            if loop.time() > deadline:
                raise WaitTimeoutError(f"{what or 'condition'}: not reached within {timeout}s")
            await self.tick()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Tick in the background for the duration of the block."""

        async def pump() -> None:
            while True:
                await self.tick()

        task = asyncio.create_task(pump())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_for(self, seconds: float) -> None:
        """Tick for `seconds` of real time (Juju keeps moving while the agent must not act)."""
        async with self.running():
            await asyncio.sleep(seconds)


# -- the fake's model ---------------------------------------------------------------------------


def is_healthy(model: fake_model.ModelState, unit: fake_model.Unit) -> bool:
    """Serving: alive, agent up, workload active (or unknown: a charm without status).

    The agent only accepts a new unit once it is also `idle` for settle-period; a unit that
    later runs a relation or config hook (agent `executing`, workload still active) serves
    on, so the invariant counts it. Allocating, installing, erroring, lost units do not.
    """
    machine = model.machines.get(unit.machine_id)
    return (
        unit.life == "alive"
        and unit.workload.current in ("active", "unknown")
        and unit.agent.current in ("idle", "executing")
        and not unit.agent_lost
        and not (machine is not None and machine.agent_down)
    )


def count_healthy(model: fake_model.ModelState, application: str) -> int:
    """Healthy units of `application` in the fake right now."""
    return sum(
        1 for u in model.units.values() if u.application == application and is_healthy(model, u)
    )


def units_of(fake: fake_server.FakeJujuController, application: str) -> set[str]:
    """Names of the units of `application` in the fake right now."""
    return {u.name for u in fake.model.units.values() if u.application == application}


def unit_life(fake: fake_server.FakeJujuController, name: str) -> str | None:
    """Life of unit `name` in the fake (None once removed)."""
    unit = fake.model.units.get(name)
    return unit.life if unit is not None else None


def unit_status(fake: fake_server.FakeJujuController, name: str) -> str | None:
    """Workload status of unit `name` in the fake (None once removed)."""
    unit = fake.model.units.get(name)
    return unit.workload.current if unit is not None else None


def new_units(fake: fake_server.FakeJujuController, application: str, before: int) -> list[str]:
    """Units of `application` numbered `before` or higher (added during the test)."""
    return sorted(
        (u.name for u in fake.model.units.values() if u.application == application),
        key=lambda n: int(n.rsplit("/", 1)[1]),
    )[before:]


def annotated_with(fake: fake_server.FakeJujuController, unit: str, op_id: str) -> bool:
    """Whether the operation `op_id` marked `unit` (the marks come off when it finishes)."""
    tag = "unit-" + unit.replace("/", "-")
    return any(
        item.get("entity") == tag and item.get("annotations", {}).get("whirlwind/op") == op_id
        for call in fake.calls_to("Annotations", "Set")
        for item in call.params.get("annotations", [])
    )


def lifecycle_idle(fake: fake_server.FakeJujuController) -> bool:
    """Whether no lifecycle step is pending (Juju has nothing more to do by itself)."""
    clock = fake.clock
    return not (isinstance(clock, fake_clock.ManualClock) and clock.next_due())


def observe(model: fake_model.ModelState, name: str, on_change: Callable[[], None]) -> None:
    """Call `on_change` after every change of the fake's model, the moment it happens.

    Model observers see the database, not the (late) watcher deltas the agent gets.
    """

    def observer(kind: str, key: str, change: str, info: dict[str, Any]) -> None:
        on_change()

    model.observers[name] = observer


def cut_off_when(fake: fake_server.FakeJujuController, condition: Callable[[], bool]) -> None:
    """Abort every connection the moment `condition` holds after a change of the model.

    The change happens inside the request that causes it, so the reply to that request is
    lost: the call took effect in Juju but the agent never hears the answer.
    """
    name = f"cut-off-{len(fake.model.observers)}"

    def check() -> None:
        if condition():
            fake.model.observers.pop(name, None)
            for session in list(fake._sessions.values()):
                session.ws.transport.abort()

    observe(fake.model, name, check)


@dataclasses.dataclass(frozen=True)
class Violation:
    """The healthy count of `application` fell to `healthy` (below `minimum`)."""

    application: str
    healthy: int
    minimum: int
    units: dict[str, str]


class InvariantChecker:
    """Watches the fake's model: healthy units never below start; at the end, nothing leaked."""

    def __init__(self, fake: fake_server.FakeJujuController, targets: Iterable[str]) -> None:
        self.fake = fake
        model = fake.model
        self.targets = tuple(targets)
        self.start = {app: count_healthy(model, app) for app in self.targets}
        self.initial_units = {app: units_of(fake, app) for app in self.targets}
        self.initial_machines = set(model.machines)
        self.lowest = dict(self.start)
        self.violations: list[Violation] = []
        self.seen_units: set[str] = set(model.units)
        self.machine_of: dict[str, str] = {u.name: u.machine_id for u in model.units.values()}
        self.samples = 0
        observe(model, "invariant-probe", self.sample)
        self.sample()

    def sample(self) -> None:
        """Look at the model now (also call it after faults that send no delta)."""
        model = self.fake.model
        self.samples += 1
        self.seen_units.update(model.units)
        for unit in model.units.values():
            self.machine_of[unit.name] = unit.machine_id
        for app in self.targets:
            healthy = count_healthy(model, app)
            self.lowest[app] = min(self.lowest[app], healthy)
            if healthy < self.start[app]:
                self.violations.append(
                    Violation(
                        app,
                        healthy,
                        self.start[app],
                        {
                            u.name: f"{u.life} {u.workload.current}/{u.agent.current}"
                            f"{' lost' if u.agent_lost else ''}"
                            for u in model.units.values()
                            if u.application == app
                        },
                    )
                )

    def detach(self) -> None:
        """Stop sampling."""
        self.fake.model.observers.pop("invariant-probe", None)

    @property
    def added_units(self) -> set[str]:
        """Every unit that appeared during the test."""
        initial = set().union(*self.initial_units.values()) if self.initial_units else set()
        return {
            name for name in self.seen_units - initial if name.rsplit("/", 1)[0] in self.targets
        }

    def assert_healthy_never_dropped(self) -> None:
        """No sample saw fewer healthy units of a target than at the start."""
        assert not self.violations, f"healthy count dropped: {self.violations[:3]}"
        assert self.lowest == self.start

    def assert_final(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Juju settled: no leaked or lost units, emptied machines gone, history consistent.

        `history` is the agent's history (control API form, newest first) of this test.
        """
        self.assert_healthy_never_dropped()
        model = self.fake.model
        assert lifecycle_idle(self.fake), "Juju still has steps pending"
        ops = list(reversed(history))
        # Each operation completed or rolled back (a dry run changes nothing).
        finished = (journal_mod.OK, journal_mod.ROLLED_BACK, journal_mod.DRY_RUN)
        assert all(op["result"] in finished for op in ops), ops
        expected = {app: set(units) for app, units in self.initial_units.items()}
        for op in ops:
            app = op["service"]
            if op["result"] == journal_mod.OK:
                assert op["old-unit"] in expected[app], op
                assert op["new-unit"] is not None, op
                expected[app].discard(op["old-unit"])
                expected[app].add(op["new-unit"])
            elif op["new-unit"] is not None:
                # Rolled back: the new unit must be gone again.
                assert op["new-unit"] not in model.units, op
        for app in self.targets:
            # No lost unit, no leaked unit: exactly the replay of the history is there.
            assert units_of(self.fake, app) == expected[app], (app, ops)
            assert count_healthy(model, app) == len(expected[app]) >= self.start[app]
        # Every unit the agent added is named in its history (nothing added behind its back).
        assert self.added_units == {op["new-unit"] for op in ops if op["new-unit"]}, ops
        # Machines: the machines of removed units are gone; none is left empty or dying.
        for name in self.seen_units - set(model.units):
            assert self.machine_of[name] not in model.machines, (name, self.machine_of[name])
        for machine in model.machines.values():
            assert machine.life == "alive", machine
            assert model.units_on(machine.id), f"machine {machine.id} was left empty"


# -- the agent in the test's event loop ----------------------------------------------------------


def fake_time(fake: fake_server.FakeJujuController) -> Callable[[], datetime.datetime]:
    """The fake controller's clock as an engine's `now`."""
    return lambda: datetime.datetime.fromtimestamp(fake.clock.now(), datetime.timezone.utc)


class InProcessAgent:
    """Engine + LibjujuBackend + Journal, as `whirlwind run` wires them, in this event loop."""

    def __init__(
        self,
        settings: settings_mod.AgentSettings,
        seed: int = 1,
        timings: libjuju_backend.BackendTimings = AGENT_TIMINGS,
        now: engine.Clock = engine.utc_now,
    ) -> None:
        """`now` is the engine's clock (fake_time(fake): the fake controller's)."""
        self.settings = settings
        self.backend = libjuju_backend.LibjujuBackend(
            settings, timings=timings, rng=random.Random(seed)
        )
        self.journal = journal_mod.Journal(
            settings.state_dir / journal_mod.JOURNAL_FILE, durable=False
        )
        self.engine = engine.Engine(
            settings, self.backend, self.journal, now=now, rng=random.Random(seed)
        )
        self.task: asyncio.Task[bool] | None = None
        self.stopped = False

    async def start(self, timeout: float = 10.0) -> InProcessAgent:
        """Connect and run the engine; return once it accepts requests."""
        await self.backend.start()
        self.task = asyncio.create_task(self.engine.run())
        await wait_for(self.is_ready, timeout, "agent ready")
        return self

    async def is_ready(self) -> bool:
        """Whether the engine is connected and has recovered (status shows its next due)."""
        if self.task is not None and self.task.done():
            self.task.result()  # an engine that died must fail the test at once
        status = await self.engine.get_status()
        return bool(status["connected"]) and bool(status["ready"])

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the engine (operations in flight stay journaled), the backend and the journal."""
        if self.stopped:
            return
        self.stopped = True
        self.engine.stop()
        if self.task is not None:
            await asyncio.wait_for(self.task, timeout)
        await self.backend.stop()
        self.journal.close()

    async def replace_now(self, service: str, **kwargs: Any) -> dict[str, Any]:
        """A `replace-now` request as the control API passes it to the engine."""
        return await self.engine.replace_now(control.ReplaceNowRequest(service, **kwargs))

    def history(self) -> list[dict[str, Any]]:
        """The whole history, newest first, in the control API's form."""
        return [op.to_dict() for op in self.journal.get_history(1000)]

    def unfinished(self) -> list[journal_mod.Operation]:
        """Operations in flight."""
        return self.journal.get_unfinished()

    def in_step(self, step: str) -> Callable[[], bool]:
        """Predicate: the operation in flight has journaled `step`."""
        return lambda: any(op.step == step for op in self.unfinished())

    def idle(self) -> bool:
        """Whether at least one operation ran and none is in flight."""
        return bool(self.journal.get_history(1)) and not self.unfinished()


# -- the agent as a process -----------------------------------------------------------------------


def agent_env() -> dict[str, str]:
    """Environment of agent processes: the project's import paths, unbuffered output."""
    env = dict(os.environ)
    paths = [str(ROOT / "src"), str(ROOT / "lib"), str(ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class AgentProcess:
    """`python -m whirlwind run --config FILE` as a child process, with its control socket."""

    COMMAND: ClassVar[tuple[str, ...]] = (sys.executable, "-m", "whirlwind")

    def __init__(self, settings: settings_mod.AgentSettings, folder: pathlib.Path) -> None:
        self.settings = settings
        self.folder = folder
        self.config = write_settings(settings, folder)
        self.client = control.ControlClient(settings.control_socket, timeout=10.0)
        self.process: asyncio.subprocess.Process | None = None
        self.runs = 0

    @property
    def log_path(self) -> pathlib.Path:
        """Where the current run's output goes."""
        return self.folder / f"agent-{self.runs}.log"

    async def start(self, timeout: float = 20.0) -> AgentProcess:
        """Start the process; return once its control socket answers and it is connected."""
        self.runs += 1
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.COMMAND,
                "run",
                "--config",
                str(self.config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=agent_env(),
                cwd=str(self.folder),
            )
        await wait_for(self._is_ready, timeout, f"agent ready (log: {self.log_path})", 0.05)
        return self

    async def _is_ready(self) -> bool:
        if self.process is not None and self.process.returncode is not None:
            raise AssertionError(
                f"agent exited with {self.process.returncode}: {self.log_text()[-3000:]}"
            )
        try:
            status = await self.call("status")
        except (control.AgentUnavailableError, control.ControlError):
            return False
        return bool(status["connected"]) and bool(status["ready"])

    async def call(self, command: str, timeout: float | None = None, **args: Any) -> Any:
        """One control request, without blocking the event loop the fake runs in."""
        return await asyncio.to_thread(self.client.call, command, timeout, **args)

    async def status(self) -> dict[str, Any]:
        """The agent's status."""
        return await self.call("status")

    async def history(self) -> list[dict[str, Any]]:
        """The whole history, newest first."""
        return await self.call("history", limit=1000)

    async def step_in_flight(self) -> str | None:
        """The journaled step of the operation in flight, if any."""
        in_flight = (await self.status())["in-flight"]
        return None if in_flight is None else in_flight["step"]

    def in_step(self, step: str) -> Callable[[], Awaitable[bool]]:
        """Predicate: the operation in flight has journaled `step`."""

        async def check() -> bool:
            return await self.step_in_flight() == step

        return check

    async def idle(self) -> bool:
        """Whether at least one operation ran and none is in flight."""
        status = await self.status()
        return status["in-flight"] is None and status["last"] is not None

    async def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as a crash or an OOM kill."""
        await self.signal(signal.SIGKILL)

    async def signal(self, signum: int, timeout: float = 10.0) -> int:
        """Send `signum` and wait (bounded) for the process to end; return its exit code."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signum)
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def freeze(self) -> None:
        """SIGSTOP: the process stops at once but keeps its connections open."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    async def ctl(self, *args: str, timeout: float = 30.0) -> tuple[int, Any, str]:
        """Run `python -m whirlwind ctl --socket S ARGS`; return (exit code, JSON out, stderr)."""
        process = await asyncio.create_subprocess_exec(
            *self.COMMAND,
            "ctl",
            "--socket",
            str(self.settings.control_socket),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=agent_env(),
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout)
        text = out.decode().strip()
        return (
            process.returncode if process.returncode is not None else -1,
            json.loads(text) if text else None,
            err.decode(),
        )

    def log_text(self) -> str:
        """Output of the current run."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def close(self) -> None:
        """Make sure the process is gone (SIGKILL if still running, even when frozen)."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await asyncio.wait_for(self.process.wait(), 10.0)

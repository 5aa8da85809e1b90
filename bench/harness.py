"""Runs each side (the agent, the naive baseline) against its own fresh fake and measures it.

The fake controller runs in this process (so its call log, status history and watchers can
be read and driven directly); the agent and the baseline each run in a subprocess of their
own, so their memory and CPU can be read from /proc without the fake's.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import json
import logging
import os
import pathlib
import random
import signal
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, BinaryIO

from prometheus_client import parser as prom_parser
from prometheus_client.openmetrics import parser as openmetrics_parser

import bench
from bench import fakes, procstat, scraper
from tests.fakejuju import server as fake_server
from whirlwind import control
from whirlwind import journal as journal_mod
from whirlwind import settings as settings_mod

logger = logging.getLogger(__name__)

TARGET = "wsgi-example"
BIG = "big"
READY_TIMEOUT = 120.0
REPLACE_TIMEOUT = 300.0
# One `plan` request (or one full status of the baseline) on the big model.
PLAN_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
# The agent's default status-poll-interval (AgentSettings), used unless a phase says otherwise.
DEFAULT_STATUS_POLL = 60
# The baseline's full-status poll interval (bench/baseline.py POLL).
BASELINE_POLL = 0.5
# Seed of the random moments at which the heal phase breaks units.
HEAL_SEED = 1
# One scrape of the agent's /metrics (seconds).
SCRAPE_TIMEOUT = scraper.SCRAPE_TIMEOUT


PHASES = ("replace", "idle", "memory", "heal", "plan", "scrape")
_PHASE_TITLES = {
    "replace": "{o.replacements} replacements, settle-period {o.settle_period}s",
    "idle": "idle window of {o.idle_window:g}s",
    "memory": "{o.big_units:,} units, {o.deltas:,} deltas",
    "heal": "{o.heals} heals of a hook error and {o.heals} of a lost agent, heal-after"
    " {o.heal_after}s",
    "plan": "{o.plans} plan requests on {o.big_units:,} + {o.target_units} units",
    "scrape": "{o.scrapes} scrapes of the agent's /metrics (agent: on {o.big_units:,} +"
    " {o.target_units} units; baseline: the same agent on {o.target_units} units)",
}
# The kinds of breakage the heal phase measures, in the order it runs them.
ERROR = "error"
LOST = "lost"

Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Options:
    """What to run: sizes, windows and timings (defaults reproduce bench/README.md)."""

    replacements: int = 5
    target_units: int = 3
    settle_period: int = 2
    step_delay: float = 0.1
    pause: float = 1.0
    idle_window: float = 30.0
    idle_poll_interval: int = 2
    big_units: int = 5000
    deltas: int = 100_000
    batch: int = 1000
    # Quiet time after start-up before a window or a memory reading begins (seconds).
    warmup: float = 1.0
    # Heal phase: heals per kind (hook error, lost agent), heal-after (s), and the agent's
    # status-poll-interval (s) in the lost runs (the error runs keep the default, 60 s).
    heals: int = 5
    heal_after: int = 5
    heal_poll_interval: int = 5
    # Plan phase: requests per side on the big model, and `ctl plan` commands (agent).
    plans: int = 20
    plan_commands: int = 3
    # Scrape phase: scrapes of the agent's /metrics per side.
    scrapes: int = 200


class _Counted:
    """Controller calls in a window by Facade.Method (`calls`; pings are never counted)."""

    calls: Mapping[str, int]

    @property
    def total_calls(self) -> int:
        """Every call in the window: a replacement's, or a heal's from the fault to its end."""
        return sum(self.calls.values())

    @property
    def calls_without_next(self) -> int:
        """Calls other than the AllWatcher.Next long polls."""
        return self.total_calls - self.calls.get(fakes.NEXT, 0)


@dataclasses.dataclass(frozen=True)
class Replacement(_Counted):
    """One make-before-break replacement as the fake saw it."""

    old_unit: str
    new_unit: str
    duration: float
    # Seconds from (the side's watcher delivering the new unit as active/idle, for the last
    # time it became so, + settle-period) to the DestroyUnit call's arrival.
    latency: float
    calls: Mapping[str, int]
    # Diagnostics. The delivered transition minus the fake's own last change to active/idle
    # before DestroyUnit (its status history): the watcher's lag, or, when negative, a later
    # break (executing) that never reached the watcher, coalesced with the idle after it.
    delivery_lag: float | None = None
    # How often the new unit became active/idle before DestroyUnit: as delivered, in the fake.
    became_healthy: int = 0
    became_healthy_fake: int = 0


@dataclasses.dataclass(frozen=True)
class Idle:
    """Calls during a quiet window, and the poll interval the side used."""

    window: float
    poll_interval: float
    calls: Mapping[str, int]
    pings: int

    def per_hour(self, name: str | None = None) -> float:
        """Calls per hour extrapolated from the window (one Facade.Method, or all)."""
        count = sum(self.calls.values()) if name is None else self.calls.get(name, 0)
        return count * 3600.0 / self.window


@dataclasses.dataclass(frozen=True)
class Memory:
    """Resident memory and CPU of the side's process on a big model, before and after churn."""

    units: int
    deltas: int
    snapshot: procstat.ProcSample
    half: procstat.ProcSample
    full: procstat.ProcSample
    churn_seconds: float
    # Calls other than pings while the deltas flowed (the sides keep polling status meanwhile).
    churn_calls: Mapping[str, int]


@dataclasses.dataclass(frozen=True)
class Heal(_Counted):
    """One heal of a broken unit as the fake saw it; times are time.time()."""

    kind: str  # ERROR or LOST
    broken_unit: str
    new_unit: str
    heal_after: float
    # When the fake applied the fault (error_unit / lose_unit had returned).
    applied: float
    # Arrival of the side's AddUnits call.
    added: float
    # ERROR: when a watcher of the side was first handed the unit in error. LOST: None.
    delivered: float | None
    # Arrival of the first Client.FullStatus after the fault (the first that could show it).
    first_status: float | None
    # From the fault to the end of the heal (broken unit gone, new unit settled).
    duration: float
    calls: Mapping[str, int]

    @property
    def reaction(self) -> float:
        """AddUnits arrival minus (the fault + heal-after), seconds."""
        return self.added - self.applied - self.heal_after

    @property
    def reaction_from_delivery(self) -> float | None:
        """AddUnits arrival minus (the error delta's delivery + heal-after), seconds."""
        if self.delivered is None:
            return None
        return self.added - self.delivered - self.heal_after

    @property
    def reaction_from_status(self) -> float | None:
        """AddUnits arrival minus (the first full status after the fault + heal-after)."""
        if self.first_status is None:
            return None
        return self.added - self.first_status - self.heal_after


@dataclasses.dataclass(frozen=True)
class HealPhase:
    """The heals of one side, and the status poll interval it used in the lost runs."""

    heal_after: float
    poll_interval: float
    error: tuple[Heal, ...]
    lost: tuple[Heal, ...]

    def of(self, kind: str) -> tuple[Heal, ...]:
        """The heals of one kind (ERROR or LOST)."""
        return self.error if kind == ERROR else self.lost


@dataclasses.dataclass(frozen=True)
class PlanPhase:
    """What happens next, asked on the big model: each request's round trip, calls meanwhile."""

    units: int
    # What one request is (the agent's `plan`, the baseline's full status).
    what: str
    seconds: tuple[float, ...]
    # Controller calls that arrived while the requests ran (pings and AllWatcher.Next aside).
    calls: Mapping[str, int]
    # `python -m whirlwind ctl plan` end to end, interpreter start included (agent only).
    command_seconds: tuple[float, ...] = ()

    @property
    def median(self) -> float:
        """Median round trip (seconds)."""
        return statistics.median(self.seconds)

    @property
    def worst(self) -> float:
        """Slowest round trip (seconds)."""
        return max(self.seconds)

    @property
    def calls_per_request(self) -> float:
        """Controller calls per request (pings and AllWatcher.Next aside)."""
        return sum(self.calls.values()) / len(self.seconds)


@dataclasses.dataclass(frozen=True)
class ScrapePhase:
    """Scrapes of the agent's /metrics, one after the other: round trips and the agent's CPU."""

    units: int
    seconds: tuple[float, ...]
    # utime + stime of the agent process over all the scrapes (10 ms resolution).
    cpu_seconds: float
    # The last scrape's body: on the wire (gzip) and decoded; and its samples.
    wire_bytes: int
    text_bytes: int
    samples: int
    # Controller calls that arrived while the scrapes ran (pings and AllWatcher.Next aside):
    # a FullStatus poll means the agent parsed the whole model meanwhile.
    calls: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @property
    def median(self) -> float:
        """Median round trip (seconds)."""
        return statistics.median(self.seconds)

    @property
    def worst(self) -> float:
        """Slowest round trip (seconds)."""
        return max(self.seconds)

    @property
    def cpu_per_scrape(self) -> float:
        """The agent's CPU time per scrape (seconds)."""
        return self.cpu_seconds / len(self.seconds)


@dataclasses.dataclass(frozen=True)
class SideResult:
    """Everything measured for one side."""

    name: str
    replacements: tuple[Replacement, ...]
    idle: Idle | None
    memory: Memory | None
    heal: HealPhase | None = None
    plan: PlanPhase | None = None
    scrape: ScrapePhase | None = None

    @property
    def median_latency(self) -> float:
        """Median latency beyond settle-period (seconds)."""
        return statistics.median(r.latency for r in self.replacements)

    @property
    def median_calls(self) -> float:
        """Median calls per replacement, pings aside."""
        return statistics.median(r.total_calls for r in self.replacements)

    @property
    def median_calls_without_next(self) -> float:
        """Median calls per replacement, pings and AllWatcher.Next aside."""
        return statistics.median(r.calls_without_next for r in self.replacements)


# -- subprocesses ------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(bench.SRC), str(bench.ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def agent_command(config: pathlib.Path) -> list[str]:
    """The agent exactly as the charm's systemd unit runs it."""
    return [sys.executable, "-m", "whirlwind", "run", "--config", str(config)]


async def _spawn(
    args: list[str], log_path: pathlib.Path, *, pipe_stdout: bool = False
) -> asyncio.subprocess.Process:
    log = _open_log(log_path)
    try:
        return await asyncio.create_subprocess_exec(
            *args,
            cwd=bench.ROOT,
            env=_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if pipe_stdout else log,
            stderr=log,
        )
    finally:
        log.close()


def _open_log(path: pathlib.Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Closed by the caller once the child has its own copy of the descriptor.
    return open(path, "ab")


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()


def _tail(path: pathlib.Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@dataclasses.dataclass
class AgentProcess:
    """The real agent in a subprocess, reached through its control socket."""

    proc: asyncio.subprocess.Process
    socket: pathlib.Path
    log: pathlib.Path

    @property
    def pid(self) -> int:
        """The agent's process id."""
        return self.proc.pid

    async def call(self, command: str, timeout: float = 10.0, **args: Any) -> Any:
        """One control request, off the event loop (the fake runs on it)."""
        client = control.ControlClient(self.socket, timeout=timeout)
        return await asyncio.to_thread(client.call, command, timeout, **args)

    async def wait_connected(self) -> None:
        """Wait until the agent answers `status` with connected: true."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise RuntimeError(f"agent exited ({self.proc.returncode}):\n{_tail(self.log)}")
            with contextlib.suppress(control.AgentUnavailableError):
                if (await self.call("status")).get("connected"):
                    return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"agent not connected after {READY_TIMEOUT:g}s:\n{_tail(self.log)}")


@contextlib.asynccontextmanager
async def run_agent(
    controller: fake_server.FakeJujuController,
    workdir: pathlib.Path,
    options: Options,
    *,
    status_poll_interval: int = DEFAULT_STATUS_POLL,
    heal_after: int | None = None,
    services: tuple[str, ...] = (TARGET,),
    metrics_port: int = 0,
) -> AsyncIterator[AgentProcess]:
    """Render settings for `controller` as the charm would, start the agent, stop it after.

    `heal_after` None keeps the default (600 s: nothing breaks outside the heal phase).
    `metrics_port` 0 (the default here) serves no metrics: only the scrape phase scrapes.
    """
    config, agent_settings = _write_agent_settings(
        controller, workdir, options, status_poll_interval, heal_after, services, metrics_port
    )
    log = workdir / "agent.log"
    proc = await _spawn(agent_command(config), log)
    agent = AgentProcess(proc, agent_settings.control_socket, log)
    try:
        await agent.wait_connected()
        yield agent
    finally:
        await _terminate(proc)


def _write_agent_settings(
    controller: fake_server.FakeJujuController,
    workdir: pathlib.Path,
    options: Options,
    status_poll_interval: int,
    heal_after: int | None = None,
    services: tuple[str, ...] = (TARGET,),
    metrics_port: int = 0,
) -> tuple[pathlib.Path, settings_mod.AgentSettings]:
    """Settings file plus a 0600 password file, as the charm renders them."""
    workdir.mkdir(parents=True, exist_ok=True)
    agent_settings = settings_mod.AgentSettings(
        controller=settings_mod.ControllerSettings(
            endpoints=(controller.endpoint,),
            ca_cert=controller.ca_cert,
            username=controller.username,
            password=controller.password,
        ),
        model_uuid=controller.model_uuid,
        services=services,
        interval=86400,  # no timer-driven work: replacements come from replace-now only
        settle_period=options.settle_period,
        state_dir=workdir / "state",
        control_socket=workdir / "control.sock",
        log_level="INFO",
        status_poll_interval=status_poll_interval,
        metrics_port=metrics_port,
    )
    if heal_after is not None:
        agent_settings = dataclasses.replace(agent_settings, heal_after=heal_after)
    password_file = workdir / "password"
    settings_mod.write_file_atomically(password_file, controller.password + "\n", 0o600)
    config = workdir / "settings.yaml"
    settings_mod.write_file_atomically(
        config, settings_mod.dump_settings(agent_settings, password_file), 0o600
    )
    return config, agent_settings


def _write_connect_file(controller: fake_server.FakeJujuController, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    settings_mod.write_file_atomically(path, json.dumps(controller.info()), 0o600)


@dataclasses.dataclass
class BaselineProcess:
    """The naive baseline in a subprocess, reporting events as JSON lines."""

    proc: asyncio.subprocess.Process
    log: pathlib.Path

    @property
    def pid(self) -> int:
        """The baseline's process id."""
        return self.proc.pid

    async def next_event(self, timeout: float = REPLACE_TIMEOUT) -> dict[str, Any]:
        """The next event line; raise if the process ends first."""
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            await self.proc.wait()
            raise RuntimeError(f"baseline exited ({self.proc.returncode}):\n{_tail(self.log)}")
        return json.loads(line)

    async def wait_for(self, event: str, timeout: float = REPLACE_TIMEOUT) -> dict[str, Any]:
        """Skip events until `event`."""
        while True:
            found = await self.next_event(timeout)
            if found["event"] == event:
                return found


@contextlib.asynccontextmanager
async def run_baseline(
    controller: fake_server.FakeJujuController, workdir: pathlib.Path, *args: str
) -> AsyncIterator[BaselineProcess]:
    """Start the baseline against `controller` with `args`; wait until it has connected."""
    connect = workdir / "connect.json"
    _write_connect_file(controller, connect)
    log = workdir / "baseline.log"
    command = [sys.executable, "-m", "bench.baseline", "--connect", str(connect), *args]
    proc = await _spawn(command, log, pipe_stdout=True)
    baseline = BaselineProcess(proc, log)
    try:
        await baseline.wait_for("connected", READY_TIMEOUT)
        yield baseline
    finally:
        await _terminate(proc)


# -- measurements ------------------------------------------------------------------------------


def _replacement(
    fake: _Fake,
    options: Options,
    old: str,
    new: str,
    start: float,
    end: float,
) -> Replacement:
    """Latency from what the side's watcher delivered; calls from the fake's call log."""
    controller = fake.controller
    destroy_at = fakes.first_call_time(controller, fakes.DESTROY_UNIT, start, end)
    if destroy_at is None:
        raise RuntimeError(f"no DestroyUnit call while replacing {old}")
    healthy_at = fakes.delivered_healthy_since(fake.taps.values(), new, destroy_at)
    if healthy_at is None:
        raise RuntimeError(f"no watcher delivered {new} as active/idle before DestroyUnit")
    changed_at = fakes.fake_healthy_since(controller, new, destroy_at)
    return Replacement(
        old_unit=old,
        new_unit=new,
        duration=end - start,
        latency=destroy_at - (healthy_at + options.settle_period),
        calls=dict(fakes.count_calls(controller, start, end)),
        delivery_lag=None if changed_at is None else healthy_at - changed_at,
        became_healthy=fakes.delivered_healthy_count(fake.taps.values(), new, destroy_at),
        became_healthy_fake=fakes.fake_healthy_count(controller, new, destroy_at),
    )


async def _quiet_window(
    controller: fake_server.FakeJujuController, options: Options, poll_interval: float
) -> Idle:
    await asyncio.sleep(options.warmup)  # let start-up calls pass
    start = time.time()
    await asyncio.sleep(options.idle_window)
    end = time.time()
    calls = fakes.count_calls(controller, start, end, exclude=())
    pings = calls.pop(fakes.PING, 0)
    return Idle(options.idle_window, poll_interval, dict(calls), pings)


async def _big_model(fake: _Fake, options: Options, pid: int) -> Memory:
    await asyncio.sleep(options.warmup)  # the snapshot and first full status are in: settle
    snapshot = procstat.read_sample(pid)
    start = time.time()
    samples: dict[str, procstat.ProcSample] = {}
    half = options.deltas // 2
    seconds = await fakes.churn(
        fake.controller,
        fake.taps,
        BIG,
        options.deltas,
        batch=options.batch,
        checkpoints={
            half: lambda: samples.__setitem__("half", procstat.read_sample(pid)),
            options.deltas: lambda: samples.__setitem__("full", procstat.read_sample(pid)),
        },
    )
    return Memory(
        units=options.big_units + options.target_units,
        deltas=options.deltas,
        snapshot=snapshot,
        half=samples["half"],
        full=samples["full"],
        churn_seconds=seconds,
        churn_calls=dict(fakes.count_calls(fake.controller, start, time.time())),
    )


@dataclasses.dataclass(frozen=True)
class _Fake:
    controller: fake_server.FakeJujuController
    taps: Mapping[str, fakes.WatcherTap]


@contextlib.asynccontextmanager
async def _fake(options: Options, *, big: bool = False) -> AsyncIterator[_Fake]:
    """A fresh fake with the target (and `big`, seeded by the fake itself), watchers tapped."""
    applications = {TARGET: options.target_units}
    if big:
        applications[BIG] = options.big_units
    controller, taps = await fakes.start_fake(
        applications, step_delay=options.step_delay, targets=(TARGET,)
    )
    try:
        yield _Fake(controller, taps)
    finally:
        await controller.stop()


async def _agent_replacements(options: Options, workdir: pathlib.Path, say: Say) -> Any:
    replacements: list[Replacement] = []
    async with _fake(options) as fake, run_agent(fake.controller, workdir, options) as agent:
        for _ in range(options.replacements):
            await asyncio.sleep(options.pause)
            start = time.time()
            result = await agent.call(
                "replace-now", timeout=REPLACE_TIMEOUT, service=TARGET, wait=True
            )
            end = time.time()
            if result.get("result") != "ok":
                raise RuntimeError(f"agent replacement did not succeed: {result}")
            replacements.append(
                _replacement(fake, options, result["old-unit"], result["new-unit"], start, end)
            )
            say(f"  {_describe(replacements[-1])}")
    return tuple(replacements)


async def _agent_idle(options: Options, workdir: pathlib.Path, say: Say) -> Any:
    poll = options.idle_poll_interval
    async with (
        _fake(options) as fake,
        run_agent(fake.controller, workdir, options, status_poll_interval=poll),
    ):
        return await _quiet_window(fake.controller, options, poll)


async def _agent_memory(options: Options, workdir: pathlib.Path, say: Say) -> Any:
    async with (
        _fake(options, big=True) as fake,
        run_agent(fake.controller, workdir, options) as agent,
    ):
        return await _big_model(fake, options, agent.pid)


async def _baseline_replacements(options: Options, workdir: pathlib.Path, say: Say) -> Any:
    replacements: list[Replacement] = []
    args = ["replace", "--application", TARGET, "--count", str(options.replacements)]
    args += ["--settle-period", str(options.settle_period), "--pause", str(options.pause)]
    async with _fake(options) as fake, run_baseline(fake.controller, workdir, *args) as baseline:
        for _ in range(options.replacements):
            start = await baseline.wait_for("start")
            done = await baseline.wait_for("done")
            replacements.append(
                _replacement(fake, options, done["old"], done["new"], start["t"], done["t"])
            )
            say(f"  {_describe(replacements[-1])}")
        await baseline.wait_for("disconnected")
    return tuple(replacements)


async def _baseline_idle(options: Options, workdir: pathlib.Path, say: Say) -> Any:
    async with _fake(options) as fake, run_baseline(fake.controller, workdir, "idle"):
        return await _quiet_window(fake.controller, options, BASELINE_POLL)


async def _baseline_memory(options: Options, workdir: pathlib.Path, say: Say) -> Any:
    async with (
        _fake(options, big=True) as fake,
        run_baseline(fake.controller, workdir, "idle") as baseline,
    ):
        return await _big_model(fake, options, baseline.pid)


# -- heal --------------------------------------------------------------------------------------


def heal_result(
    controller: fake_server.FakeJujuController,
    taps: Mapping[str, fakes.WatcherTap],
    kind: str,
    broken: str,
    new: str,
    heal_after: float,
    applied: float,
    end: float,
) -> Heal:
    """One heal from the fake's call log and the side's watcher taps, in [applied, end]."""
    added = fakes.first_call_time(controller, fakes.ADD_UNITS, applied, end)
    if added is None:
        raise RuntimeError(f"no AddUnits call while healing {broken}")
    delivered = None
    if kind == ERROR:
        delivered = fakes.first_delivered(taps.values(), broken, applied, "error")
    return Heal(
        kind=kind,
        broken_unit=broken,
        new_unit=new,
        heal_after=heal_after,
        applied=applied,
        added=added,
        delivered=delivered,
        first_status=fakes.first_call_time(controller, fakes.FULL_STATUS, applied, end),
        duration=end - applied,
        calls=dict(fakes.count_calls(controller, applied, end)),
    )


async def break_unit(controller: fake_server.FakeJujuController, kind: str) -> tuple[str, float]:
    """Break a settled unit of the target (not the leader); return it and when it broke.

    The fake applies the fault synchronously: the time taken right after the call is when
    full status (and the change feed, for an error) shows it.
    """
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        victim = fakes.pick_victim(controller, TARGET)
        if victim is not None:
            try:
                if kind == ERROR:
                    controller.error_unit(victim)
                else:
                    controller.lose_unit(victim)
                return victim, time.time()
            except ValueError:
                pass  # not settled in the fake's lifecycle yet (a later hook still queued)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no settled unit of {TARGET} to break")
        await asyncio.sleep(0.05)


async def _wait_quiet(fake: _Fake, options: Options, jitter: float) -> None:
    """Until the target has its units, all settled, every change delivered; then a pause.

    The pause is `options.pause` plus `jitter` seconds: a side that polls decides the next
    poll after its last heal ended, so without it every fault would come at the same moment
    of its poll period.
    """
    await fakes.wait_until(
        lambda: fakes.all_settled(fake.controller, TARGET, options.target_units),
        REPLACE_TIMEOUT,
        f"{options.target_units} settled units of {TARGET}",
    )
    await fake.controller.wait_delivered()
    await asyncio.sleep(options.pause + jitter)


WaitHealed = Callable[[str], Awaitable[tuple[str, float]]]


async def _heal_runs(
    kind: str,
    fake: _Fake,
    options: Options,
    wait_healed: WaitHealed,
    say: Say,
    *,
    poll_period: float,
) -> tuple[Heal, ...]:
    """Break a unit `options.heals` times, one after the other; measure each heal.

    Each fault comes a random time (seeded: the same draws on both sides) within
    `poll_period` after the pause, the status poll period that decides when the side can
    see it, so that the fault does not always land at the same point of that period.
    """
    rng = random.Random(HEAL_SEED)
    heals: list[Heal] = []
    for _ in range(options.heals):
        await _wait_quiet(fake, options, rng.uniform(0.0, poll_period))
        broken, applied = await break_unit(fake.controller, kind)
        new, end = await wait_healed(broken)
        heals.append(
            heal_result(
                fake.controller, fake.taps, kind, broken, new, options.heal_after, applied, end
            )
        )
        say(f"  {_describe_heal(heals[-1])}")
    return tuple(heals)


async def _agent_healed(fake: _Fake, agent: AgentProcess, broken: str) -> tuple[str, float]:
    """Wait until the broken unit is gone and the agent's heal finished; (new unit, end).

    The agent is asked (history) only once the unit is gone from the fake, after its
    AddUnits: nothing the benchmark does reaches the agent while it decides.
    """
    await fakes.wait_until(
        lambda: broken not in fake.controller.model.units, REPLACE_TIMEOUT, f"{broken} to go"
    )
    deadline = time.monotonic() + REPLACE_TIMEOUT
    while time.monotonic() < deadline:
        for op in await agent.call("history", limit=10):
            if op["old-unit"] != broken or op["finished"] is None:
                continue
            if op["trigger"] != "heal" or op["result"] != "ok":
                raise RuntimeError(f"the agent's operation on {broken} was not an ok heal: {op}")
            finished = journal_mod.from_iso(op["finished"])
            assert finished is not None
            return op["new-unit"], finished.timestamp()
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the agent's heal of {broken} did not finish:\n{_tail(agent.log)}")


async def _baseline_healed(baseline: BaselineProcess, broken: str) -> tuple[str, float]:
    """Wait for the baseline's `done` of the broken unit; (new unit, end)."""
    done = await baseline.wait_for("done")
    if done["old"] != broken:
        raise RuntimeError(f"the baseline healed {done['old']}, not {broken}")
    return done["new"], done["t"]


async def _agent_heals(options: Options, workdir: pathlib.Path, say: Say) -> Any:
    polls = {ERROR: DEFAULT_STATUS_POLL, LOST: options.heal_poll_interval}
    # The agent learns of an error from its watcher, of a lost agent from its status poll.
    jitter = {ERROR: BASELINE_POLL, LOST: options.heal_poll_interval}
    runs: dict[str, tuple[Heal, ...]] = {}
    for kind, poll in polls.items():
        say(f"  {kind}: status-poll-interval {poll}s")
        async with (
            _fake(options) as fake,
            run_agent(
                fake.controller,
                workdir / kind,
                options,
                status_poll_interval=poll,
                heal_after=options.heal_after,
            ) as agent,
        ):
            wait = functools.partial(_agent_healed, fake, agent)
            runs[kind] = await _heal_runs(kind, fake, options, wait, say, poll_period=jitter[kind])
    return HealPhase(options.heal_after, options.heal_poll_interval, runs[ERROR], runs[LOST])


async def _baseline_heals(options: Options, workdir: pathlib.Path, say: Say) -> Any:
    args = ["heal", "--application", TARGET, "--heal-after", str(options.heal_after)]
    args += ["--settle-period", str(options.settle_period)]
    runs: dict[str, tuple[Heal, ...]] = {}
    for kind in (ERROR, LOST):
        async with (
            _fake(options) as fake,
            run_baseline(fake.controller, workdir / kind, *args) as baseline,
        ):
            wait = functools.partial(_baseline_healed, baseline)
            runs[kind] = await _heal_runs(
                kind, fake, options, wait, say, poll_period=BASELINE_POLL
            )
    return HealPhase(options.heal_after, BASELINE_POLL, runs[ERROR], runs[LOST])


# -- plan --------------------------------------------------------------------------------------


def check_plan(plan: Mapping[str, Any], services: Mapping[str, int]) -> None:
    """The plan covers every target with all its live units (it really read the big model)."""
    live = {t["service"]: t["units"]["live"] for t in plan.get("targets", ())}
    if live != dict(services):
        raise RuntimeError(f"the plan's live units {live} are not the model's {dict(services)}")


async def wait_plan_ready(
    ask: Callable[[], Awaitable[Any]], timeout: float = READY_TIMEOUT
) -> None:
    """Until `plan` answers (the agent refuses it until connected and recovered)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await ask()
            return
        except control.ControlError as exc:
            if exc.code != control.NOT_READY or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def time_plans(
    controller: fake_server.FakeJujuController,
    ask: Callable[[], Awaitable[Any]],
    count: int,
    services: Mapping[str, int],
) -> PlanPhase:
    """`count` plan requests one after the other: each round trip, and the calls meanwhile."""
    seconds: list[float] = []
    windows: list[tuple[float, float]] = []
    for _ in range(count):
        start = time.time()
        began = time.perf_counter()
        plan = await ask()
        seconds.append(time.perf_counter() - began)
        windows.append((start, time.time()))
        check_plan(plan, services)
    return PlanPhase(
        sum(services.values()), "plan", tuple(seconds), _calls_in(controller, windows)
    )


def plan_from_events(
    controller: fake_server.FakeJujuController, events: list[dict[str, Any]], units: int
) -> PlanPhase:
    """The baseline's `status` events (start, seconds, units) as a PlanPhase."""
    for event in events:
        if event["units"] != units:
            raise RuntimeError(f"the baseline's full status had {event['units']} units")
    windows = [(e["start"], e["t"]) for e in events]
    return PlanPhase(
        units,
        "full status",
        tuple(e["seconds"] for e in events),
        _calls_in(controller, windows),
    )


def _calls_in(
    controller: fake_server.FakeJujuController, windows: list[tuple[float, float]]
) -> dict[str, int]:
    total: collections.Counter[str] = collections.Counter()
    for start, end in windows:
        total.update(fakes.count_calls(controller, start, end, exclude=(fakes.PING, fakes.NEXT)))
    return dict(total)


async def ctl_plan(socket: pathlib.Path, services: Mapping[str, int]) -> float:
    """`python -m whirlwind ctl --socket S plan` once, as an operator runs it; wall seconds."""
    began = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "whirlwind", "ctl", "--socket", str(socket), "plan",
        cwd=bench.ROOT,
        env=_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), PLAN_TIMEOUT)
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"ctl plan exited with {proc.returncode}: {err.decode()[-2000:]}")
    check_plan(json.loads(out), services)
    return seconds


def _big_services(options: Options) -> dict[str, int]:
    return {TARGET: options.target_units, BIG: options.big_units}


async def _agent_plan(options: Options, workdir: pathlib.Path, say: Say) -> Any:
    services = _big_services(options)
    async with (
        _fake(options, big=True) as fake,
        run_agent(fake.controller, workdir, options, services=tuple(services)) as agent,
    ):
        ask = functools.partial(agent.call, "plan", PLAN_TIMEOUT)
        await wait_plan_ready(ask)
        await asyncio.sleep(options.warmup)
        phase = await time_plans(fake.controller, ask, options.plans, services)
        commands = [await ctl_plan(agent.socket, services) for _ in range(options.plan_commands)]
    return dataclasses.replace(phase, command_seconds=tuple(commands))


async def _baseline_plan(options: Options, workdir: pathlib.Path, say: Say) -> Any:
    services = _big_services(options)
    args = ["status", "--count", str(options.plans), "--pause", str(options.warmup)]
    async with (
        _fake(options, big=True) as fake,
        run_baseline(fake.controller, workdir, *args) as baseline,
    ):
        events = [await baseline.wait_for("status", PLAN_TIMEOUT) for _ in range(options.plans)]
        await baseline.wait_for("disconnected")
    return plan_from_events(fake.controller, events, sum(services.values()))


# -- scrape ------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the agent binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_scrape(text: bytes, services: Mapping[str, int]) -> int:
    """The exposition counts every target's live units (it saw the model); its sample count.

    OpenMetrics (what the scrape asks for first; it ends with `# EOF`) or the text format.
    """
    decoded = text.decode()
    if decoded.endswith("# EOF\n"):
        families = list(openmetrics_parser.text_string_to_metric_families(decoded))
    else:
        families = list(prom_parser.text_string_to_metric_families(decoded))
    units = {
        s.labels["service"]: int(s.value)
        for family in families
        if family.name == "whirlwind_units"
        for s in family.samples
    }
    if units != dict(services):
        raise RuntimeError(f"the scrape's whirlwind_units {units} are not the model's")
    return sum(len(family.samples) for family in families)


async def wait_metrics_ready(
    port: int, services: Mapping[str, int], timeout: float = READY_TIMEOUT
) -> None:
    """Until /metrics answers with every target's live units (connected, planned)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, _, text = await asyncio.to_thread(scraper.scrape, port)
            check_scrape(text, services)
            return
        except (OSError, RuntimeError) as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"/metrics on port {port} not ready: {exc}") from exc
        await asyncio.sleep(0.1)


async def time_scrapes(
    controller: fake_server.FakeJujuController,
    port: int,
    count: int,
    services: Mapping[str, int],
    pid: int,
) -> ScrapePhase:
    """`count` scrapes one after the other; the agent's CPU and controller calls meanwhile.

    The scrapes come from `python -m bench.scraper`, a process of its own (this one runs the
    fake); `pid` is the agent's process.
    """
    start = time.time()
    before = procstat.read_sample(pid)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.scraper", "--port", str(port), "--count", str(count),
        cwd=bench.ROOT,
        env=_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(), READY_TIMEOUT + count * SCRAPE_TIMEOUT
        )
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    cpu = procstat.read_sample(pid).cpu_seconds - before.cpu_seconds
    calls = _calls_in(controller, [(start, time.time())])
    if proc.returncode != 0:
        raise RuntimeError(f"the scraper exited with {proc.returncode}: {err.decode()[-2000:]}")
    result = json.loads(out)
    text = result["text"].encode()
    samples = check_scrape(text, services)
    return ScrapePhase(
        sum(services.values()),
        tuple(result["seconds"]),
        cpu,
        result["wire-bytes"],
        len(text),
        samples,
        calls,
    )


async def _scrape_side(options: Options, workdir: pathlib.Path, big_units: int) -> ScrapePhase:
    """The agent with both applications as targets, `big` at `big_units`, scraped."""
    options = dataclasses.replace(options, big_units=big_units)
    services = _big_services(options)
    port = free_port()
    async with (
        _fake(options, big=True) as fake,
        run_agent(
            fake.controller, workdir, options, services=tuple(services), metrics_port=port
        ) as agent,
    ):
        await wait_metrics_ready(port, services)
        await asyncio.sleep(options.warmup)
        return await time_scrapes(fake.controller, port, options.scrapes, services, agent.pid)


async def _agent_scrape(options: Options, workdir: pathlib.Path, say: Say) -> Any:
    return await _scrape_side(options, workdir, options.big_units)


async def _baseline_scrape(options: Options, workdir: pathlib.Path, say: Say) -> Any:
    # The same agent, targets and series on a model of 3 units: only the size differs.
    return await _scrape_side(options, workdir, 0)


_Phase = Callable[[Options, pathlib.Path, Say], Awaitable[Any]]
_PHASES: Mapping[str, Mapping[str, _Phase]] = {
    "agent": {
        "replace": _agent_replacements,
        "idle": _agent_idle,
        "memory": _agent_memory,
        "heal": _agent_heals,
        "plan": _agent_plan,
        "scrape": _agent_scrape,
    },
    "baseline": {
        "replace": _baseline_replacements,
        "idle": _baseline_idle,
        "memory": _baseline_memory,
        "heal": _baseline_heals,
        "plan": _baseline_plan,
        "scrape": _baseline_scrape,
    },
}


async def measure(
    side: str, options: Options, phases: tuple[str, ...], workdir: pathlib.Path, say: Say
) -> SideResult:
    """Run the chosen phases (see PHASES) for one side, each on a fresh fake."""
    results: dict[str, Any] = {}
    for phase in PHASES:
        if phase not in phases:
            continue
        say(f"{side}: {_PHASE_TITLES[phase].format(o=options)}")
        results[phase] = await _PHASES[side][phase](options, workdir / phase, say)
    return SideResult(
        side,
        results.get("replace", ()),
        results.get("idle"),
        results.get("memory"),
        results.get("heal"),
        results.get("plan"),
        results.get("scrape"),
    )


def _describe(replacement: Replacement) -> str:
    return (
        f"{replacement.old_unit} -> {replacement.new_unit}: "
        f"{replacement.latency * 1000:.0f} ms after settle, "
        f"{replacement.total_calls} calls ({replacement.calls_without_next} without Next), "
        f"{replacement.duration:.2f}s"
    )


def _describe_heal(heal: Heal) -> str:
    if heal.kind == ERROR:
        source = f"{_ms(heal.reaction_from_delivery)} from the delta"
    else:
        seen = None if heal.first_status is None else heal.first_status - heal.applied
        source = f"first FullStatus {_ms(seen)} after the fault"
    return (
        f"{heal.kind} {heal.broken_unit} -> {heal.new_unit}: AddUnits"
        f" {heal.reaction * 1000:.0f} ms beyond heal-after from the fault ({source}), "
        f"{heal.total_calls} calls ({heal.calls_without_next} without Next), {heal.duration:.2f}s"
    )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def summarize_calls(
    replacements: tuple[Replacement, ...] | tuple[Heal, ...],
) -> collections.Counter[str]:
    """Calls by Facade.Method summed over all replacements (or heals)."""
    total: collections.Counter[str] = collections.Counter()
    for replacement in replacements:
        total.update(replacement.calls)
    return total

"""The fake controller side of the benchmark: set-up, taps, churn, and reading its call log.

Everything here uses the public objects of tests/fakejuju (`FakeJujuController`, its
`.calls`, `ModelState.put_unit` and the multiwatcher store's `new_watcher`); nothing in the
fake is changed. The fake seeds its applications itself (linear time), and every change the
benchmark makes goes through the model's own mutation path, so its deltas reach the watchers
through the fake's change feed and store, late, like any other change. The fake's call log
uses `time.time()` in real-time mode, the same clock the watcher taps, the benchmark and its
subprocesses read.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any

from tests.fakejuju import model as fake_model
from tests.fakejuju import server as fake_server

PING = "Pinger.Ping"
NEXT = "AllWatcher.Next"
FULL_STATUS = "Client.FullStatus"
DESTROY_UNIT = "Application.DestroyUnit"
ADD_UNITS = "Application.AddUnits"
# Batch delivery times kept per watcher (the most recent ones).
BATCH_TIMES_KEPT = 1000


async def start_fake(
    applications: Mapping[str, int],
    *,
    step_delay: float,
    targets: Collection[str] = (),
    delta_lag: tuple[float, float] | None = None,
) -> tuple[fake_server.FakeJujuController, dict[str, WatcherTap]]:
    """Start a real-time fake (no contract checks: the fake is not measured), watchers tapped.

    The fake seeds `applications` itself (settled units with back-dated history, in linear
    time); `targets` are the applications whose unit deltas the taps keep (see
    `WatcherTap`); `delta_lag` overrides the fake's default watcher lag (20-300 ms).
    """
    lag = fake_model.DEFAULT_DELTA_LAG if delta_lag is None else delta_lag
    controller = fake_server.FakeJujuController(
        dict(applications),
        step_delay=step_delay,
        realtime=True,
        strict=False,
        admin_api=False,
        delta_lag=lag,
    )
    taps = tap_watchers(controller, targets)
    await controller.start()
    return controller, taps


def call_name(record: fake_server.CallRecord) -> str:
    """Facade.Method of a recorded call."""
    return f"{record.facade}.{record.method}"


def count_calls(
    controller: fake_server.FakeJujuController,
    start: float,
    end: float,
    *,
    exclude: tuple[str, ...] = (PING,),
) -> collections.Counter[str]:
    """Calls that arrived in [start, end], by Facade.Method, pings left out."""
    return collections.Counter(
        call_name(c)
        for c in controller.calls
        if start <= c.time <= end and call_name(c) not in exclude
    )


def first_call_time(
    controller: fake_server.FakeJujuController, name: str, start: float, end: float
) -> float | None:
    """Arrival time of the first `name` call in [start, end]."""
    times = [c.time for c in controller.calls if call_name(c) == name and start <= c.time <= end]
    return min(times) if times else None


Point = tuple[float, bool, object]


def _transitions(points: Iterable[Point], before: float) -> tuple[list[float], bool]:
    """Times of the transitions into healthy up to `before`, and whether healthy at the end.

    A point is (time, healthy, marker); a healthy point whose marker (Juju's `since` of the
    unit's statuses) moved is a new transition too: a break the watcher coalesced away.
    """
    times: list[float] = []
    healthy = False
    last: object = None
    for at, now_healthy, marker in points:
        if at > before:
            break
        if now_healthy and (not healthy or marker != last):
            times.append(at)
        healthy, last = now_healthy, marker
    return times, healthy


def _fake_points(controller: fake_server.FakeJujuController, unit: str) -> Iterator[Point]:
    """(since, active/idle, since) after each entry of the unit's status history in the fake."""
    workload = agent = ""
    for entry in controller.model.history.get("unit-" + unit.replace("/", "-"), []):
        if entry.kind == "workload":
            workload = entry.status.current
        elif entry.kind == "juju-unit":
            agent = entry.status.current
        yield entry.status.since, workload == "active" and agent == "idle", entry.status.since


def fake_healthy_since(
    controller: fake_server.FakeJujuController, unit: str, before: float
) -> float | None:
    """When the fake itself last made `unit` active/idle before `before` (its status history).

    A diagnostic only, to show how late (or whether) that transition reached the side's
    watcher: the latency is measured from the delivery (`delivered_healthy_since`).
    """
    times, healthy = _transitions(_fake_points(controller, unit), before)
    return times[-1] if healthy and times else None


def fake_healthy_count(
    controller: fake_server.FakeJujuController, unit: str, before: float
) -> int:
    """How often the fake made `unit` active/idle before `before` (diagnostic)."""
    return len(_transitions(_fake_points(controller, unit), before)[0])


@dataclasses.dataclass(frozen=True)
class Delivered:
    """One state of a unit as an AllWatcher.Next batch handed it to the client."""

    # time.time() when the batch left the watcher for the client (the fake's call-log clock).
    time: float
    workload: str
    agent: str
    # Juju's `since` of the workload and agent status: moves with every status change.
    marker: tuple[str, str] = ("", "")

    @property
    def healthy(self) -> bool:
        """Workload active and agent idle."""
        return self.workload == "active" and self.agent == "idle"


@dataclasses.dataclass
class WatcherTap:
    """What one AllWatcher handed to its client: counts, batch times, target unit states.

    Memory stays bounded: only the unit deltas of the target applications are kept (a few
    states per unit); every other delta (the churn's 100,000) only moves the counters.
    """

    targets: frozenset[str] = frozenset()
    delivered: int = 0
    started: int = 0
    finished: int = 0
    # Unit deltas delivered, by application.
    unit_deltas: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    # When the most recent batches were handed to the client (time.time()).
    batch_times: collections.deque[float] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=BATCH_TIMES_KEPT)
    )
    # Per unit of a target application: its states, in delivery order.
    units: dict[str, list[Delivered]] = dataclasses.field(default_factory=dict)

    @property
    def waiting(self) -> bool:
        """Whether the client has come back for more (it finished the last batch)."""
        return self.started > self.finished

    def record(self, batch: list[list[Any]], at: float) -> None:
        """Count one batch handed to the client at `at`; keep its target units' states."""
        self.delivered += len(batch)
        self.batch_times.append(at)
        for kind, _change, info in batch:
            if kind != "unit":
                continue
            application = info.get("application", "")
            self.unit_deltas[application] += 1
            if application in self.targets:
                self.units.setdefault(info["name"], []).append(
                    Delivered(
                        at,
                        info.get("workload-status", {}).get("current", ""),
                        info.get("agent-status", {}).get("current", ""),
                        (
                            info.get("workload-status", {}).get("since", ""),
                            info.get("agent-status", {}).get("since", ""),
                        ),
                    )
                )


def _delivered_points(tap: WatcherTap, unit: str) -> Iterator[Point]:
    """(delivery time, active/idle, status marker) of each state of `unit` handed out."""
    return ((state.time, state.healthy, state.marker) for state in tap.units.get(unit, ()))


def delivered_healthy_since(taps: Iterable[WatcherTap], unit: str, before: float) -> float | None:
    """When the client learnt that `unit` became healthy, for the last time before `before`.

    Per watcher: the delivery time of the last transition into workload active + agent idle
    among the states delivered before `before`, if the unit was still healthy in the last of
    them (a later delta that repeats active/idle, e.g. after an annotation, is no new
    transition). With more than one watcher (a reconnect) the earliest such time counts: the
    side could have known from then on. None when no watcher showed it healthy.
    """
    found: list[float] = []
    for tap in taps:
        times, healthy = _transitions(_delivered_points(tap, unit), before)
        if healthy and times:
            found.append(times[-1])
    return min(found) if found else None


def delivered_healthy_count(taps: Iterable[WatcherTap], unit: str, before: float) -> int:
    """How often a watcher showed `unit` becoming active/idle before `before` (the most)."""
    return max(
        (len(_transitions(_delivered_points(tap, unit), before)[0]) for tap in taps), default=0
    )


def first_delivered(
    taps: Iterable[WatcherTap], unit: str, after: float, workload: str
) -> float | None:
    """When a watcher first handed out `unit` with `workload` status at or after `after`.

    The earliest over every watcher (a reconnect makes a second one): the side could have
    known from then on. None when no watcher delivered such a state.
    """
    times = [
        state.time
        for tap in taps
        for state in tap.units.get(unit, ())
        if state.time >= after and state.workload == workload
    ]
    return min(times) if times else None


def pick_victim(controller: fake_server.FakeJujuController, application: str) -> str | None:
    """The lowest-numbered settled unit of `application` that is not the leader.

    Settled here means alive, active/idle in the fake and its agent running; the leader is
    left alone so that breaking a unit never moves the lease (a lost leader's lease expires
    after 60 s and another unit then runs leader-elected).
    """
    leader = controller.model.leaders.get(application)
    candidates = sorted(
        (
            unit
            for unit in controller.model.units.values()
            if unit.application == application
            and unit.name != leader
            and unit.life == "alive"
            and not unit.agent_lost
            and (unit.workload.current, unit.agent.current) == ("active", "idle")
        ),
        key=lambda unit: unit.number,
    )
    return candidates[0].name if candidates else None


def all_settled(controller: fake_server.FakeJujuController, application: str, count: int) -> bool:
    """Whether `application` has exactly `count` units, each alive, active/idle, not lost."""
    units = [u for u in controller.model.units.values() if u.application == application]
    return len(units) == count and all(
        unit.life == "alive"
        and not unit.agent_lost
        and (unit.workload.current, unit.agent.current) == ("active", "idle")
        for unit in units
    )


def tap_watchers(
    controller: fake_server.FakeJujuController, targets: Collection[str] = ()
) -> dict[str, WatcherTap]:
    """Tap every AllWatcher created from now on (by watcher id); see `WatcherTap`.

    Call it before any client connects. The store's `new_watcher` (which
    `ModelState.new_watcher` and so Client.WatchAll go through) is wrapped on this one
    instance, so each new watcher's `next` records what it hands out and when.
    """
    store = controller.model.store
    taps: dict[str, WatcherTap] = {}
    create = store.new_watcher
    wanted = frozenset(targets)

    def new_watcher() -> fake_model.AllWatcher:
        watcher = create()
        tap = taps[watcher.id] = WatcherTap(wanted)
        original = watcher.next

        async def tapped() -> list[list[Any]]:
            tap.started += 1
            try:
                batch = await original()
            finally:
                tap.finished += 1
            tap.record(batch, time.time())
            return batch

        setattr(watcher, "next", tapped)  # noqa: B010 - an instance hook, not a class change
        return watcher

    setattr(store, "new_watcher", new_watcher)  # noqa: B010 - same, on this instance only
    return taps


def _all_delivered(
    taps: list[WatcherTap], offsets: list[int], application: str, sent: int
) -> bool:
    return all(
        tap.unit_deltas[application] - offset >= sent and tap.waiting
        for tap, offset in zip(taps, offsets, strict=True)
    )


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` every 5 ms (real time) until it holds; TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.005)


async def churn(
    controller: fake_server.FakeJujuController,
    watcher_taps: Mapping[str, WatcherTap],
    application: str,
    total: int,
    *,
    batch: int,
    checkpoints: Mapping[int, Callable[[], None]],
    timeout: float = 120.0,
) -> float:
    """Flip workload messages of `application`'s units until every watcher got `total` deltas.

    Each batch changes `batch` distinct units (so the watcher cannot coalesce them) through
    `ModelState.put_unit` (no status history: it would only grow the fake), so the deltas
    take the fake's change feed and store like any change; then it waits until every live
    watcher (tapped with `tap_watchers`) delivered that many unit deltas of `application`
    and its client asked for more. At each checkpoint (deltas delivered) the callback runs.
    Returns the seconds it took.
    """
    model = controller.model
    names = sorted(
        (u.name for u in model.units.values() if u.application == application),
        key=lambda n: int(n.rsplit("/", 1)[1]),
    )
    if len(names) < batch:
        raise ValueError(f"{application} has {len(names)} units, fewer than a batch ({batch})")
    taps = [tap for watcher_id, tap in watcher_taps.items() if watcher_id in model.watchers]
    if not taps:
        raise RuntimeError("no AllWatcher to churn: is the client connected?")
    offsets = [tap.unit_deltas[application] for tap in taps]
    began = time.monotonic()
    sent = 0
    index = 0
    pending = sorted(checkpoints)
    while sent < total:
        size = min(batch, total - sent)
        if pending:
            size = min(size, pending[0] - sent)
        now = controller.clock.now()
        for _ in range(size):
            name = names[index % len(names)]
            index += 1
            unit = model.units[name]
            workload = fake_model.Status("active", f"churn {index}", now)
            model.put_unit(dataclasses.replace(unit, workload=workload), history=False)
        sent += size
        await wait_until(
            functools.partial(_all_delivered, taps, offsets, application, sent),
            timeout,
            f"{sent} deltas to be delivered and applied",
        )
        while pending and pending[0] <= sent:
            checkpoints[pending.pop(0)]()
    return time.monotonic() - began

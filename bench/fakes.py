"""The fake controller side of the benchmark: set-up, churn, and reading its clock and call log.

Everything here uses the public objects of tests/fakejuju (`FakeJujuController.model`,
`.calls`, the `ModelState` dictionaries and `AllWatcher.notify`); nothing in the fake is
changed. Both the fake's call log and its status history use `time.time()` in real-time
mode, the same clock the benchmark and its subprocesses read.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

from tests.fakejuju import model as fake_model
from tests.fakejuju import server as fake_server

PING = "Pinger.Ping"
NEXT = "AllWatcher.Next"
FULL_STATUS = "Client.FullStatus"
DESTROY_UNIT = "Application.DestroyUnit"


async def start_fake(
    applications: Mapping[str, int], *, step_delay: float, bulk: Mapping[str, int] | None = None
) -> tuple[fake_server.FakeJujuController, dict[str, WatcherTap]]:
    """Start a real-time fake (no contract checks: the fake is not measured), watchers tapped."""
    controller = fake_server.FakeJujuController(
        dict(applications), step_delay=step_delay, realtime=True, strict=False, admin_api=False
    )
    for name, count in (bulk or {}).items():
        seed_bulk(controller, name, count)
    taps = tap_watchers(controller)
    await controller.start()
    return controller, taps


def seed_bulk(controller: fake_server.FakeJujuController, application: str, count: int) -> None:
    """Add an application with `count` settled units, in linear time, before any watcher.

    `Lifecycle.seed_application` recomputes the application status over every unit of the
    model for each change, which is quadratic (about 20 s for 5,000 units); this writes the
    same end state (settled an hour ago, with a short status history) directly.
    """
    model = controller.model
    model.add_application(fake_model.Application(application, application))
    now = controller.clock.now()
    started, settled = now - 3600.0, now - 3480.0
    for _ in range(count):
        machine_id = model.allocate_machine_id()
        name = model.allocate_unit_name(application)
        number = int(machine_id)
        address = f"10.42.{number // 250}.{number % 250 + 2}"
        machine = fake_model.Machine(
            id=machine_id,
            agent=fake_model.Status("started", "", started, "3.6.1"),
            instance=fake_model.Status("running", "", started),
            instance_id=f"juju-{model.uuid[-6:]}-{machine_id}",
            address=address,
        )
        unit = fake_model.Unit(
            name=name,
            application=application,
            machine_id=machine_id,
            workload=fake_model.Status("active", "", settled),
            agent=fake_model.Status("idle", "", settled, "3.6.1"),
            private_address=address,
            public_address=address,
        )
        model.machines[machine_id] = machine
        model.units[name] = unit
        model.history[machine.tag] = [
            fake_model.HistoryEntry("machine", fake_model.Status("pending", "", started), "alive"),
            fake_model.HistoryEntry("machine", machine.instance, "alive"),
            fake_model.HistoryEntry("juju-machine", machine.agent, "alive"),
        ]
        model.history[unit.tag] = [
            fake_model.HistoryEntry("workload", unit.workload, "alive"),
            fake_model.HistoryEntry("juju-unit", unit.agent, "alive"),
        ]


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


def healthy_since(controller: fake_server.FakeJujuController, unit: str, before: float) -> float:
    """When `unit` last became active/idle before `before`, from the fake's status history."""
    tag = "unit-" + unit.replace("/", "-")
    workload = agent = ""
    since: float | None = None
    for entry in controller.model.history.get(tag, []):
        if entry.status.since > before:
            break
        if entry.kind == "workload":
            workload = entry.status.current
        elif entry.kind == "juju-unit":
            agent = entry.status.current
        if workload == "active" and agent == "idle":
            since = entry.status.since if since is None else since
        else:
            since = None
    if since is None:
        raise RuntimeError(f"{unit} was never active/idle before the removal call")
    return since


@dataclasses.dataclass
class WatcherTap:
    """Counts the deltas one AllWatcher hands out, and whether a Next is waiting."""

    delivered: int = 0
    started: int = 0
    finished: int = 0

    @property
    def waiting(self) -> bool:
        """Whether the client has come back for more (it finished the last batch)."""
        return self.started > self.finished


def tap_watchers(controller: fake_server.FakeJujuController) -> dict[str, WatcherTap]:
    """Count what every AllWatcher created from now on delivers (by watcher id).

    Call it before any client connects: `ModelState.new_watcher` is wrapped on this one
    instance so each new watcher's `next` counts its batches.
    """
    model = controller.model
    taps: dict[str, WatcherTap] = {}
    create = model.new_watcher

    def new_watcher() -> fake_model.AllWatcher:
        watcher = create()
        tap = taps[watcher.id] = WatcherTap()
        original = watcher.next

        async def counted() -> list[list[Any]]:
            tap.started += 1
            try:
                batch = await original()
            finally:
                tap.finished += 1
            tap.delivered += len(batch)
            return batch

        setattr(watcher, "next", counted)  # noqa: B010 - an instance hook, not a class change
        return watcher

    setattr(model, "new_watcher", new_watcher)  # noqa: B010 - same, on this instance only
    return taps


def _all_delivered(taps: list[WatcherTap], offsets: list[int], sent: int) -> bool:
    return all(
        tap.delivered - offset >= sent and tap.waiting
        for tap, offset in zip(taps, offsets, strict=True)
    )


async def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
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

    Each batch changes `batch` distinct units (so the watcher cannot coalesce them), then
    waits until every live watcher (tapped with `tap_watchers`) delivered them and its client
    asked for more. At each
    checkpoint (deltas delivered) the callback runs. Returns the seconds it took.
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
    offsets = [tap.delivered for tap in taps]
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
            unit = dataclasses.replace(
                unit, workload=fake_model.Status("active", f"churn {index}", now)
            )
            model.units[name] = unit
            info = model.unit_info(unit)
            for watcher in list(model.watchers.values()):
                watcher.notify("unit", name, "change", info)
        sent += size
        await _wait(
            functools.partial(_all_delivered, taps, offsets, sent),
            timeout,
            f"{sent} deltas to be delivered and applied",
        )
        while pending and pending[0] <= sent:
            checkpoints[pending.pop(0)]()
    return time.monotonic() - began

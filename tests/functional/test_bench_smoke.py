"""Smoke test of the benchmark's in-process machinery (no timings asserted).

The whole `python -m bench --quick` takes tens of seconds (six interpreter starts with
libjuju), so this only checks the parts that depend on the fake's internals: bulk seeding,
watcher taps, churn, the call-log and status-history readers, and the report.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from bench import fakes, harness, procstat, report
from tests.fakejuju import helpers


async def test_churn_reaches_a_libjuju_watcher_and_report_has_every_metric() -> None:
    controller, taps = await fakes.start_fake(
        {"wsgi-example": 1}, step_delay=0.01, bulk={"big": 40}
    )
    conn = await helpers.connect(controller)
    try:
        watcher_id = (await _rpc(conn, "Client", 8, "WatchAll"))["watcher-id"]
        snapshot = await _rpc(conn, "AllWatcher", 3, "Next", watcher_id)
        assert len([d for d in snapshot["deltas"] if d[0] == "unit"]) == 41
        received: list[int] = []

        async def watch() -> None:
            while True:
                reply = await _rpc(conn, "AllWatcher", 3, "Next", watcher_id)
                received.append(len(reply["deltas"]))

        task = asyncio.create_task(watch())
        seen: list[str] = []
        await fakes.churn(
            controller,
            taps,
            "big",
            100,
            batch=20,
            checkpoints={50: lambda: seen.append("half"), 100: lambda: seen.append("full")},
            timeout=10,
        )
        task.cancel()
        assert sum(received) == 100
        assert seen == ["half", "full"]
        calls = fakes.count_calls(controller, 0, float("inf"))
        assert calls[fakes.NEXT] >= 6
        assert fakes.PING not in calls
        since = fakes.healthy_since(controller, "big/3", float("inf"))
        assert since < controller.clock.now()
    finally:
        await conn.close()
        await controller.stop()

    sample = procstat.read_sample(os.getpid())
    replacement = harness.Replacement("a/0", "a/1", 3.0, 0.01, {fakes.NEXT: 9, "X.Y": 4})
    idle = harness.Idle(10.0, 2.0, {fakes.FULL_STATUS: 5}, 1)
    memory = harness.Memory(41, 100, sample, sample, sample, 1.0, {fakes.NEXT: 5})
    side = harness.SideResult("agent", (replacement,), idle, memory)
    rows = report.build_rows(side, side)
    assert len(rows) == 14
    text = report.render(side, side)
    assert "latency beyond settle-period, median" in text
    assert "idle calls/hour at the default poll" in text


async def _rpc(
    conn: Any, facade: str, version: int, request: str, watcher_id: str | None = None
) -> Any:
    msg: dict[str, Any] = {"type": facade, "version": version, "request": request, "params": {}}
    if watcher_id is not None:
        msg["Id"] = watcher_id
    return (await conn.rpc(msg))["response"]

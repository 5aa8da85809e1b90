"""Smoke test of the benchmark's in-process machinery (no timings asserted).

The whole `python -m bench --quick` takes tens of seconds (six interpreter starts with
libjuju), so this only checks the parts that depend on the fake's internals: the fake's own
seeding, the watcher taps (delivery times of the target's unit states, nothing kept for
other applications), churn through the model's mutation path, the call-log readers, the
delivered "healthy since", the heal phase's pieces (victim choice, breaking a unit, the error
delta's delivery, reaction times from the call log, the baseline's broken-unit test on
libjuju's own status objects), the plan phase's pieces (timed `plan` requests to an agent,
which must cost the controller nothing, and the baseline's timed full statuses through
libjuju, each checked against the model's size), the scrape phase's pieces (timed scrapes
of an agent's /metrics from a process of their own, checked against the model's size) and
the report.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import os
import pathlib
import time
from typing import Any

import pytest
from juju import model as juju_model
from juju.client import client as juju_client

from bench import baseline, fakes, harness, procstat, report
from tests.fakejuju import helpers
from tests.functional import agent_harness
from whirlwind import control, metrics

TARGET = "wsgi-example"


async def test_taps_churn_and_readers_on_the_realistic_fake_and_report_has_every_metric() -> None:
    # A small lag keeps the test quick; the deltas still take the fake's feed and store.
    controller, taps = await fakes.start_fake(
        {TARGET: 1, "big": 40}, step_delay=0.01, targets=(TARGET,), delta_lag=(0.005, 0.02)
    )
    conn = await helpers.connect(controller)
    try:
        before_snapshot = time.time()
        watcher_id = (await _rpc(conn, "Client", 8, "WatchAll"))["watcher-id"]
        snapshot = await _rpc(conn, "AllWatcher", 3, "Next", watcher_id)
        # The fake seeded `big` itself: a fresh watcher's snapshot has every unit.
        assert len([d for d in snapshot["deltas"] if d[0] == "unit"]) == 41
        tap = taps[watcher_id]
        assert tap.delivered == len(snapshot["deltas"])
        assert tap.unit_deltas == {TARGET: 1, "big": 40}
        # Only the target's units are kept, with the time the batch was handed out.
        assert set(tap.units) == {f"{TARGET}/0"}
        (seeded,) = tap.units[f"{TARGET}/0"]
        assert seeded.healthy
        assert before_snapshot <= seeded.time <= time.time()
        assert list(tap.batch_times) == [seeded.time]

        kinds: collections.Counter[tuple[str, str]] = collections.Counter()

        async def watch() -> None:
            while True:
                reply = await _rpc(conn, "AllWatcher", 3, "Next", watcher_id)
                kinds.update((d[0], d[2].get("application", "")) for d in reply["deltas"])

        task = asyncio.create_task(watch())
        try:
            # A real new unit of the target: its states arrive late, through the feed.
            added = await _rpc(
                conn, "Application", 20, "AddUnits", params={"application": TARGET, "num-units": 1}
            )
            (new,) = added["units"]
            await helpers.wait_until(lambda: _settled(controller, new), timeout=10)
            await controller.wait_delivered()
            await helpers.wait_until(lambda: tap.waiting, timeout=5)
            # On the real clock the last hook's idle may still be on its way (the fake's lag):
            # it must arrive through the feed, not be read too early.
            await helpers.wait_until(lambda: tap.units[new][-1].healthy, timeout=5)
            states = tap.units[new]
            assert not states[0].healthy  # waiting for machine / allocating
            assert states[-1].healthy
            assert [s.time for s in states] == sorted(s.time for s in states)
            end = time.time()
            healthy_at = fakes.delivered_healthy_since(taps.values(), new, end)
            assert healthy_at is not None
            # The last transition into active/idle, as delivered (its delivery time): after an
            # unhealthy state, or a healthy one whose status `since` moved (the lag's store
            # coalesced a later hook's executing and idle into one delta: a break all the same).
            last_unhealthy = max(s.time for s in states if not s.healthy)
            first_healthy_after = min(s.time for s in states if s.time > last_unhealthy)
            transitions = [
                s.time
                for i, s in enumerate(states)
                if s.healthy
                and (i == 0 or not states[i - 1].healthy or states[i - 1].marker != s.marker)
            ]
            assert healthy_at == transitions[-1] >= first_healthy_after
            # The fake's own history (a diagnostic only): healthy now, not at AddUnits time.
            changed_at = fakes.fake_healthy_since(controller, new, end)
            assert changed_at is not None
            assert changed_at <= end
            assert fakes.delivered_healthy_since(taps.values(), new, states[0].time) is None
            # First idle, then 1 or 2 later hooks (executing, idle): some may be coalesced.
            became = fakes.delivered_healthy_count(taps.values(), new, end)
            assert 1 <= became <= fakes.fake_healthy_count(controller, new, end) <= 3
            added_at = fakes.first_call_time(controller, "Application.AddUnits", 0, end)
            assert added_at is not None
            assert added_at < states[0].time
            assert fakes.fake_healthy_since(controller, new, added_at) is None

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
        finally:
            task.cancel()
        assert kinds[("unit", "big")] == 100
        assert tap.unit_deltas["big"] == 140
        assert seen == ["half", "full"]
        # Bounded: nothing kept for the churned application.
        assert set(tap.units) == {f"{TARGET}/0", new}
        calls = fakes.count_calls(controller, 0, float("inf"))
        assert calls[fakes.NEXT] >= 7
        assert calls["Application.AddUnits"] == 1
        assert fakes.PING not in calls
    finally:
        await conn.close()
        await controller.stop()

    sample = procstat.read_sample(os.getpid())
    replacement = harness.Replacement(
        "a/0", "a/1", 3.0, 0.01, {fakes.NEXT: 9, "X.Y": 4}, 0.2, 2, 3
    )
    idle = harness.Idle(10.0, 2.0, {fakes.FULL_STATUS: 5}, 1)
    memory = harness.Memory(41, 100, sample, sample, sample, 1.0, {fakes.NEXT: 5})
    side = harness.SideResult("agent", (replacement,), idle, memory)
    rows = report.build_rows(side, side)
    assert len(rows) == 14
    text = report.render(side, side)
    assert "latency beyond settle-period, median" in text
    assert "idle calls/hour at the default poll" in text
    assert "13 calls (4 without Next), 3.00s; delta lag 200 ms; active/idle 2x / 3x" in text


async def test_heal_pieces_on_the_realistic_fake_and_report_has_the_heal_rows() -> None:
    controller, taps = await fakes.start_fake(
        {TARGET: 3}, step_delay=0.01, targets=(TARGET,), delta_lag=(0.005, 0.02)
    )
    conn = await helpers.connect(controller)
    try:
        watcher_id = (await _rpc(conn, "Client", 8, "WatchAll"))["watcher-id"]
        await _rpc(conn, "AllWatcher", 3, "Next", watcher_id)
        task = asyncio.create_task(_watch(conn, watcher_id))
        try:
            assert fakes.all_settled(controller, TARGET, 3)
            assert not fakes.all_settled(controller, TARGET, 2)
            # Unit 0 leads at start: never the victim.
            assert controller.model.leaders[TARGET] == f"{TARGET}/0"
            broken, applied = await harness.break_unit(controller, harness.ERROR)
            assert broken == f"{TARGET}/1"
            assert applied <= time.time()
            assert controller.model.units[broken].workload.current == "error"
            assert not fakes.all_settled(controller, TARGET, 3)
            # The error reaches the watcher late, through the feed.
            await fakes.wait_until(
                lambda: fakes.first_delivered(taps.values(), broken, applied, "error") is not None,
                5,
                "the error delta",
            )
            delivered = fakes.first_delivered(taps.values(), broken, applied, "error")
            assert delivered is not None
            assert applied < delivered
            assert fakes.first_delivered(taps.values(), broken, time.time(), "error") is None

            # A side heals: AddUnits, then a full status.
            added = await _rpc(
                conn, "Application", 20, "AddUnits", params={"application": TARGET, "num-units": 1}
            )
            (new,) = added["units"]
            status = await _rpc(conn, "Client", 8, "FullStatus", params={"patterns": None})
            end = time.time()
            heal = harness.heal_result(
                controller, taps, harness.ERROR, broken, new, 0.5, applied, end
            )
            add_at = fakes.first_call_time(controller, fakes.ADD_UNITS, applied, end)
            assert add_at is not None
            assert heal.added == add_at
            assert heal.delivered == delivered
            assert heal.reaction == add_at - applied - 0.5
            assert heal.reaction_from_delivery == add_at - delivered - 0.5
            assert heal.first_status is not None
            assert heal.first_status > add_at
            assert heal.calls[fakes.ADD_UNITS] == 1
            assert heal.calls[fakes.FULL_STATUS] == 1
            assert heal.total_calls - heal.calls_without_next == heal.calls.get(fakes.NEXT, 0)

            # A lost agent shows only in full status; the victim is the next settled unit.
            assert fakes.pick_victim(controller, TARGET) == f"{TARGET}/2"
            lost, lost_at = await harness.break_unit(controller, harness.LOST)
            assert lost == f"{TARGET}/2"
            lost_status = await _rpc(conn, "Client", 8, "FullStatus", params={"patterns": None})
            assert lost_at < controller.calls[-1].time
            # No AddUnits since the fault: not a heal.
            with pytest.raises(RuntimeError, match="no AddUnits call while healing"):
                harness.heal_result(
                    controller, taps, harness.LOST, lost, new, 0.0, lost_at, time.time()
                )
        finally:
            task.cancel()
    finally:
        await conn.close()
        await controller.stop()
    # The baseline decides on libjuju's own FullStatus objects: error and lost are broken.
    assert _broken_in(status) == {broken}
    assert _broken_in(lost_status) == {broken, lost}

    lost_one = harness.Heal(
        harness.LOST, "a/2", "a/4", 5.0, 100.0, 107.5, None, 102.0, 12.0, {fakes.NEXT: 3}
    )
    assert lost_one.reaction == 2.5
    assert lost_one.reaction_from_status == 0.5
    assert lost_one.reaction_from_delivery is None
    phase = harness.HealPhase(0.5, 5.0, (heal,), (lost_one,))
    side = harness.SideResult("agent", (), None, None, phase)
    rows = report.build_rows(side, side)
    assert len(rows) == 10
    by_metric = {row.metric: row for row in rows}
    worst_lost = by_metric["lost agent: AddUnits beyond heal-after, from the fault, worst"]
    assert worst_lost.agent == 2500.0
    assert worst_lost.met
    assert worst_lost.target == "<= 5,000 ms (one status poll)"
    text = report.render(side, side)
    assert "hook error: AddUnits beyond heal-after, from the delta's delivery, median" in text
    assert (
        "a/2 -> a/4:  2500.0 ms; first FullStatus 2000 ms after the fault; 500 ms from it" in text
    )


def _broken_in(reply: dict[str, Any]) -> set[str]:
    """Units of the target the baseline takes for broken in a FullStatus reply (libjuju's)."""
    status = juju_client.FullStatus.from_json(reply)
    assert status is not None
    application = status.applications[TARGET]
    assert application is not None
    return {name for name, unit in application.units.items() if baseline._is_broken(unit)}


async def _watch(conn: Any, watcher_id: str) -> None:
    """Keep an AllWatcher.Next outstanding, as every side does."""
    while True:
        await _rpc(conn, "AllWatcher", 3, "Next", watcher_id)


def _settled(controller: Any, unit: str) -> bool:
    """The fake's unit is active/idle and the lifecycle is done (its later hooks included)."""
    found = controller.model.units.get(unit)
    return (
        found is not None
        and (found.workload.current, found.agent.current) == ("active", "idle")
        and controller.clock.pending() == 0
    )


async def _rpc(
    conn: Any,
    facade: str,
    version: int,
    request: str,
    watcher_id: str | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    msg: dict[str, Any] = {
        "type": facade,
        "version": version,
        "request": request,
        "params": params or {},
    }
    if watcher_id is not None:
        msg["Id"] = watcher_id
    return (await conn.rpc(msg))["response"]


async def test_plan_pieces_on_the_realistic_fake_and_report_has_the_plan_rows(
    agent_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    services = {TARGET: 3, "big": 40}
    controller, _ = await fakes.start_fake(
        services, step_delay=0.01, targets=(TARGET,), delta_lag=(0.005, 0.02)
    )
    # The agent as the benchmark runs it: both applications targets, status polled rarely.
    agent_settings = agent_harness.make_settings(controller, agent_dir, tuple(services))
    timings = dataclasses.replace(agent_harness.AGENT_TIMINGS, status_poll_interval=60.0)
    agent = agent_harness.InProcessAgent(agent_settings, timings=timings)
    server = control.ControlServer(agent_settings.control_socket, agent.engine)
    client = control.ControlClient(agent_settings.control_socket)
    model = juju_model.Model()
    try:
        await server.start()
        await agent.start()

        async def ask() -> dict[str, Any]:
            return await asyncio.to_thread(client.plan)

        await harness.wait_plan_ready(ask, timeout=10)
        phase = await harness.time_plans(controller, ask, 3, services)
        # A plan that does not cover the whole model is refused.
        with pytest.raises(RuntimeError, match="are not the model's"):
            await harness.time_plans(controller, ask, 1, {TARGET: 3, "big": 41})

        # The baseline: timed full statuses through libjuju's Model, as its `status` mode.
        info = controller.info()
        await model.connect(
            endpoint=info["endpoint"],
            uuid=info["model-uuid"],
            username=info["username"],
            password=info["password"],
            cacert=info["ca-cert"],
        )
        capsys.readouterr()
        await baseline.time_status(model, 2, 0.0)
        events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finally:
        await model.disconnect()
        await server.stop()
        await agent.stop()
        await controller.stop()

    # The agent answers from its model view: no call reaches the controller.
    assert phase.units == 43
    assert len(phase.seconds) == 3
    assert phase.calls == {}
    assert phase.calls_per_request == 0.0
    assert [e["event"] for e in events] == ["status", "status"]
    status_phase = harness.plan_from_events(controller, events, 43)
    assert status_phase.calls == {fakes.FULL_STATUS: 2}
    assert status_phase.seconds == tuple(e["seconds"] for e in events)
    assert all(e["start"] <= e["t"] for e in events)
    with pytest.raises(RuntimeError, match="had 43 units"):
        harness.plan_from_events(controller, events, 44)

    agent_side = harness.SideResult(
        "agent", (), None, None, None, dataclasses.replace(phase, command_seconds=(0.25, 0.3))
    )
    baseline_side = harness.SideResult("baseline", (), None, None, None, status_phase)
    rows = report.build_rows(baseline_side, agent_side)
    assert [row.metric for row in rows] == [
        "plan of 43 units (baseline: one full status), median",
        "plan of 43 units (baseline: one full status), worst",
        "  controller calls per plan (pings, AllWatcher.Next aside)",
        "`ctl plan` command, interpreter start included, worst",
    ]
    assert (rows[2].baseline, rows[2].agent) == (1.0, 0.0)
    assert rows[3].agent == 300.0
    assert rows[3].met
    text = report.render(baseline_side, agent_side)
    assert "| `ctl plan` command, interpreter start included, worst | ms | - | 300 | - |" in text
    assert "agent: `ctl plan` end to end, interpreter start included: 250, 300 ms" in text
    assert "baseline: 2 x full status on 43 units" in text


async def test_scrape_pieces_on_an_agent_serving_metrics_and_report_has_the_scrape_rows(
    agent_dir: pathlib.Path,
) -> None:
    services = {TARGET: 3, "big": 40}
    controller, _ = await fakes.start_fake(
        services, step_delay=0.01, targets=(TARGET,), delta_lag=(0.005, 0.02)
    )
    # The agent as the benchmark runs it (both applications targets), serving its metrics
    # as `whirlwind run` does (cli.py: AgentMetrics attached to the engine, MetricsServer).
    agent_settings = agent_harness.make_settings(controller, agent_dir, tuple(services))
    timings = dataclasses.replace(agent_harness.AGENT_TIMINGS, status_poll_interval=60.0)
    agent = agent_harness.InProcessAgent(agent_settings, timings=timings)
    agent_metrics = metrics.AgentMetrics()
    server = metrics.MetricsServer(agent_metrics.registry)
    port = harness.free_port()
    try:
        await agent.start()
        agent_metrics.attach(agent.engine, agent.backend)
        assert server.start(port)
        await harness.wait_metrics_ready(port, services, timeout=10)
        phase = await harness.time_scrapes(controller, port, 3, services, os.getpid())
        # The text format (no OpenMetrics) is read too.
        text_samples = harness.check_scrape(agent_metrics.render(), services)
        # A scrape that does not count the model's units is refused.
        with pytest.raises(RuntimeError, match="are not the model's"):
            await harness.time_scrapes(controller, port, 1, {TARGET: 3, "big": 41}, os.getpid())
    finally:
        await asyncio.to_thread(server.stop)
        agent_metrics.detach()
        await agent.stop()
        await controller.stop()

    assert phase.units == 43
    assert len(phase.seconds) == 3
    assert all(s > 0 for s in phase.seconds)
    # The scrape asked for gzip as Prometheus does, and got it.
    assert 0 < phase.wire_bytes < phase.text_bytes
    assert phase.samples == text_samples > 0
    assert phase.cpu_seconds >= 0
    assert phase.calls == {}

    small = harness.ScrapePhase(3, (0.002, 0.003, 0.004), 0.006, 1800, 17000, 200)
    big = harness.ScrapePhase(5003, (0.003, 0.004, 0.012), 0.009, 1810, 17010, 200)
    agent_side = harness.SideResult("agent", (), None, None, None, None, big)
    baseline_side = harness.SideResult("baseline", (), None, None, None, None, small)
    rows = report.build_rows(baseline_side, agent_side)
    assert [(row.metric, row.met) for row in rows] == [
        ("scrape of 5,003 units (baseline: the same on 3), median", True),
        ("scrape of 5,003 units (baseline: the same on 3), worst", False),
        ("  agent CPU per scrape (utime + stime)", None),
    ]
    values = [(row.baseline, row.agent) for row in rows]
    assert values == [
        pytest.approx((3.0, 4.0)),
        pytest.approx((4.0, 12.0)),
        pytest.approx((2.0, 3.0)),
    ]
    text = report.render(baseline_side, agent_side)
    assert "| scrape of 5,003 units (baseline: the same on 3), worst | ms | 4.0 | 12.0 |" in text
    assert "1 of 3 at 10 ms or more" in text
    assert "baseline: 3 scrapes of /metrics on 3 units" in text

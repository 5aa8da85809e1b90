"""The lifecycle planner driving the real engine on virtual time: weeks in seconds."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import pathlib

from tests.unit import inmemory_backend as imb
from whirlwind import control
from whirlwind import journal as journal_mod
from whirlwind.planner import age

DAY = 86400
MAX_AGE = 7 * DAY
INTERVAL = 600
UNITS = 10


def _expiry(unit: str, born: datetime.datetime) -> datetime.datetime:
    return born + datetime.timedelta(seconds=MAX_AGE * (1 + age.jitter(unit)))


def _others_due(
    op: journal_mod.Operation,
    born: dict[str, datetime.datetime],
    removed: dict[str, datetime.datetime],
) -> list[str]:
    """Units other than the operation's victim that were alive and past their limit then."""
    return [
        unit
        for unit, when in born.items()
        if unit != op.old_unit
        and when <= op.started
        and (unit not in removed or removed[unit] > op.started)
        and _expiry(unit, when) <= op.started
    ]


def test_thirty_days_of_max_age_on_ten_units(tmp_path: pathlib.Path) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", UNITS, born={n: imb.EPOCH for n in range(UNITS)})
    backend.add_application("whirlwind", 1)
    leader_at_add: dict[str, str | None] = {}

    def record_leader(method: str, args: tuple[object, ...]) -> None:
        if method == "add_unit":
            leader_at_add[str(len(backend.added))] = backend.get_leader("app")

    backend.before_call = record_leader

    async def scenario() -> list[journal_mod.Operation]:
        agent = await imb.start_agent(
            backend, tmp_path, interval=INTERVAL, max_age=MAX_AGE, heal=False
        )
        await asyncio.sleep(30 * DAY)
        await imb.wait_until(lambda: not agent.journal.get_unfinished())
        history = agent.history()
        await agent.stop()
        return history

    history = imb.run_virtual(scenario())

    assert history, "nothing was replaced in 30 days"
    assert {(op.trigger, op.result) for op in history} == {("age", "ok")}
    born = {f"app/{n}": imb.EPOCH for n in range(UNITS)}
    born.update({op.new_unit: op.born for op in history if op.new_unit and op.born})
    removed = {op.old_unit: op.finished for op in history if op.old_unit and op.finished}

    # Every unit is replaced once it is past its own limit, and soon after (the pacing of
    # one per interval, ten units expiring within 0.7 days of each other).
    for op in history:
        assert op.old_unit is not None
        due = _expiry(op.old_unit, born[op.old_unit])
        assert due <= op.started <= due + datetime.timedelta(hours=6), op.old_unit
    # So every unit alive at the end is younger than its limit plus that slack, and each of
    # the ten places was renewed four times in 30 days (at about 7, 14.5, 22 and 29 days).
    end = imb.EPOCH + datetime.timedelta(seconds=30 * DAY)
    for unit in backend.get_live_units("app"):
        assert _expiry(unit, born[unit]) > end - datetime.timedelta(hours=6), unit
    assert 30 <= len(history) <= 40
    assert len(backend.get_live_units("app")) == UNITS

    # Never two voluntary operations in one interval.
    starts = [op.started for op in history]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= INTERVAL

    # The leader last: replaced only when no other live unit was past its limit.
    leader_ops = [op for n, op in enumerate(history) if leader_at_add.get(str(n)) == op.old_unit]
    assert leader_ops, "the leader was never replaced"
    for op in leader_ops:
        assert _others_due(op, born, removed) == [], op.old_unit

    # Jitter spreads the first expiries over hours, not one burst at exactly 7 days.
    first_round = [op.started for op in history[:UNITS]]
    spread = (max(first_round) - min(first_round)).total_seconds()
    assert spread > 0.05 * MAX_AGE
    assert min(first_round) >= imb.EPOCH + datetime.timedelta(seconds=MAX_AGE)


def test_the_leader_goes_last_when_every_unit_is_past_max_age(tmp_path: pathlib.Path) -> None:
    backend = imb.InMemoryBackend()
    old = imb.EPOCH - datetime.timedelta(days=8)  # all ten over max-age when the agent starts
    backend.add_application("app", UNITS, born={n: old for n in range(UNITS)})
    backend.add_application("whirlwind", 1)
    assert backend.get_leader("app") == "app/0"  # and app/0 expires first of all (no jitter)

    async def scenario() -> list[journal_mod.Operation]:
        agent = await imb.start_agent(backend, tmp_path, interval=INTERVAL, max_age=MAX_AGE)
        await imb.wait_until(lambda: len(agent.history()) >= UNITS, timeout=2 * DAY)
        await imb.wait_until(lambda: not agent.journal.get_unfinished())
        history = agent.history()
        await agent.stop()
        return history

    history = imb.run_virtual(scenario())

    assert [op.old_unit for op in history[:UNITS]][-1] == "app/0"
    assert sorted(op.old_unit or "" for op in history[:UNITS]) == sorted(
        f"app/{n}" for n in range(UNITS)
    )
    starts = [op.started for op in history[:UNITS]]
    assert min((b - a).total_seconds() for a, b in itertools.pairwise(starts)) >= INTERVAL


async def _crash(agent: imb.Agent) -> None:
    """The agent's process goes down: its tasks end where they are; the journal stays."""
    agent.task.cancel()
    await asyncio.wait([agent.task])
    agent.journal.close()


def test_a_heal_left_in_flight_is_finished_while_paused_a_rotation_is_not(
    tmp_path: pathlib.Path,
) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 3)
    backend.add_application("web", 3)

    async def scenario() -> tuple[list[journal_mod.Operation], list[str]]:
        agent = await imb.start_agent(
            backend, tmp_path, services=("app", "web"), heal_after=60, max_in_flight=2
        )
        backend.set_unit_status("app/1", "error", message='hook failed: "update-status"')
        await imb.wait_until(
            lambda: any(op.step == "settle" for op in agent.journal.get_unfinished())
        )
        await agent.engine.replace_now(control.ReplaceNowRequest("web", wait=False))
        await imb.wait_until(lambda: len(agent.journal.get_unfinished()) == 2)
        await _crash(agent)
        await asyncio.sleep(1)
        again = await imb.start_agent(
            backend, tmp_path, services=("app", "web"), heal_after=60, paused=True
        )
        await imb.wait_until(
            lambda: {op.service for op in again.journal.get_unfinished()} == {"web"}
        )
        await asyncio.sleep(3600)
        left = [op.service for op in again.journal.get_unfinished()]
        history = again.history()
        await again.stop()
        return history, left

    history, left = imb.run_virtual(scenario())

    heal = next(op for op in history if op.service == "app")
    assert (heal.old_unit, heal.result) == ("app/1", "ok")
    assert "recover" in [s.step for s in heal.steps]
    assert left == ["web"]  # the replace-now waits for resume
    assert "app/1" not in backend.get_live_units("app")


def test_a_restart_keeps_the_heal_after_clock(tmp_path: pathlib.Path) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 3)

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        agent = await imb.start_agent(backend, tmp_path, heal_after=600)
        backend.set_unit_status("app/1", "error", message='hook failed: "update-status"')
        broke = loop.time()
        await asyncio.sleep(400)
        await _crash(agent)
        again = await imb.start_agent(backend, tmp_path, heal_after=600, interval=86400)
        await imb.wait_until(lambda: bool(backend.added))
        await imb.wait_until(lambda: not again.journal.get_unfinished())
        await again.stop()
        add = next(c for c in backend.calls if c.method == "add_unit")
        return add.at - broke

    waited = imb.run_virtual(scenario())

    # Healed 600 s after the break (plus the watcher's lag), not 600 s after the restart.
    assert 600 <= waited < 610

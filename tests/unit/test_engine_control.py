"""Operator control on virtual time: timed pause, change windows, the plan."""

from __future__ import annotations

import asyncio
import datetime
import pathlib

from tests.unit import inmemory_backend as imb
from whirlwind import journal as journal_mod
from whirlwind import windows

DAY = 86400
OFFICE = "mon-fri 09:00-17:00 Europe/London; sat 10:00-12:00 UTC"


def _backend() -> imb.InMemoryBackend:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 3)
    backend.add_application("whirlwind", 1)
    return backend


def test_a_timed_pause_ends_by_itself_and_work_resumes(tmp_path: pathlib.Path) -> None:
    backend = _backend()

    async def scenario() -> tuple[dict[str, object], dict[str, object], list[float]]:
        agent = await imb.start_agent(backend, tmp_path)
        paused = await agent.engine.pause(duration=3600, reason="release")
        status = await agent.engine.get_status()
        await asyncio.sleep(3600 + 700)
        after = await agent.engine.get_status()
        await imb.wait_until(lambda: not agent.journal.get_unfinished())
        starts = [(op.started - imb.EPOCH).total_seconds() for op in agent.history()]
        await agent.stop()
        return paused, {**status, "after": after}, starts

    paused, status, starts = imb.run_virtual(scenario())

    assert paused["paused-until"] == (imb.EPOCH + datetime.timedelta(hours=1)).isoformat()
    assert paused["pause-reason"] == "release"
    assert status["paused"] is True
    assert status["paused-until"] == paused["paused-until"]
    assert status["after"]["paused"] is False  # type: ignore[index]
    # Nothing while paused; the rotation comes back when the hour is over.
    assert starts
    assert min(starts) >= 3600
    assert min(starts) < 3600 + 600 + 5


def test_a_pause_until_resumed_survives_a_restart_an_ended_one_does_not(
    tmp_path: pathlib.Path,
) -> None:
    backend = _backend()

    async def scenario() -> tuple[bool, bool]:
        agent = await imb.start_agent(backend, tmp_path, interval=86400)
        await agent.engine.pause(duration=60)
        await agent.stop()
        await asyncio.sleep(120)
        again = await imb.start_agent(backend, tmp_path, interval=86400)
        ended = again.engine.paused
        await again.engine.pause()
        await again.stop()
        third = await imb.start_agent(backend, tmp_path, interval=86400)
        kept = third.engine.paused
        await third.stop()
        return ended, kept

    ended, kept = imb.run_virtual(scenario())

    assert (ended, kept) == (False, True)


def test_a_week_of_windows(tmp_path: pathlib.Path) -> None:
    # 2026-01-01 is a Thursday; London is on GMT (UTC) in January.
    backend = _backend()
    schedule = windows.parse_windows(OFFICE)

    async def scenario() -> list[journal_mod.Operation]:
        agent = await imb.start_agent(backend, tmp_path, interval=3600, windows=OFFICE)
        await asyncio.sleep(7 * DAY)
        await imb.wait_until(lambda: not agent.journal.get_unfinished())
        history = agent.history()
        await agent.stop()
        return history

    history = imb.run_virtual(scenario())

    assert history
    assert all(schedule.is_open(op.started) for op in history)
    days = {op.started.date() for op in history}
    # Thu, Fri, Sat (10-12 UTC), Mon, Tue, Wed; never Sunday.
    assert {d.weekday() for d in days} == {0, 1, 2, 3, 4, 5}
    # One per hour while open: 8 a weekday (5 days), 2 on Saturday.
    assert len(history) == 8 * 5 + 2
    assert all(op.result == "ok" for op in history)
    # The one that starts at 16:00 finishes after the window closed: it is not cut short.
    late = [op for op in history if op.started.hour == 16]
    assert late
    assert all(op.finished is not None and op.finished.hour >= 16 for op in late)


def test_healing_ignores_windows_unless_heal_in_windows(tmp_path: pathlib.Path) -> None:
    async def heal_started(heal_in_windows: bool, folder: pathlib.Path) -> float | None:
        backend = _backend()
        agent = await imb.start_agent(
            backend,
            folder,
            interval=30 * DAY,
            windows="sun 10:00-11:00",  # closed: 2026-01-01 is a Thursday
            heal_after=60,
            heal_in_windows=heal_in_windows,
        )
        backend.set_unit_status("app/1", "error", message='hook failed: "update-status"')
        await asyncio.sleep(3600)
        adds = [c.at for c in backend.calls if c.method == "add_unit"]
        await agent.stop()
        return adds[0] if adds else None

    anytime = imb.run_virtual(heal_started(False, tmp_path / "a"))
    waits = imb.run_virtual(heal_started(True, tmp_path / "b"))

    assert anytime is not None
    assert 60 <= anytime < 70
    assert waits is None


def test_the_plan_shows_the_gates_that_hold_a_target(tmp_path: pathlib.Path) -> None:
    backend = _backend()

    async def scenario() -> dict[str, object]:
        agent = await imb.start_agent(backend, tmp_path, windows="sun 10:00-11:00")
        await agent.engine.pause(duration=7200, reason="freeze")
        plan = await agent.engine.get_plan()
        await agent.stop()
        return plan

    plan = imb.run_virtual(scenario())

    (target,) = plan["targets"]  # type: ignore[misc]
    gates = target["gates"]
    assert gates["paused"] == {
        "holds": True,
        "detail": "paused until 2026-01-01 02:00 UTC (freeze)",
    }
    assert gates["window"]["holds"] is True
    assert gates["window"]["detail"] == "closed; opens Sun 10:00 UTC (sun 10:00-11:00)"
    assert gates["health"] == {"holds": False, "detail": "3 of 3 units healthy"}
    assert target["units"]["live"] == 3
    assert target["next"] is None  # paused: nothing but healing would start
    assert str(plan["message"]).startswith("app: nothing planned; paused: paused until")

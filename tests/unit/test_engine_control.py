"""Operator control on virtual time: timed pause, change windows, the plan."""

from __future__ import annotations

import asyncio
import datetime
import pathlib
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from whirlwind import control, windows
from whirlwind import journal as journal_mod
from whirlwind.chaos import arming

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


def test_armed_chaos_shows_in_the_status_and_disarms_by_itself(tmp_path: pathlib.Path) -> None:
    backend = _backend()

    async def scenario() -> tuple[dict[str, Any], ...]:
        agent = await imb.start_agent(backend, tmp_path, chaos_seed=7)
        armed = await agent.engine.arm_chaos("2h", "test", dry_run=True, by="ctl as root")
        status = await agent.engine.get_status()
        await asyncio.sleep(7200 + 1)
        after = await agent.engine.get_status()
        journaled = agent.journal.get_state("chaos")
        await agent.stop()
        return armed, status, after, journaled

    armed, status, after, journaled = imb.run_virtual(scenario())

    until = (imb.EPOCH + datetime.timedelta(hours=2)).isoformat()
    assert armed == {
        "chaos": "chaos armed (dry-run) until 02:00 UTC",
        "chaos-armed": True,
        "chaos-armed-until": until,
        "chaos-armed-by": "ctl as root",
        "chaos-armed-at": imb.EPOCH.isoformat(),
        "chaos-dry-run": True,
        "changed": True,
    }
    assert (status["chaos-armed"], status["chaos-armed-until"]) == (True, until)
    assert (after["chaos-armed"], after["chaos-armed-until"], after["chaos"]) == (
        False, None, "chaos not armed"
    )  # fmt: skip
    # Expired and journaled as such, with the seed the draws use.
    assert journaled == {**arming.Arming().to_state(), "seed": 7}


@pytest.mark.parametrize(
    ("controller", "confirm", "duration", "code", "message"),
    [
        (False, "prod", "2h", control.BAD_REQUEST,
         "confirm must be the model's name exactly: got 'prod', the model is 'test'"),
        (False, "test", "25h", control.BAD_REQUEST, "duration must be at most 24h, got '25h'"),
        (False, "test", 0, control.BAD_REQUEST, "duration must be greater than 0, got 0"),
        (True, "test", "2h", control.REFUSED,
         "this is the controller model: chaos is never armed there"),
    ],
)  # fmt: skip
def test_arming_is_refused(
    tmp_path: pathlib.Path,
    controller: bool,
    confirm: str,
    duration: Any,
    code: str,
    message: str,
) -> None:
    backend = imb.InMemoryBackend(is_controller_model=controller)
    backend.add_application("app", 3)

    async def scenario() -> tuple[control.ControlError, bool, Any]:
        agent = await imb.start_agent(backend, tmp_path)
        await asyncio.sleep(1)
        with pytest.raises(control.ControlError) as refused:
            await agent.engine.arm_chaos(duration, confirm)
        armed = agent.engine.arming.armed
        journaled = agent.journal.get_state("chaos")
        await agent.stop()
        return refused.value, armed, journaled

    error, armed, journaled = imb.run_virtual(scenario())

    assert (error.code, error.message) == (code, message)
    assert armed is False
    assert journaled is None  # nothing was written


def test_the_charms_arming_is_never_in_effect_on_the_controller_model(
    tmp_path: pathlib.Path,
) -> None:
    backend = imb.InMemoryBackend(is_controller_model=True)
    backend.add_application("app", 3)

    async def scenario() -> dict[str, Any]:
        agent = await imb.start_agent(backend, tmp_path, **_charm_arming(hours=2))
        await asyncio.sleep(1)
        status = await agent.engine.get_status()
        await agent.stop()
        return status

    status = imb.run_virtual(scenario())

    assert (status["chaos-armed"], status["chaos"]) == (False, "chaos not armed")


def _charm_arming(hours: float, at: datetime.datetime = imb.EPOCH) -> dict[str, Any]:
    return {
        "chaos_armed": True,
        "chaos_armed_until": at + datetime.timedelta(hours=hours),
        "chaos_armed_by": "arm-chaos action 3 on whirlwind/0",
        "chaos_armed_at": at,
    }


def test_the_charms_arming_wins_when_new_and_a_disarm_sticks(tmp_path: pathlib.Path) -> None:
    backend = _backend()
    charm_armed = imb.make_settings(tmp_path, **_charm_arming(hours=2))

    async def scenario() -> list[bool]:
        seen: list[bool] = []
        agent = await imb.start_agent(backend, tmp_path, **_charm_arming(hours=2))
        seen.append(agent.engine.arming.armed)  # 1: the charm armed it
        await agent.engine.disarm_chaos()
        agent.engine.reload(charm_armed)
        seen.append(agent.engine.arming.armed)  # 2: the same settings again: still disarmed
        await agent.stop()
        again = await imb.start_agent(backend, tmp_path, **_charm_arming(hours=2))
        seen.append(again.engine.arming.armed)  # 3: and after a restart
        await asyncio.sleep(60)
        rearmed = imb.make_settings(tmp_path, **_charm_arming(1, imb.EPOCH + _MINUTE))
        again.engine.reload(rearmed)
        seen.append(again.engine.arming.armed)  # 4: the charm armed it again
        again.engine.reload(imb.make_settings(tmp_path, chaos_armed=False))
        seen.append(again.engine.arming.armed)  # 5: the charm disarmed it
        await again.stop()
        return seen

    seen = imb.run_virtual(scenario())

    assert seen == [True, False, False, True, False]


_MINUTE = datetime.timedelta(minutes=1)

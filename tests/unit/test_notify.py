"""The status trigger: which commits touch it, the one-per-second limit, the engine touching it."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import os
import pathlib
import stat

import pytest

from tests.unit import inmemory_backend as imb
from whirlwind import control, notify
from whirlwind import journal as journal_mod

T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize(
    ("label", "notable"),
    [
        ("create", True),  # an operation starts (step plan)
        ("adopt", True),  # another agent's operation taken over
        ("step:add", True),
        ("step:settle", True),
        ("step:remove", True),
        ("step:cleanup", True),
        ("step:rollback", True),
        ("step:done", True),  # finish
        ("step:recover", True),
        ("step:remove-force", True),
        ("update:born,new_unit", True),  # the status names the new unit
        ("update:new_unit", True),
        ("update:deadline", False),
        ("update:new_machine", False),
        ("state:pause", True),  # pause, resume, a timed pause ending
        ("state:watches", False),  # the planner's memory
        ("state:chaos", True),  # chaos armed, disarmed, or the arming ended
        ("state:chaos-draws", False),
        ("state:interval", False),
        ("breaker:app", True),  # a failure counted, a breaker open
        ("breakers:clear", True),
        ("", False),
    ],
)
def test_which_commits_an_operator_sees(label: str, notable: bool):
    assert notify.is_notable(label) is notable


@pytest.mark.parametrize(
    ("now", "last", "delay"),
    [
        (100.0, None, 0.0),  # first touch: now
        (100.0, 100.0, 1.0),  # just touched: wait the second out
        (100.4, 100.0, 0.6),
        (100.999, 100.0, 0.001),
        (101.0, 100.0, 0.0),  # a second later: now
        (160.0, 100.0, 0.0),
        (99.0, 100.0, 0.0),  # the clock went back: now, not in a second and more
    ],
)
def test_at_most_one_touch_per_second(now: float, last: float | None, delay: float):
    assert notify.get_delay(now, last) == pytest.approx(delay)


def mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_touch_writes_the_time_0600_whatever_the_umask(tmp_path: pathlib.Path):
    trigger = tmp_path / notify.TRIGGER_FILE
    old = os.umask(0)
    try:
        assert notify.touch(trigger, T0) is True
    finally:
        os.umask(old)

    assert trigger.read_text() == "2026-01-01T12:00:00+00:00\n"
    assert mode(trigger) == 0o600


def test_touch_repairs_the_mode_and_replaces_the_content(tmp_path: pathlib.Path):
    trigger = tmp_path / notify.TRIGGER_FILE
    trigger.write_text("a much longer text than a time stamp\n")
    trigger.chmod(0o644)

    assert notify.touch(trigger, T0) is True

    assert trigger.read_text() == "2026-01-01T12:00:00+00:00\n"
    assert mode(trigger) == 0o600


def test_touch_never_raises(tmp_path: pathlib.Path):
    target = tmp_path / "elsewhere"
    link = tmp_path / notify.TRIGGER_FILE
    link.symlink_to(target)

    assert notify.touch(tmp_path / "missing" / notify.TRIGGER_FILE, T0) is False
    assert notify.touch(link, T0) is False  # not followed
    assert not target.exists()


def test_a_burst_is_one_touch_now_and_one_when_the_second_is_over(tmp_path: pathlib.Path):
    trigger = tmp_path / notify.TRIGGER_FILE

    async def scenario() -> list[str]:
        notifier = notify.Notifier(trigger, imb.virtual_now)
        seen = []
        for label in ("create", "step:add", "update:born,new_unit", "state:watches"):
            notifier.on_commit(label)
        seen.append(trigger.read_text())
        await asyncio.sleep(0.5)
        notifier.on_commit("step:settle")
        seen.append(trigger.read_text())  # still the first touch
        await asyncio.sleep(0.6)
        seen.append(trigger.read_text())  # the burst's second touch, a second later
        await asyncio.sleep(5)
        notifier.on_commit("state:watches")  # not notable
        seen.append(trigger.read_text())
        notifier.on_commit("step:done")  # more than a second later: now
        seen.append(trigger.read_text())
        notifier.on_commit("breaker:app")
        notifier.close()  # the agent stops: the due touch is dropped
        await asyncio.sleep(2)
        seen.append(trigger.read_text())
        return seen

    seen = imb.run_virtual(scenario())

    def at(seconds: float) -> str:
        return f"{(imb.EPOCH + datetime.timedelta(seconds=seconds)).isoformat()}\n"

    assert seen == [at(0), at(0), at(1), at(1), at(6.1), at(6.1)]


def test_outside_an_event_loop_a_change_within_the_second_waits(tmp_path: pathlib.Path):
    trigger = tmp_path / notify.TRIGGER_FILE
    notifier = notify.Notifier(trigger, lambda: T0)

    notifier.notify()
    trigger.write_text("seen\n")
    notifier.notify()  # no loop to touch later: dropped, and no exception

    assert trigger.read_text() == "seen\n"


def test_the_agent_touches_the_trigger_at_every_step_of_a_replacement(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
):
    backend = imb.InMemoryBackend()
    backend.add_application("app", 2)
    trigger = tmp_path / notify.TRIGGER_FILE
    touches: list[tuple[datetime.datetime, str]] = []
    real_touch = notify.touch

    def spy(path: pathlib.Path, at: datetime.datetime) -> bool:
        done = real_touch(path, at)
        touches.append((imb.virtual_now(), path.read_text()))
        return done

    monkeypatch.setattr(notify, "touch", spy)

    async def scenario() -> journal_mod.Operation:
        agent = await imb.start_agent(backend, tmp_path)
        await asyncio.sleep(30)
        touches.clear()  # connected (one touch): from here on, the replacement
        await agent.engine.replace_now(control.ReplaceNowRequest("app"))
        await asyncio.sleep(5)  # a touch still due goes out
        (op,) = agent.history()
        await agent.stop()
        return op

    op = imb.run_virtual(scenario())

    assert op.result == journal_mod.OK
    times = [at for at, _ in touches]
    assert len(times) >= 5, touches
    # Every touch wrote its own time: the content (and so the file) changed every time.
    assert [content for _, content in touches] == [f"{at.isoformat()}\n" for at in times]
    assert all((b - a).total_seconds() >= 1.0 for a, b in itertools.pairwise(times)), times
    assert stat.S_IMODE(trigger.stat().st_mode) == 0o600
    # Each step is touched within the second it was journaled, the last one (done)
    # included: every state the status can show reaches update-status.
    assert [s.step for s in op.steps] == ["plan", "add", "settle", "remove", "cleanup", "done"]
    for entry in op.steps:
        assert any(
            datetime.timedelta(0) <= at - entry.at <= datetime.timedelta(seconds=1) for at in times
        ), (entry, times)

"""Crash the agent at every journal write and after every controller call, then restart it.

A crash right after a journal commit is "between journal write and action"; a crash right after
a backend call took effect (before it returned) is "between action and next journal write". The
restarted agent (no interval due, so it starts nothing new) must finish or roll back what was
in flight without leaking or losing units, and the history must tell one consistent story.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Callable
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from whirlwind import journal as journal_mod
from whirlwind import settings

INITIAL = ["app/0", "app/1", "app/2"]

Event = tuple[str, str]


def _make_backend(scenario: str) -> imb.InMemoryBackend:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 3)
    backend.add_application("bystander", 1)
    if scenario.startswith("hook-error"):
        backend.next_unit_faults = [imb.HOOK_ERROR]
    if scenario == "hook-error-stuck":
        backend.stuck_dying.add("app/3")
    elif scenario == "stuck-dying":
        backend.stuck_dying.add("app/1")  # the victim: app/0 leads, so it goes last
    elif scenario == "machines-stay":
        backend.machines_stay = True
    return backend


async def _record(scenario: str, state_dir: pathlib.Path) -> list[Event]:
    """Every crash point of one replacement in `scenario`, in order."""
    events: list[Event] = []
    backend = _make_backend(scenario)
    backend.after_call = lambda method, _: events.append(("call", method))
    agent = await imb.start_agent(
        backend, state_dir, on_commit=lambda label: events.append(("commit", label))
    )
    await imb.wait_until(imb.all_finished(agent.journal))
    backend.after_call = None
    agent.journal.on_commit = None
    await agent.stop()
    return events


async def _crash_and_recover(
    scenario: str, state_dir: pathlib.Path, crash_at: int, downtime: float
) -> tuple[imb.InMemoryBackend, list[journal_mod.Operation], Event]:
    backend = _make_backend(scenario)
    seen: list[Event] = []

    def hook(event: Event) -> None:
        seen.append(event)
        if len(seen) - 1 == crash_at:
            raise imb.SimulatedCrash(f"crash after {event}")

    backend.after_call = lambda method, _: hook(("call", method))
    agent = await imb.start_agent(
        backend, state_dir, on_commit=lambda label: hook(("commit", label))
    )
    await asyncio.wait([agent.task], timeout=7200)
    with pytest.raises(imb.SimulatedCrash):
        agent.task.result()
    agent.journal.close()
    backend.after_call = None
    await asyncio.sleep(downtime)  # the agent is down; Juju goes on

    # A new agent on the same journal and the same model; no interval due: recovery only.
    agent = await imb.start_agent(backend, state_dir, seed=2, interval=settings.MAX_INTERVAL)
    await imb.wait_until(lambda: not agent.journal.get_unfinished())
    await asyncio.sleep(600)  # let Juju finish removals the agent no longer waits for
    history = agent.history()
    await agent.stop()
    return backend, history, seen[-1]


def _check_consistent(
    scenario: str,
    downtime: float,
    backend: imb.InMemoryBackend,
    history: list[journal_mod.Operation],
) -> None:
    live = backend.get_live_units("app")
    # No lost units, all healthy, nothing else touched.
    assert backend.model.count_healthy("app") == 3
    assert len(live) == 3
    assert backend.get_live_units("bystander") == ["bystander/0"]
    # At most one unit was ever added (no duplicate AddUnits after a crash).
    assert len(backend.added) <= 1
    # No machine left behind empty.
    machines = {backend.model.units[u].machine_id for u in backend.model.units}
    assert set(backend.get_machine_ids()) == machines
    assert len(history) <= 1
    if not history:
        assert live == INITIAL
        assert backend.added == []
        return
    (op,) = history
    assert op.is_finished
    assert op.steps[-1].step == "done"
    if op.trigger == "recovery":
        assert "recover" in [s.step for s in op.steps]
    if scenario.startswith("hook-error") or (downtime > 600 and not backend.added):
        # Down past the add deadline before a unit was added: nothing is added afterwards.
        assert op.result == journal_mod.ROLLED_BACK
        assert live == INITIAL
    else:
        assert op.result == journal_mod.OK
        assert op.new_unit is not None
        assert backend.added == [op.new_unit]
        assert live == ["app/0", "app/2", op.new_unit]


@pytest.mark.parametrize(
    ("scenario", "downtime"),
    [
        ("happy", 0),
        ("hook-error", 0),
        ("stuck-dying", 0),
        ("machines-stay", 0),
        # Down for longer than every deadline: recovery must still give Juju its time.
        ("stuck-dying", 1000),
        ("hook-error-stuck", 1000),
    ],
)
def test_crash_at_every_step_then_recover(
    scenario: str, downtime: float, tmp_path: pathlib.Path
) -> None:
    events = imb.run_virtual(_record(scenario, tmp_path / "record"))
    assert ("call", "add_unit") in events
    assert ("commit", "step:add") in events

    crashed_at: list[Event] = []
    for index in range(len(events)):
        state_dir = tmp_path / f"crash-{index}"
        backend, history, event = imb.run_virtual(
            _crash_and_recover(scenario, state_dir, index, downtime)
        )
        crashed_at.append(event)
        try:
            _check_consistent(scenario, downtime, backend, history)
        except AssertionError as exc:
            raise AssertionError(f"crash after {event} (#{index}): {exc}") from exc

    # Every crash point was hit exactly where recorded.
    assert crashed_at == events


def test_crash_points_cover_both_sides_of_every_action(tmp_path: pathlib.Path) -> None:
    events = imb.run_virtual(_record("happy", tmp_path))

    def after(event: Event) -> Callable[[Any], bool]:
        return lambda other: events.index(other) > events.index(event)

    reads = ("refresh_status",)
    kinds = [e for e in events if e[0] == "call" and e[1] not in reads]
    assert [e[1] for e in kinds] == [
        "add_unit",
        "set_unit_annotations",
        "set_unit_annotations",
        "destroy_unit",
        "set_unit_annotations",  # the finished operation's marks come off the new unit
    ]
    # Each action is preceded by the journal write of its step.
    assert events.index(("commit", "step:add")) < events.index(("call", "add_unit"))
    assert events.index(("commit", "step:remove")) < events.index(("call", "destroy_unit"))
    assert after(("call", "add_unit"))(("commit", "update:born,new_unit"))


async def _crash_then_new_leader(
    scenario: str, tmp_path: pathlib.Path, crash_at: int
) -> tuple[imb.InMemoryBackend, list[journal_mod.Operation], list[journal_mod.Operation]]:
    backend = _make_backend(scenario)
    seen: list[Event] = []

    def hook(event: Event) -> None:
        seen.append(event)
        if len(seen) - 1 == crash_at:
            raise imb.SimulatedCrash(f"crash after {event}")

    backend.after_call = lambda method, _: hook(("call", method))
    old = await imb.start_agent(
        backend, tmp_path / "old-leader", on_commit=lambda label: hook(("commit", label))
    )
    await asyncio.wait([old.task], timeout=7200)
    old_history = old.history()
    old.journal.close()
    backend.after_call = None

    # Another unit becomes leader once the old leader's lease has run out (a minute in
    # Juju): its agent has an empty journal of its own.
    await asyncio.sleep(60)
    new = await imb.start_agent(
        backend, tmp_path / "new-leader", seed=2, interval=settings.MAX_INTERVAL
    )
    await imb.wait_until(lambda: not new.journal.get_unfinished())
    await asyncio.sleep(600)
    history = new.history()
    await new.stop()
    return backend, old_history, history


@pytest.mark.parametrize("scenario", ["happy", "hook-error", "stuck-dying"])
def test_a_new_leader_finishes_or_rolls_back_what_the_old_one_left(
    scenario: str, tmp_path: pathlib.Path
) -> None:
    events = imb.run_virtual(_record(scenario, tmp_path / "record"))
    # From the moment both units carry the operation's annotation.
    annotated = [i for i, e in enumerate(events) if e == ("call", "set_unit_annotations")][1]

    for index in range(annotated, len(events)):
        backend, old_history, history = imb.run_virtual(
            _crash_then_new_leader(scenario, tmp_path / f"crash-{index}", index)
        )
        where = f"crash after {events[index]} (#{index})"
        live = backend.get_live_units("app")
        assert backend.model.count_healthy("app") == 3, where
        assert len(live) == 3, where
        assert len(backend.added) == 1, where
        machines = {u.machine_id for u in backend.model.units.values()}
        assert set(backend.get_machine_ids()) == machines, where
        (old_op,) = old_history
        if history:
            (op,) = history
            assert (op.id, op.trigger, op.steps[0].step) == (old_op.id, "recovery", "adopt"), where
            assert op.is_finished, where
        if scenario == "hook-error":
            assert live == INITIAL, where
        else:
            assert live == ["app/0", "app/2", backend.added[0]], where

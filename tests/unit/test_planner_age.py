"""Trigger `age`: units older than `max-age` are retired, oldest first, one per interval."""

from __future__ import annotations

import datetime
import pathlib
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from tests.unit.model_builders import T0
from tests.unit.model_builders import at as _at
from tests.unit.model_builders import unit as _unit
from tests.unit.model_builders import view as _view
from whirlwind import model as model_view
from whirlwind import planner, policies
from whirlwind import settings as settings_mod
from whirlwind.planner import age, core, gates

DAY = 24 * 3600
BORN = "whirlwind/born"


def _settings(max_age: int = DAY, **overrides: Any) -> settings_mod.AgentSettings:
    values: dict[str, Any] = {"services": ("app",), "max_age": max_age}
    values.update(overrides)
    return imb.make_settings(pathlib.Path("/nonexistent"), **values)


def _context(
    view: model_view.ModelView,
    now: float = 0,
    settings: settings_mod.AgentSettings | None = None,
    **facts: Any,
) -> core.Context:
    return core.make_context(
        "app", view, settings or _settings(), core.Facts(now=_at(now), agent_started=T0, **facts)
    )


def _expiry(name: str, born: float, max_age: int = DAY) -> datetime.datetime:
    return _at(born) + datetime.timedelta(seconds=max_age * (1 + age.jitter(name)))


def _three(**fields: dict[str, Any]) -> model_view.ModelView:
    """app/1 born 3 days ago, app/0 2 days ago (both due), app/2 just now (not due)."""
    units = [_unit(f"app/{n}", **fields.get(f"app_{n}", {})) for n in range(3)]
    return _view(*units, born={"app/0": -2 * DAY, "app/1": -3 * DAY, "app/2": 0})


# -- jitter -----------------------------------------------------------------------------------


def test_jitter_is_stable() -> None:
    assert age.jitter("app/0") == pytest.approx(0.05244055343123954)
    assert age.jitter("app/0") == age.jitter("app/0")
    assert age.jitter("app/1") == pytest.approx(0.02608746097243077)


def test_jitter_is_below_ten_percent_and_differs_by_name() -> None:
    names = [f"{app}/{n}" for app in ("app", "web", "postgresql") for n in range(200)]
    values = [age.jitter(name) for name in names]

    assert all(0 <= value < 0.1 for value in values)
    assert len(set(values)) == len(names)


def test_units_born_together_do_not_expire_together() -> None:
    names = [f"app/{n}" for n in range(10)]
    view = _view(*(_unit(name) for name in names), born=dict.fromkeys(names, 0))
    context = _context(view)

    expiries = [age.expiry(context, view.units[name]) for name in names]

    assert None not in expiries
    known = [e for e in expiries if e is not None]
    assert len(set(known)) == 10
    assert all(_at(DAY) <= e < _at(1.1 * DAY) for e in known)
    assert (max(known) - min(known)).total_seconds() > 0.05 * DAY


# -- birth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "machine_since", "first_seen", "expected"),
    [
        ("2025-12-31T00:00:00Z", _at(-100), _at(-50), _at(-DAY)),
        ("2025-12-31T00:00:00.123456789Z", None, None, _at(-DAY + 0.123456)),
        ("2025-12-31T01:00:00+01:00", None, None, _at(-DAY)),
        (None, _at(-100), _at(-50), _at(-100)),
        ("not a time", _at(-100), _at(-50), _at(-100)),
        (None, None, _at(-50), _at(-50)),
        ("", None, _at(-50), _at(-50)),
        (None, None, None, None),
    ],
)
def test_birth_is_the_annotation_else_the_machine_else_first_seen(
    annotation: str | None,
    machine_since: datetime.datetime | None,
    first_seen: datetime.datetime | None,
    expected: datetime.datetime | None,
) -> None:
    unit = _unit("app/0")
    view = _view(unit)
    view.machines["0"] = model_view.MachineState(id="0", instance_since=machine_since)
    if annotation is not None:
        view.annotations[unit.tag] = {BORN: annotation}
    seen = {} if first_seen is None else {"app/0": first_seen}

    assert core.get_birth(_context(view, first_seen=seen), unit) == expected


def test_a_unit_without_a_machine_is_born_when_first_seen() -> None:
    unit = _unit("app/0", machine_id=None)

    context = _context(_view(unit), first_seen={"app/0": _at(-7)})

    assert core.get_birth(context, unit) == _at(-7)


def test_a_unit_of_unknown_birth_is_never_due() -> None:
    view = _view(_unit("app/0"))

    assert age.expiry(_context(view), view.units["app/0"]) is None
    assert age.propose(_context(view, now=3650 * DAY)) == (None, [], [])


def test_first_seen_makes_a_unit_due_one_max_age_later() -> None:
    view = _view(_unit("app/0"))
    expiry = _expiry("app/0", 0)
    seen = {"app/0": T0}

    before = age.propose(_context(view, now=(expiry - T0).total_seconds() - 1, first_seen=seen))
    after = age.propose(_context(view, now=(expiry - T0).total_seconds(), first_seen=seen))

    assert before == (None, [core.Upcoming(core.AGE, expiry, "app/0 reaches max-age")], [])
    assert after[0] == core.Proposal(
        core.AGE, "app", "app/0", "app/0 is 1d old, over max-age", expiry
    )


# -- which unit ----------------------------------------------------------------------------------


def test_the_oldest_expiry_goes_first() -> None:
    assert age.propose(_context(_three())) == (
        core.Proposal(
            core.AGE, "app", "app/1", "app/1 is 3d old, over max-age", _expiry("app/1", -3 * DAY)
        ),
        [],
        [],
    )


def test_the_leader_goes_last_while_another_is_due() -> None:
    view = _three()
    view.leaders = frozenset({"app/1"})

    proposal, upcoming, notes = age.propose(_context(view))

    assert proposal is not None
    assert (proposal.victim, proposal.reason) == ("app/0", "app/0 is 2d old, over max-age")
    assert proposal.due == _expiry("app/0", -2 * DAY)
    assert notes == ["age: skipped app/1 is the leader (last)"]
    assert upcoming == []


def test_the_leader_goes_when_it_is_the_only_one_due() -> None:
    view = _view(_unit("app/0"), _unit("app/1"), born={"app/0": 0, "app/1": -3 * DAY})
    view.leaders = frozenset({"app/1"})

    proposal, _, notes = age.propose(_context(view))

    assert proposal is not None
    assert (proposal.victim, notes) == ("app/1", [])


def test_units_with_storage_are_skipped() -> None:
    view = _three()
    view.storage_units = frozenset({"app/1"})

    proposal, _, notes = age.propose(_context(view))

    assert proposal is not None
    assert proposal.victim == "app/0"
    assert notes == ["age: skipped app/1 has storage"]


def test_only_units_with_storage_due_means_no_proposal() -> None:
    view = _three()
    view.storage_units = frozenset({"app/0", "app/1"})

    assert age.propose(_context(view)) == (
        None,
        [core.Upcoming(core.AGE, _expiry("app/2", 0), "app/2 reaches max-age")],
        ["age: skipped app/1 has storage, app/0 has storage"],
    )


def test_storage_allow_takes_units_with_storage() -> None:
    view = _three()
    view.storage_units = frozenset({"app/1"})
    allow = _settings(policies=(("app", policies.Overrides(storage="allow")),))

    proposal, _, notes = age.propose(_context(view, settings=allow))

    assert proposal is not None
    assert (proposal.victim, notes) == ("app/1", [])


@pytest.mark.parametrize(
    ("fields", "busy", "expected"),
    [
        ({"app_1": {"life": "dying"}}, (), "app/0"),
        ({}, ("app/1",), "app/0"),
        ({"app_0": {"life": "dying"}, "app_1": {"life": "dead"}}, (), None),
        # Broken or settling units age too: age is about the unit, not its health.
        ({"app_1": {"workload_status": "error"}}, (), "app/1"),
    ],
)
def test_dying_and_busy_units_are_not_taken(
    fields: dict[str, Any], busy: tuple[str, ...], expected: str | None
) -> None:
    proposal, _, _ = age.propose(_context(_three(**fields), busy_units=busy))

    assert (proposal.victim if proposal is not None else None) == expected


@pytest.mark.parametrize(
    ("max_age", "born", "described"),
    [
        (DAY, -3 * DAY, "3d"),
        (DAY, -(DAY + 20 * 3600), "1d"),
        (3600, -2 * 3600, "2h"),
        (3600, -(2 * 3600 + 59 * 60), "2h"),
        (600, -45 * 60, "45m"),
    ],
)
def test_the_reason_gives_the_age(max_age: int, born: float, described: str) -> None:
    view = _view(_unit("app/0"), born={"app/0": born})

    proposal, _, _ = age.propose(_context(view, settings=_settings(max_age)))

    assert proposal is not None
    assert proposal.reason == f"app/0 is {described} old, over max-age"


# -- when ---------------------------------------------------------------------------------------


def test_without_max_age_nothing_is_proposed() -> None:
    assert age.propose(_context(_three(), settings=_settings(0))) == (None, [], [])


def test_all_units_younger_gives_the_next_expiry() -> None:
    view = _view(_unit("app/0"), _unit("app/1"), born={"app/0": -3600, "app/1": -7200})
    first = min(("app/0", -3600), ("app/1", -7200), key=lambda nb: _expiry(*nb))

    assert age.propose(_context(view)) == (
        None,
        [core.Upcoming(core.AGE, _expiry(*first), f"{first[0]} reaches max-age")],
        [],
    )


@pytest.mark.parametrize(
    ("last", "interval", "allowed"),
    [
        (-300, None, 300),
        (-1, None, 599),
        (-300, 3600, 3300),
    ],
)
def test_pacing_holds_the_next_one_until_an_interval_after_the_last(
    last: float, interval: int | None, allowed: float
) -> None:
    own = () if interval is None else (("app", policies.Overrides(interval=interval)),)
    context = _context(
        _three(), settings=_settings(policies=own), last_voluntary={"app": _at(last)}
    )

    assert age.propose(context) == (
        None,
        [
            core.Upcoming(core.AGE, _at(allowed), "app/1 is 3d old, over max-age"),
            core.Upcoming(core.AGE, _expiry("app/2", 0), "app/2 reaches max-age"),
        ],
        [],
    )


@pytest.mark.parametrize("last", [-600, -601, -DAY])
def test_pacing_lets_it_go_an_interval_after_the_last(last: float) -> None:
    proposal, _, _ = age.propose(_context(_three(), last_voluntary={"app": _at(last)}))

    assert proposal is not None
    assert proposal.victim == "app/1"


def test_pacing_is_per_application() -> None:
    proposal, _, _ = age.propose(_context(_three(), last_voluntary={"other": _at(-1)}))

    assert proposal is not None


# -- in the plan ------------------------------------------------------------------------------


def _plan(view: model_view.ModelView, **facts: Any) -> planner.TargetPlan:
    plan = planner.make_plan(
        view, _settings(), core.Facts(now=T0, agent_started=_at(-DAY), **facts)
    )
    target = plan.get("app")
    assert target is not None
    return target


AGED = core.Proposal(
    core.AGE, "app", "app/1", "app/1 is 3d old, over max-age", _expiry("app/1", -3 * DAY)
)


def test_plan_retires_the_oldest() -> None:
    target = _plan(_three())

    assert target.proposals == (AGED,)
    assert target.holding == ()


def test_plan_age_waits_for_every_unit_healthy() -> None:
    target = _plan(_three(app_2={"workload_status": "maintenance", "agent_status": "executing"}))

    assert target.proposals == ()
    assert target.holding == (
        core.Gate(gates.HEALTH, True, "2 of 3 units healthy; voluntary work waits for all"),
    )


def test_plan_age_goes_with_enough_healthy_under_min_healthy() -> None:
    view = _three(app_2={"workload_status": "maintenance", "agent_status": "executing"})
    settings = _settings(policies=(("app", policies.Overrides(min_healthy=60)),))

    plan = planner.make_plan(view, settings, core.Facts(now=T0, agent_started=_at(-DAY)))

    target = plan.get("app")
    assert target is not None
    assert target.proposals == (AGED,)


def test_plan_age_waits_while_paused() -> None:
    target = _plan(_three(), paused=True)

    assert target.proposals == ()
    assert target.holding == (core.Gate(gates.PAUSED, True, "paused"),)


def test_plan_lists_the_next_expiry() -> None:
    view = _view(_unit("app/0"), born={"app/0": -3600})

    target = _plan(view)

    assert target.proposals == ()
    assert target.upcoming == (
        core.Upcoming(core.AGE, _expiry("app/0", -3600), "app/0 reaches max-age"),
    )

"""Trigger `heal`: a unit broken for `heal-after` is replaced, unless too many are broken."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from tests.unit.model_builders import T0
from tests.unit.model_builders import at as _at
from tests.unit.model_builders import unit as _unit
from tests.unit.model_builders import view as _view
from whirlwind import model as model_view
from whirlwind import planner, policies, policy
from whirlwind import settings as settings_mod
from whirlwind.planner import core, gates, heal, health

ERROR = {"workload_status": "error", "workload_message": "hook failed"}


def _settings(**overrides: Any) -> settings_mod.AgentSettings:
    values: dict[str, Any] = {"services": ("app",)}
    values.update(overrides)
    return imb.make_settings(pathlib.Path("/nonexistent"), **values)


def _broken(**since: float) -> dict[str, health.Watch]:
    """Watches of units broken since the given seconds (app_0=10 -> app/0 since _at(10))."""
    return {
        key.replace("_", "/"): health.Watch(None, _at(at), "hook failed")
        for key, at in since.items()
    }


def _units(count: int, broken: set[int]) -> list[model_view.UnitState]:
    return [_unit(f"app/{n}", **(ERROR if n in broken else {})) for n in range(count)]


def _propose(
    units: list[model_view.UnitState],
    watches: dict[str, health.Watch],
    now: float,
    settings: settings_mod.AgentSettings | None = None,
    busy: tuple[str, ...] = (),
) -> tuple[core.Proposal | None, list[core.Upcoming], list[str]]:
    facts = core.Facts(now=_at(now), agent_started=T0, watches=watches, busy_units=busy)
    context = core.make_context("app", _view(*units), settings or _settings(), facts)
    return heal.propose(context, core.get_counts(context))


def _what(name: str, since: str = "00:00:10") -> str:
    return f"{name} broken since {since} UTC (hook failed)"


# -- when ----------------------------------------------------------------------------------


@pytest.mark.parametrize("now", [10, 300, 609])
def test_heal_waits_for_heal_after(now: float) -> None:
    result = _propose(_units(3, {0}), _broken(app_0=10), now=now)

    assert result == (None, [core.Upcoming(core.HEAL, _at(610), _what("app/0"))], [])


@pytest.mark.parametrize("now", [610, 611, 10_000])
def test_heal_is_proposed_once_broken_for_heal_after(now: float) -> None:
    result = _propose(_units(3, {0}), _broken(app_0=10), now=now)

    assert result == (core.Proposal(core.HEAL, "app", "app/0", _what("app/0"), _at(610)), [], [])


@pytest.mark.parametrize(
    ("settings", "due"),
    [
        (_settings(heal_after=60), 70),
        (_settings(heal_after=0), 10),
        (_settings(policies=(("app", policies.Overrides(heal_after=120)),)), 130),
    ],
)
def test_heal_after_is_the_policys(settings: settings_mod.AgentSettings, due: float) -> None:
    early = _propose(_units(3, {0}), _broken(app_0=10), now=due - 1, settings=settings)
    on_time = _propose(_units(3, {0}), _broken(app_0=10), now=due, settings=settings)

    assert early[0] is None
    assert early[1] == [core.Upcoming(core.HEAL, _at(due), _what("app/0"))]
    assert on_time[0] == core.Proposal(core.HEAL, "app", "app/0", _what("app/0"), _at(due))


@pytest.mark.parametrize(
    "settings",
    [_settings(heal=False), _settings(policies=(("app", policies.Overrides(heal=False)),))],
)
def test_heal_off_proposes_nothing(settings: settings_mod.AgentSettings) -> None:
    assert _propose(_units(3, {0}), _broken(app_0=10), now=10_000, settings=settings) == (
        None,
        [],
        [],
    )


def test_a_unit_between_two_errors_is_still_healed() -> None:
    # Juju retries the failed hook: the unit shows executing, the tracker keeps its clock.
    units = [_unit("app/0", workload_status="maintenance", agent_status="executing")]
    units += _units(3, set())[1:]

    proposal, _, _ = _propose(units, _broken(app_0=10), now=610)

    assert proposal == core.Proposal(core.HEAL, "app", "app/0", _what("app/0"), _at(610))


def test_nothing_to_heal_without_a_broken_watch() -> None:
    # An error the tracker has not seen yet has no clock: nothing is due.
    assert _propose(_units(3, {0}), {}, now=10_000) == (None, [], [])
    assert _propose(_units(3, set()), {"app/1": health.Watch(_at(0))}, now=10_000) == (
        None,
        [],
        [],
    )


# -- which ---------------------------------------------------------------------------------


def test_the_unit_broken_longest_is_healed_first() -> None:
    units = _units(5, {1, 3})

    proposal, _, _ = _propose(units, _broken(app_1=100, app_3=50), now=1000)

    assert proposal is not None
    assert (proposal.victim, proposal.due) == ("app/3", _at(650))
    assert proposal.reason == _what("app/3", "00:00:50")


def test_the_longest_broken_decides_the_upcoming_heal() -> None:
    _, upcoming, _ = _propose(_units(5, {1, 3}), _broken(app_1=100, app_3=50), now=60)

    assert upcoming == [core.Upcoming(core.HEAL, _at(650), _what("app/3", "00:00:50"))]


def test_busy_units_are_not_healed() -> None:
    proposal, _, _ = _propose(
        _units(5, {1, 3}), _broken(app_1=100, app_3=50), now=1000, busy=("app/3",)
    )

    assert proposal is not None
    assert proposal.victim == "app/1"
    assert _propose(_units(3, {0}), _broken(app_0=10), now=1000, busy=("app/0",)) == (
        None,
        [],
        [],
    )


# -- mass failure ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "broken", "limit", "note"),
    [
        (4, {0, 1, 2}, 0.5, "mass failure: 3 of 4 units broken (more than 50%): not healing"),
        (3, {0, 1}, 0.5, "mass failure: 2 of 3 units broken (more than 50%): not healing"),
        (4, {0, 1}, 0.25, "mass failure: 2 of 4 units broken (more than 25%): not healing"),
        (4, {0, 1, 2, 3}, 0.75, "mass failure: 4 of 4 units broken (more than 75%): not healing"),
    ],
)
def test_mass_failure_heals_nothing_and_says_why(
    count: int, broken: set[int], limit: float, note: str
) -> None:
    watches = _broken(**{f"app_{n}": n for n in broken})

    result = _propose(
        _units(count, broken), watches, now=10_000, settings=_settings(heal_max_unhealthy=limit)
    )

    assert result == (None, [], [note])


@pytest.mark.parametrize(
    ("count", "broken", "limit"),
    [
        (4, {0, 1}, 0.5),  # exactly at the limit: not more than it
        (2, {0}, 0.5),
        (4, {0}, 0.25),
        (4, {0, 1, 2}, 0.75),
        (1, {0}, 1.0),
        (10, {0, 1, 2, 3, 4}, 0.5),
    ],
)
def test_at_or_below_the_limit_heals(count: int, broken: set[int], limit: float) -> None:
    watches = _broken(**{f"app_{n}": 10 + n for n in broken})

    proposal, _, notes = _propose(
        _units(count, broken), watches, now=10_000, settings=_settings(heal_max_unhealthy=limit)
    )

    assert proposal is not None
    assert proposal.victim == "app/0"
    assert notes == []


def test_healing_starts_again_once_below_the_limit() -> None:
    watches = _broken(app_0=10, app_1=20, app_2=30)
    during = _propose(_units(4, {0, 1, 2}), watches, now=1000)
    # app/0 recovered on its own: the tracker dropped its watch.
    del watches["app/0"]
    after = _propose(_units(4, {1, 2}), watches, now=1000)

    assert during[0] is None
    assert during[2] == ["mass failure: 3 of 4 units broken (more than 50%): not healing"]
    assert after == (
        core.Proposal(core.HEAL, "app", "app/1", _what("app/1", "00:00:20"), _at(620)),
        [],
        [],
    )


def test_dying_units_do_not_count_towards_mass_failure() -> None:
    # 2 broken of 4 live (the dying unit is not live): at the limit, heals.
    units = [*_units(4, {0, 1}), _unit("app/4", life="dying")]

    proposal, _, notes = _propose(units, _broken(app_0=10, app_1=20), now=1000)

    assert proposal is not None
    assert (proposal.victim, notes) == ("app/0", [])


def test_units_broken_by_condition_count_even_without_a_watch_yet() -> None:
    # app/1 and app/2 are in error but not tracked yet: 3 of 4 broken is mass failure.
    proposal, _, notes = _propose(_units(4, {0, 1, 2}), _broken(app_0=10), now=1000)

    assert proposal is None
    assert notes == ["mass failure: 3 of 4 units broken (more than 50%): not healing"]


@pytest.mark.parametrize(
    ("live", "broken", "limit", "expected"),
    [
        (0, 0, 0.5, False),
        (4, 0, 0.5, False),
        (4, 2, 0.5, False),
        (4, 3, 0.5, True),
        (3, 2, 0.5, True),
        (1, 1, 1.0, False),
    ],
)
def test_is_mass_failure(live: int, broken: int, limit: float, expected: bool) -> None:
    facts = core.Facts(now=T0, agent_started=T0)
    context = core.make_context(
        "app", _view(_unit("app/0")), _settings(heal_max_unhealthy=limit), facts
    )

    counts = core.Counts(live=live, broken=broken, healthy=live - broken)

    assert heal.is_mass_failure(context, counts) is expected


# -- in the plan -----------------------------------------------------------------------------


def _plan(**facts: Any) -> planner.TargetPlan:
    values: dict[str, Any] = {
        "now": _at(1000),
        "agent_started": T0,
        "watches": _broken(app_0=10),
    }
    values.update(facts)
    plan = planner.make_plan(_view(*_units(3, {0})), _settings(), core.Facts(**values))
    target = plan.get("app")
    assert target is not None
    return target


HEAL = core.Proposal(core.HEAL, "app", "app/0", _what("app/0"), _at(610))


def test_plan_heals_when_due() -> None:
    target = _plan()

    assert target.proposals == (HEAL,)
    # The health gate holds voluntary work: a unit is broken.
    assert core.Gate(gates.HEALTH, True, "2 of 3 units healthy; voluntary work waits for all") in (
        target.gates
    )


def test_plan_heals_while_paused() -> None:
    target = _plan(paused=True)

    assert target.proposals == (HEAL,)
    assert core.Gate(gates.PAUSED, True, "paused") in target.gates


@pytest.mark.parametrize(
    ("facts", "gate"),
    [
        (
            {"breakers": {"app": policy.BreakerState(3, "boom")}},
            core.Gate(gates.BREAKER, True, "3 consecutive failures; last: boom"),
        ),
        ({"in_flight": ("app",)}, core.Gate(gates.IN_FLIGHT, True, "a replacement is in flight")),
    ],
)
def test_plan_does_not_heal_while_blocked(facts: dict[str, Any], gate: core.Gate) -> None:
    target = _plan(**facts)

    assert target.proposals == ()
    assert gate in target.holding


def test_plan_heals_under_a_breaker_below_its_limit() -> None:
    target = _plan(breakers={"app": policy.BreakerState(2, "boom")})

    assert target.proposals == (HEAL,)
    assert core.Gate(gates.BREAKER, False, "2 consecutive failures; last: boom") in target.gates


def test_plan_in_flight_elsewhere_does_not_hold_this_heal() -> None:
    assert _plan(in_flight=("other",)).proposals == (HEAL,)


def test_plan_lists_the_upcoming_heal() -> None:
    target = _plan(now=_at(100))

    assert target.proposals == ()
    assert target.upcoming == (core.Upcoming(core.HEAL, _at(610), _what("app/0")),)

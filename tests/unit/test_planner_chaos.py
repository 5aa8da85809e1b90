"""Trigger `chaos`: ticks after arming, the draw, the victim, the proposal and the next tick."""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from whirlwind import model as model_view
from whirlwind import policies
from whirlwind.chaos import arming as arming_mod
from whirlwind.chaos import draws, wrench
from whirlwind.planner import chaos, core

T0 = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.timezone.utc)
ARMED = arming_mod.Arming(True, T0 + datetime.timedelta(hours=3), "ctl as root", T0, False)
SEED = 1234
INTERVAL = 600  # the application's (imb.make_settings)


def _at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def _unit(number: int, machine: str | None = None, **fields: Any) -> model_view.UnitState:
    values: dict[str, Any] = {
        "application": "app",
        "machine_id": machine if machine is not None else str(number),
        "workload_status": "active",
        "agent_status": "idle",
    }
    values.update(fields)
    return model_view.UnitState(name=f"app/{number}", **values)


def _view(
    units: list[model_view.UnitState],
    leader: str = "app/0",
    storage: frozenset[str] = frozenset(),
    extra: tuple[model_view.UnitState, ...] = (),
    machines: tuple[str, ...] = (),
) -> model_view.ModelView:
    view = model_view.ModelView()
    view.model_seen = True
    view.model_name = "prod-web"
    for unit in [*units, *extra]:
        view.applications.setdefault(
            unit.application, model_view.ApplicationState(name=unit.application)
        )
        view.units[unit.name] = unit
        assert unit.machine_id is not None
        view.machines[unit.machine_id] = model_view.MachineState(id=unit.machine_id)
    for machine in machines:
        view.machines[machine] = model_view.MachineState(id=machine)
    view.leaders = frozenset({leader})
    view.storage_units = storage
    return view


def _plan(
    policy: dict[str, Any],
    now: float,
    *,
    view: model_view.ModelView | None = None,
    arming: arming_mod.Arming = ARMED,
    recorded: tuple[draws.Draw, ...] = (),
    seed: int = SEED,
    storage: str | None = None,
    **settings: Any,
) -> chaos.ChaosPlan:
    own: dict[str, Any] = {"chaos": policy}
    if storage is not None:
        own["storage"] = storage
    overrides = policies.parse_policies({"app": own}, ["app"])
    values: dict[str, Any] = {"services": ("app",), "policies": tuple(overrides.items())}
    values.update(settings)
    agent_settings = imb.make_settings(pathlib.Path("/nonexistent"), **values)
    facts = core.Facts(now=_at(now), agent_started=_at(-3600))
    the_view = view if view is not None else _view([_unit(n) for n in range(3)])
    context = core.make_context("app", the_view, agent_settings, facts)
    return chaos.plan(context, arming, chaos.ChaosFacts(seed, recorded))


KILL = {"kinds": ["kill-unit"], "chance": 1}


def test_not_armed_no_tick_no_draw() -> None:
    result = _plan(KILL, 600, arming=arming_mod.Arming())

    assert (result.draw, result.proposal, result.upcoming) == (None, None, None)
    assert [g.name for g in result.holding] == ["armed"]


def test_not_opted_in_only_says_so() -> None:
    overrides = policies.parse_policies({"app": {}}, ["app"])
    agent_settings = imb.make_settings(
        pathlib.Path("/nonexistent"), services=("app",), policies=tuple(overrides.items())
    )
    facts = core.Facts(now=_at(600), agent_started=T0)
    context = core.make_context("app", _view([_unit(0), _unit(1)]), agent_settings, facts)

    result = chaos.plan(context, ARMED, chaos.ChaosFacts(SEED))

    assert (result.draw, result.proposal, result.upcoming) == (None, None, None)
    assert [g.name for g in result.holding] == ["opted-in"]


@pytest.mark.parametrize(("now", "tick"), [(0, 1), (599, 1), (600, 2), (1199, 2)])
def test_next_tick_is_the_next_interval_after_arming(now: float, tick: int) -> None:
    result = _plan({"kinds": ["kill-unit"], "chance": 0}, now)

    assert result.upcoming == core.Upcoming(
        chaos.CHAOS, _at(INTERVAL * tick), f"chaos tick {tick} of app (chance 0)"
    )


def test_arming_never_injects_at_once() -> None:
    result = _plan(KILL, 0)

    assert (result.draw, result.proposal) == (None, None)


def test_chance_one_injects_at_the_first_tick() -> None:
    result = _plan(KILL, 600)

    assert result.holding == ()
    assert result.proposal is not None
    assert result.draw is not None
    proposal, draw = result.proposal, result.draw
    assert proposal.unit in ("app/1", "app/2")  # never the leader while others can go
    assert (proposal.kind, proposal.unit, proposal.machine) == (
        "kill-unit",
        draw.victim,
        proposal.unit[-1],
    )
    assert (proposal.tick, proposal.due, proposal.duration, proposal.dry_run) == (
        1,
        _at(600),
        None,
        False,
    )
    assert proposal.reason.startswith("chaos tick 1 (draw 0.")
    assert proposal.reason.endswith(
        f"< chance 1): kill-unit on {proposal.unit} (machine "
        f"{proposal.machine}), drawn among app/1, app/2"
    )
    assert draw == draws.Draw(
        service="app",
        tick=1,
        armed_at=T0,
        at=_at(600),
        rule="chance 1",
        position=0,
        value=draw.value,
        inject=True,
        kinds=("kill-unit",),
        kind="kill-unit",
        candidates=("app/1", "app/2"),
        victim=proposal.unit,
        until=None,
    )
    assert result.upcoming == core.Upcoming(
        chaos.CHAOS, _at(1200), "chaos tick 2 of app (chance 1)"
    )
    assert draws.find_mismatches(SEED, [draw]) == []


def test_a_decided_tick_is_not_decided_again() -> None:
    first = _plan(KILL, 600)
    assert first.draw is not None

    again = _plan(KILL, 700, recorded=(first.draw,))

    assert (again.draw, again.proposal) == (None, None)
    assert again.upcoming is not None
    assert again.upcoming.at == _at(1200)


def test_a_held_tick_is_decided_when_the_guard_lets_it_within_its_interval() -> None:
    sick = _view([_unit(0), _unit(1, workload_status="error"), _unit(2)])

    held = _plan(KILL, 600, view=sick)
    later = _plan(KILL, 900)

    assert (held.draw, held.proposal) == (None, None)
    assert [g.name for g in held.holding] == ["health"]
    assert held.upcoming is not None
    assert held.upcoming.at == _at(1200)
    assert later.draw is not None
    assert (later.draw.tick, later.draw.at) == (1, _at(900))


def test_chance_zero_records_the_draw_without_injecting() -> None:
    result = _plan({"kinds": ["kill-unit"], "chance": 0}, 600)

    assert result.proposal is None
    assert result.draw is not None
    assert (result.draw.inject, result.draw.kind, result.draw.victim) == (False, None, None)
    assert result.notes == (
        f"chaos tick 1: draw {result.draw.value:.4f} >= chance 0: no injection",
    )


def _run(policy: dict[str, Any], ticks: int, seed: int = SEED, **kwargs: Any) -> list[draws.Draw]:
    """The engine's part: look at every tick time, record every draw the plan gives."""
    recorded: list[draws.Draw] = []
    for tick in range(1, ticks + 1):
        result = _plan(policy, INTERVAL * tick, recorded=tuple(recorded), seed=seed, **kwargs)
        if result.draw is not None:
            recorded.append(result.draw)
    return recorded


def test_pattern_injects_on_the_first_k_of_every_n_eligible_ticks() -> None:
    recorded = _run({"kinds": ["kill-unit"], "pattern": "2/3", "max-per-day": 100}, 9)

    assert [d.inject for d in recorded] == [True, True, False] * 3
    assert [d.position for d in recorded] == list(range(9))


def test_max_per_day_stops_draws_and_pattern_positions() -> None:
    recorded = _run({"kinds": ["kill-unit"], "pattern": "1/2", "max-per-day": 2}, 8)

    # Ticks 1..3 decide (inject, skip, inject); two injections in 24 h then hold the rest,
    # and held ticks take no pattern position.
    assert [(d.tick, d.inject) for d in recorded] == [(1, True), (2, False), (3, True)]


def test_an_injection_in_effect_holds_the_next_ticks() -> None:
    policy = {"kinds": ["slow-network"], "chance": 1, "duration": "25m", "max-per-day": 100}

    recorded = _run(policy, 8)

    # Each slow-network lasts 25 minutes: ticks 10 minutes apart are held while it does.
    assert [d.tick for d in recorded] == [1, 4, 7]
    assert all(d.until == d.at + datetime.timedelta(minutes=25) for d in recorded)


def test_same_seed_same_sequence_and_replay_matches() -> None:
    policy = {"kinds": ["kill-unit", "slow-network", "stop-agent"], "chance": 0.5,
              "max-per-day": 100, "duration": "1m"}  # fmt: skip

    first = _run(policy, 17)
    second = _run(policy, 17)
    other = _run(policy, 17, seed=SEED + 1)

    assert first == second
    assert [(d.inject, d.kind, d.victim) for d in first] != [
        (d.inject, d.kind, d.victim) for d in other
    ]
    assert draws.replay(SEED, first) == first
    assert draws.find_mismatches(SEED + 1, first) != []


def test_victims_are_drawn_among_all_candidates() -> None:
    view = _view([_unit(n) for n in range(5)])
    victims = {
        (_plan(KILL, 600, view=view, seed=seed).proposal or pytest.fail("no proposal")).unit
        for seed in range(40)
    }

    assert victims == {"app/1", "app/2", "app/3", "app/4"}


@pytest.mark.parametrize(
    ("kinds", "view", "storage", "candidates"),
    [
        # Storage keeps kill-unit and kill-machine off a unit, not slow-network.
        (["kill-unit"], _view([_unit(0), _unit(1), _unit(2)], storage=frozenset({"app/1"})),
         None, ("app/2",)),
        (["slow-network"], _view([_unit(0), _unit(1), _unit(2)], storage=frozenset({"app/1"})),
         None, ("app/1", "app/2")),
        (["kill-machine"], _view([_unit(0), _unit(1), _unit(2)], storage=frozenset({"app/1"})),
         "allow", ("app/1", "app/2")),
        # A machine shared with another application's unit, or hosting a container: never.
        (["stop-agent"], _view([_unit(0), _unit(1), _unit(2)],
                               extra=(model_view.UnitState("db/0", "db", machine_id="2"),)),
         None, ("app/1",)),
        (["stop-agent"], _view([_unit(0), _unit(1), _unit(2)], machines=("1/lxd/0",)),
         None, ("app/2",)),
        # The leader only when no other unit can take it.
        (["kill-unit"], _view([_unit(0), _unit(1)], storage=frozenset({"app/1"})),
         None, ("app/0",)),
    ],
)  # fmt: skip
def test_candidates(
    kinds: list[str],
    view: model_view.ModelView,
    storage: str | None,
    candidates: tuple[str, ...],
) -> None:
    policy = {"kinds": kinds, "chance": 1, "min-healthy": "0%"}

    result = _plan(policy, 600, view=view, storage=storage)

    assert result.draw is not None
    assert result.draw.candidates == candidates


def test_no_candidate_holds_with_the_reasons() -> None:
    view = _view([_unit(0, machine="5"), _unit(1, machine="5")])

    result = _plan(KILL, 600, view=view)

    assert result.draw is None
    assert [(g.name, g.detail) for g in result.holding] == [
        ("victims", "no unit can take it (app/0 shares its machine; app/1 shares its machine)")
    ]


@pytest.mark.parametrize(
    ("policy", "duration", "delay", "point", "effect"),
    [
        ({"kinds": ["slow-network"], "chance": 1, "delay": "300ms"}, 600, 300, None,
         ", for 10m, delay 300ms"),
        ({"kinds": ["stop-agent"], "chance": 1, "duration": "90s"}, 90, None, None, ", for 90s"),
        ({"kinds": ["wrench"], "chance": 1, "wrench": "storageprovisioner/DetachVolume"}, 600,
         None, "storageprovisioner/DetachVolume",
         ", for 10m, wrench storageprovisioner/DetachVolume"),
        ({"kinds": ["kill-machine"], "chance": 1}, None, None, None, ""),
    ],
)  # fmt: skip
def test_timed_kinds_carry_duration_delay_and_point(
    policy: dict[str, Any],
    duration: int | None,
    delay: int | None,
    point: str | None,
    effect: str,
) -> None:
    result = _plan(policy, 600)

    proposal = result.proposal
    assert proposal is not None
    assert (proposal.duration, proposal.delay_ms) == (duration, delay)
    assert proposal.wrench == (wrench.get_point(point) if point else None)
    assert f"(machine {proposal.machine}{effect})" in proposal.reason
    assert result.draw is not None
    expected_until = _at(600 + duration) if duration is not None else None
    assert result.draw.until == expected_until


@pytest.mark.parametrize(
    ("arming", "settings", "dry_run"),
    [
        (ARMED, {}, False),
        (dataclasses.replace(ARMED, dry_run=True), {}, True),
        (ARMED, {"dry_run": True}, True),
    ],
)
def test_dry_run_from_the_arming_or_the_settings(
    arming: arming_mod.Arming, settings: dict[str, Any], dry_run: bool
) -> None:
    result = _plan(KILL, 600, arming=arming, **settings)

    assert result.proposal is not None
    assert result.proposal.dry_run is dry_run


def test_chaos_interval_overrides_the_applications() -> None:
    result = _plan({**KILL, "interval": "1h"}, 600)

    assert result.draw is None
    assert result.upcoming is not None
    assert result.upcoming.at == _at(3600)


def test_no_tick_after_the_arming_ends() -> None:
    short = dataclasses.replace(ARMED, until=_at(1000))

    result = _plan(KILL, 700, arming=short)

    assert result.upcoming is None
    assert result.notes == ("chaos: no further tick before the arming ends at 12:16 UTC",)


def test_a_new_arming_counts_its_own_ticks_and_positions() -> None:
    policy = {"kinds": ["kill-unit"], "pattern": "1/2", "max-per-day": 100}
    old = _run(policy, 3, arming=dataclasses.replace(ARMED, until=_at(2000)))
    rearmed = dataclasses.replace(ARMED, at=_at(1900), until=_at(9000))

    result = _plan(policy, 2500, recorded=tuple(old), arming=rearmed)

    assert [d.inject for d in old] == [True, False, True]
    assert result.draw is not None
    assert (result.draw.tick, result.draw.position, result.draw.inject) == (1, 0, True)
    assert result.draw.armed_at == _at(1900)

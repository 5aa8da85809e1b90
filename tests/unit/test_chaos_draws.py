"""Chaos draws: seeded chance, k/n pattern, ticks, the rolling max-per-day, and replay."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from whirlwind.chaos import draws
from whirlwind.chaos import policy as chaos_policy

T0 = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.timezone.utc)
OPTIONS = {"kill-unit": ["app/1", "app/2", "app/3"], "slow-network": ["app/1", "app/2"]}


def _at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def _chance(value: float, *kinds: str) -> chaos_policy.ChaosPolicy:
    return chaos_policy.ChaosPolicy(kinds=kinds or ("kill-unit",), chance=value)


def _pattern(k: int, n: int) -> chaos_policy.ChaosPolicy:
    return chaos_policy.ChaosPolicy(kinds=("kill-unit",), pattern=chaos_policy.Pattern(k, n))


def test_uniform_is_fixed_by_seed_service_tick_and_purpose() -> None:
    first = draws.uniform(7, "web", 3, draws.INJECT)

    assert draws.uniform(7, "web", 3, draws.INJECT) == first
    others = {
        draws.uniform(8, "web", 3, draws.INJECT),
        draws.uniform(7, "db", 3, draws.INJECT),
        draws.uniform(7, "web", 4, draws.INJECT),
        draws.uniform(7, "web", 3, draws.VICTIM),
    }
    assert first not in others
    assert len(others) == 4
    assert all(0 <= v < 1 for v in (first, *others))


def test_uniform_is_the_same_on_every_python() -> None:
    # The first 8 bytes of HMAC-SHA256("42", "web:1:inject") over 2**64, as computed by
    # `printf web:1:inject | openssl dgst -sha256 -hmac 42`: a constant, not a random stream.
    assert draws.uniform(42, "web", 1, "inject") == 0.1570301779661066


@pytest.mark.parametrize(
    ("chance", "expected"),
    [(0.0, 0), (1.0, 1000), (0.1, 86), (0.5, 506)],
)
def test_chance_injects_about_that_share(chance: float, expected: int) -> None:
    decisions = [
        draws.decide(5, "web", tick, 0, _chance(chance), OPTIONS) for tick in range(1, 1001)
    ]

    assert sum(d.inject for d in decisions) == expected


def test_chance_does_not_depend_on_other_applications_or_positions() -> None:
    alone = [draws.decide(5, "web", t, 0, _chance(0.3), OPTIONS).inject for t in range(1, 50)]
    # Other applications drawing in between, and other positions, change nothing for `web`.
    for tick in range(1, 50):
        draws.decide(5, "db", tick, tick, _chance(0.9), OPTIONS)
    again = [draws.decide(5, "web", t, t * 3, _chance(0.3), OPTIONS).inject for t in range(1, 50)]

    assert again == alone


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [
        (1, 1, [True] * 6),
        (2, 3, [True, True, False, True, True, False]),
        (1, 3, [True, False, False, True, False, False]),
        (3, 3, [True] * 6),
        (1, 1000, [True, False, False, False, False, False]),
    ],
)
def test_pattern_injects_on_the_first_k_of_every_n_positions(
    k: int, n: int, expected: list[bool]
) -> None:
    # Tick numbers do not matter, only the position among eligible ticks.
    decisions = [
        draws.decide(5, "web", 100 + 7 * pos, pos, _pattern(k, n), OPTIONS) for pos in range(6)
    ]

    assert [d.inject for d in decisions] == expected
    assert all(d.value is None for d in decisions)


@pytest.mark.parametrize(
    ("kinds", "options", "expected_kinds"),
    [
        (("kill-unit", "slow-network"), OPTIONS, {"kill-unit", "slow-network"}),
        (("kill-unit", "slow-network"), {"kill-unit": [], "slow-network": ["app/2"]},
         {"slow-network"}),
        (("kill-unit",), OPTIONS, {"kill-unit"}),
    ],
)  # fmt: skip
def test_kind_and_victim_come_from_the_draw_among_candidates(
    kinds: tuple[str, ...], options: dict[str, list[str]], expected_kinds: set[str]
) -> None:
    decisions = [
        draws.decide(9, "web", tick, 0, _chance(1.0, *kinds), options) for tick in range(1, 200)
    ]

    assert {d.kind for d in decisions} == expected_kinds
    assert all(d.kind is not None and d.victim in options[d.kind] for d in decisions)
    assert all(d.kind is not None and d.candidates == tuple(options[d.kind]) for d in decisions)
    assert {d.victim for d in decisions} == {u for k in expected_kinds for u in options[k]}


def test_no_candidate_no_injection() -> None:
    decision = draws.decide(9, "web", 1, 0, _chance(1.0), {"kill-unit": []})

    assert decision == draws.Decision(False, decision.value)


@pytest.mark.parametrize(
    ("interval", "now", "expected"),
    [(600, -1, 0), (600, 0, 0), (600, 599, 0), (600, 600, 1), (600, 1799, 2), (60, 3600, 60)],
)
def test_current_tick_counts_intervals_since_arming(
    interval: int, now: float, expected: int
) -> None:
    tick = draws.current_tick(T0, interval, _at(now))

    assert tick == expected
    assert draws.tick_at(T0, interval, tick) <= _at(now) or tick == 0


@pytest.mark.parametrize(
    ("times", "now", "most", "count", "allowed"),
    [
        ([], 0, 4, 0, None),
        ([-3600, -60], 0, 4, 2, None),
        ([-86400, -3600], 0, 2, 1, None),  # exactly 24 h ago has left the window
        ([-7200, -3600], 0, 2, 2, 86400 - 7200),
        ([-9000, -7200, -3600], 0, 2, 3, 86400 - 7200),
        ([-80000, -100, 10], 0, 1, 2, 86400 - 100),  # a time after now does not count yet
    ],
)
def test_max_per_day_is_a_rolling_24_hours(
    times: list[float], now: float, most: int, count: int, allowed: float | None
) -> None:
    moments = [_at(t) for t in times]

    assert draws.count_recent(moments, _at(now)) == count
    expected = None if allowed is None else _at(allowed)
    assert draws.next_allowed(moments, _at(now), most) == expected


def _record(seed: int, policy: chaos_policy.ChaosPolicy, ticks: range) -> list[draws.Draw]:
    """Draws as the planner records them, one per tick, positions in order."""
    found = []
    for position, tick in enumerate(ticks):
        decision = draws.decide(seed, "web", tick, position, policy, OPTIONS)
        found.append(
            draws.Draw(
                service="web",
                tick=tick,
                armed_at=T0,
                at=_at(600 * tick),
                rule=policy.describe_rule(),
                position=position,
                value=decision.value,
                inject=decision.inject,
                kinds=tuple(k for k in policy.kinds if OPTIONS.get(k)),
                kind=decision.kind,
                candidates=decision.candidates,
                victim=decision.victim,
            )
        )
    return found


@pytest.mark.parametrize("policy", [_chance(0.4, "kill-unit", "slow-network"), _pattern(2, 3)])
def test_replay_with_the_same_seed_gives_the_same_draws(policy: chaos_policy.ChaosPolicy) -> None:
    recorded = _record(11, policy, range(1, 40))

    assert draws.replay(11, recorded) == recorded
    assert draws.find_mismatches(11, recorded) == []
    assert any(d.inject for d in recorded)
    assert not all(d.inject for d in recorded)


def test_replay_with_another_seed_says_where_it_differs() -> None:
    recorded = _record(11, _chance(0.4, "kill-unit", "slow-network"), range(1, 40))

    mismatches = draws.find_mismatches(12, recorded)

    assert mismatches
    assert all(m.startswith("web tick ") and ": recorded " in m for m in mismatches)


def test_replay_finds_a_tampered_victim() -> None:
    recorded = _record(11, _chance(1.0), range(1, 4))
    victim = recorded[1].victim
    other = next(u for u in OPTIONS["kill-unit"] if u != victim)
    tampered = [recorded[0], dataclasses.replace(recorded[1], victim=other), recorded[2]]

    mismatches = draws.find_mismatches(11, tampered)

    assert mismatches == [
        f"web tick 2: recorded kill-unit on {other}, replay gives kill-unit on {victim}"
    ]


def test_position_counts_this_arming_and_application_only() -> None:
    recorded = _record(11, _pattern(1, 2), range(1, 4))
    earlier = dataclasses.replace(recorded[0], armed_at=_at(-86400))
    other = dataclasses.replace(recorded[0], service="db")

    position = draws.get_position([*recorded, earlier, other], "web", T0)

    assert position == 3


def test_draw_json_round_trip() -> None:
    recorded = _record(11, _chance(1.0, "slow-network"), range(1, 3))
    timed = dataclasses.replace(recorded[0], until=_at(1200))

    for draw in (timed, recorded[1]):
        assert draws.Draw.from_state(draw.to_state()) == draw


@pytest.mark.parametrize(
    "state",
    [None, "x", {}, {"service": "web"}, {**_record(1, _chance(1.0), range(1, 2))[0].to_state(),
     "tick": "1"}, {**_record(1, _chance(1.0), range(1, 2))[0].to_state(), "value": 1.5}],
)  # fmt: skip
def test_malformed_draw_json_is_dropped(state: object) -> None:
    assert draws.Draw.from_state(state) is None

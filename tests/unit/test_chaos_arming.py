"""Arming chaos: confirm, duration, expiry, dry-run, its JSON and the charm's settings (pure)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from whirlwind.chaos import arming

T0 = datetime.datetime(2026, 11, 30, 13, 0, tzinfo=datetime.timezone.utc)
MODEL = "prod-web"


def _at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


ARMED = arming.Arming(True, _at(7200), "ctl as root", T0, False)


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [("2h", 7200), ("90s", 90), ("30m", 1800), ("24h", 86400), (600, 600), (" 1d ", 86400)],
)
def test_arm_for_a_duration(duration: Any, seconds: int) -> None:
    result = arming.arm(T0, duration, "ctl as root", False, MODEL, MODEL)

    assert result == arming.Arming(True, _at(seconds), "ctl as root", T0, False)
    assert result.is_armed(_at(seconds - 1))
    assert not result.is_armed(_at(seconds))


@pytest.mark.parametrize(
    ("confirm", "duration", "model", "controller", "message"),
    [
        ("prod", "2h", MODEL, False,
         "confirm must be the model's name exactly: got 'prod', the model is 'prod-web'"),
        ("Prod-Web", "2h", MODEL, False, "got 'Prod-Web', the model is 'prod-web'"),
        (" prod-web", "2h", MODEL, False, "got ' prod-web', the model is 'prod-web'"),
        ("", "2h", MODEL, False, "got '', the model is 'prod-web'"),
        (None, "2h", MODEL, False, "got None, the model is 'prod-web'"),
        ("", "2h", "", False, "the model's name is not known yet"),
        (MODEL, "", MODEL, False, "duration is required (for example 2h; at most 24h)"),
        (MODEL, None, MODEL, False, "duration is required"),
        (MODEL, "0", MODEL, False, "duration must be greater than 0, got '0'"),
        (MODEL, 0, MODEL, False, "duration must be greater than 0, got 0"),
        (MODEL, "25h", MODEL, False, "duration must be at most 24h, got '25h'"),
        (MODEL, "2d", MODEL, False, "duration must be at most 24h, got '2d'"),
        (MODEL, 86401, MODEL, False, "duration must be at most 24h, got 86401"),
        (MODEL, "soon", MODEL, False, "duration: 'soon' is not a duration"),
        (MODEL, True, MODEL, False, "duration: expected a duration"),
        (MODEL, "-5m", MODEL, False, "duration: '-5m' is not a duration"),
        ("controller", "2h", "controller", True,
         "this is the controller model: chaos is never armed there"),
    ],
)  # fmt: skip
def test_arming_is_refused_naming_the_problem(
    confirm: Any, duration: Any, model: str, controller: bool, message: str
) -> None:
    with pytest.raises(arming.ArmingError) as refused:
        arming.arm(T0, duration, "x", False, confirm, model, controller_model=controller)

    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("by", "result"),
    [("ctl as root", "ctl as root"), ("a\n  b", "a b"), ("", ""), ("x" * 200, "x" * 200)],
)
def test_by_is_one_line(by: str, result: str) -> None:
    assert arming.arm(T0, "1h", by, False, MODEL, MODEL).by == result


@pytest.mark.parametrize(("by", "message"), [("x" * 201, "at most 200"), (7, "by must be text")])
def test_bad_by_is_refused(by: Any, message: str) -> None:
    with pytest.raises(arming.ArmingError, match=message):
        arming.arm(T0, "1h", by, False, MODEL, MODEL)


def test_dry_run_must_be_a_bool() -> None:
    with pytest.raises(arming.ArmingError, match="dry-run must be true or false, got 'yes'"):
        arming.arm(T0, "1h", "", "yes", MODEL, MODEL)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "now", "armed"),
    [
        (arming.Arming(), T0, False),
        (ARMED, T0, True),
        (ARMED, _at(7199), True),
        (ARMED, _at(7200), False),  # the end is exclusive
        (arming.Arming(True, None, "x", T0), T0, False),  # never armed without an end
        (arming.Arming(False, _at(60), "x", T0), T0, False),
    ],
)
def test_is_armed(state: arming.Arming, now: datetime.datetime, armed: bool) -> None:
    assert state.is_armed(now) is armed


@pytest.mark.parametrize(
    ("state", "now", "result"),
    [
        (ARMED, _at(7199), ARMED),
        (ARMED, _at(7200), arming.Arming()),
        (arming.Arming(), _at(7200), arming.Arming()),
        (arming.Arming(True, None), T0, arming.Arming()),
    ],
)
def test_expire(state: arming.Arming, now: datetime.datetime, result: arming.Arming) -> None:
    assert arming.expire(state, now) == result


@pytest.mark.parametrize(
    ("state", "now", "text"),
    [
        (ARMED, None, "CHAOS ARMED until 15:00 UTC"),
        (ARMED, T0, "CHAOS ARMED until 15:00 UTC"),
        (ARMED, _at(7200), "chaos not armed"),  # expired
        (arming.Arming(True, _at(7200), dry_run=True), T0,
         "chaos armed (dry-run) until 15:00 UTC"),
        (arming.Arming(True, _at(86400)), T0, "CHAOS ARMED until 2026-12-01 13:00 UTC"),
        (arming.Arming(True, _at(19 * 3600)), T0, "CHAOS ARMED until 08:00 UTC"),
        (arming.Arming(), None, "chaos not armed"),
        (arming.Arming(True, None), None, "chaos not armed"),
        (arming.Arming(True, datetime.datetime(2026, 11, 30, 16, 0,
                                               tzinfo=datetime.timezone(datetime.timedelta(hours=1)))),
         T0, "CHAOS ARMED until 15:00 UTC"),  # shown in UTC
    ],
)  # fmt: skip
def test_describe(state: arming.Arming, now: datetime.datetime | None, text: str) -> None:
    assert state.describe(now) == text


@pytest.mark.parametrize(
    "state",
    [arming.Arming(), ARMED, arming.Arming(True, _at(60), "", None, True)],
)
def test_state_round_trip(state: arming.Arming) -> None:
    assert arming.Arming.from_state(state.to_state()) == state


def test_state_is_kebab_case_json() -> None:
    assert ARMED.to_state() == {
        "armed": True,
        "until": "2026-11-30T15:00:00+00:00",
        "by": "ctl as root",
        "at": "2026-11-30T13:00:00+00:00",
        "dry-run": False,
    }


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "armed",
        {"armed": False, "until": _at(60).isoformat()},
        {"armed": 1, "until": _at(60).isoformat()},  # only true is true
        {"armed": True},  # no end: not armed
        {"armed": True, "until": "tomorrow"},
        {"armed": True, "until": "2026-11-30T15:00:00"},  # no time zone
        {"armed": True, "until": _at(86401).isoformat(), "at": T0.isoformat()},  # over 24 h
        {"armed": True, "until": T0.isoformat(), "at": T0.isoformat()},  # ends as it starts
    ],
)
def test_malformed_or_off_state_is_not_armed(data: object) -> None:
    assert arming.Arming.from_state(data) == arming.Arming()


def test_malformed_fields_of_an_armed_state_fall_back_safely() -> None:
    data = {"armed": True, "until": _at(60).isoformat(), "by": 7, "at": "x", "dry-run": "yes"}

    assert arming.Arming.from_state(data) == arming.Arming(True, _at(60), "", None, False)


def test_by_read_back_is_one_bounded_line() -> None:
    data = {"armed": True, "until": _at(60).isoformat(), "by": "a\n b " + "x" * 300}

    assert arming.Arming.from_state(data).by == ("a b " + "x" * 300)[:200]


OTHER = arming.Arming(True, _at(3600), "whirlwind/0 action 9", _at(60), False)


@pytest.mark.parametrize(
    ("current", "seen", "given", "result"),
    [
        # The settings carry no arming: the agent's own stands.
        (ARMED, None, None, (ARMED, None)),
        # New in the settings: they win, and are remembered.
        (arming.Arming(), None, OTHER, (OTHER, OTHER)),
        (ARMED, OTHER, arming.Arming(), (arming.Arming(), arming.Arming())),
        # Unchanged since applied: a disarm by ctl is not undone by a reload.
        (arming.Arming(), OTHER, OTHER, (arming.Arming(), OTHER)),
        (ARMED, arming.Arming(), arming.Arming(), (ARMED, arming.Arming())),
    ],
)
def test_follow_settings(
    current: arming.Arming,
    seen: arming.Arming | None,
    given: arming.Arming | None,
    result: tuple[arming.Arming, arming.Arming | None],
) -> None:
    assert arming.follow_settings(current, seen, given) == result


@pytest.mark.parametrize(
    ("state", "now", "status"),
    [
        (ARMED, T0, {
            "chaos": "CHAOS ARMED until 15:00 UTC", "chaos-armed": True,
            "chaos-armed-until": "2026-11-30T15:00:00+00:00", "chaos-armed-by": "ctl as root",
            "chaos-armed-at": "2026-11-30T13:00:00+00:00", "chaos-dry-run": False,
        }),
        (ARMED, _at(7200), {
            "chaos": "chaos not armed", "chaos-armed": False, "chaos-armed-until": None,
            "chaos-armed-by": "", "chaos-armed-at": None, "chaos-dry-run": False,
        }),
    ],
)  # fmt: skip
def test_to_status(state: arming.Arming, now: datetime.datetime, status: dict[str, Any]) -> None:
    assert arming.to_status(state, now) == status

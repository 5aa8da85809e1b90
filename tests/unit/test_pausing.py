"""The pause switch: timed pauses, reasons, expiry, and its JSON (pure, time passed in)."""

from __future__ import annotations

import datetime

import pytest

from whirlwind import pausing

T0 = datetime.datetime(2026, 11, 30, 10, 0, tzinfo=datetime.timezone.utc)


def _at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def test_a_pause_without_duration_lasts_until_resumed() -> None:
    pause = pausing.pause(pausing.Pause(), T0)

    assert pause == pausing.Pause(True, T0, None, "")
    assert pause.is_paused(_at(365 * 86400))


def test_a_timed_pause_ends_by_itself() -> None:
    pause = pausing.pause(pausing.Pause(), T0, duration=7200, reason="release")

    assert pause.until == _at(7200)
    assert pause.is_paused(_at(7199))
    assert not pause.is_paused(_at(7200))
    assert pausing.expire(pause, _at(7199)) == pause
    assert pausing.expire(pause, _at(7200)) == pausing.Pause()


def test_pausing_again_keeps_since_and_replaces_until_and_reason() -> None:
    first = pausing.pause(pausing.Pause(), T0, duration=600, reason="a")

    again = pausing.pause(first, _at(300), reason="b")

    assert again == pausing.Pause(True, T0, None, "b")


def test_pausing_after_an_ended_pause_starts_a_new_one() -> None:
    first = pausing.pause(pausing.Pause(), T0, duration=60)

    again = pausing.pause(first, _at(120), duration=60)

    assert (again.since, again.until) == (_at(120), _at(180))


@pytest.mark.parametrize(
    ("pause", "text"),
    [
        (pausing.Pause(), "running"),
        (pausing.Pause(True), "paused"),
        (pausing.Pause(True, T0), "paused since 2026-11-30 10:00 UTC"),
        (pausing.Pause(True, T0, _at(4 * 3600), "freeze"),
         "paused until 2026-11-30 14:00 UTC (freeze)"),
    ],
)  # fmt: skip
def test_describe(pause: pausing.Pause, text: str) -> None:
    assert pause.describe() == text


@pytest.mark.parametrize(
    "pause",
    [pausing.Pause(), pausing.Pause(True, T0), pausing.Pause(True, T0, _at(60), "why")],
)
def test_state_round_trip(pause: pausing.Pause) -> None:
    assert pausing.Pause.from_state(pause.to_state()) == pause


@pytest.mark.parametrize("data", [None, [], {"paused": False, "since": "x"}, {"paused": 0}])
def test_malformed_or_off_state_is_no_pause(data: object) -> None:
    assert pausing.Pause.from_state(data) == pausing.Pause()


def test_an_older_journals_state_reads_as_a_pause_until_resumed() -> None:
    # Before timed pauses the journal kept only paused and since.
    state = {"paused": True, "since": T0.isoformat()}

    assert pausing.Pause.from_state(state) == pausing.Pause(True, T0, None, "")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "duration must be greater than 0, got 0"),
        (-5, "duration must be greater than 0, got -5"),
        (True, "duration must be greater than 0, got True"),
        ("1h", "duration must be greater than 0, got '1h'"),
        (31 * 86400, "duration must be at most 30 days, got 2678400s"),
    ],
)
def test_bad_durations(value: object, message: str) -> None:
    with pytest.raises(pausing.PauseError) as error:
        pausing.check_duration(value)

    assert str(error.value) == message


def test_reasons_are_one_line_and_short() -> None:
    assert pausing.check_reason("  release\n freeze ") == "release freeze"
    with pytest.raises(pausing.PauseError, match="reason must be at most 200 characters"):
        pausing.check_reason("x" * 201)
    with pytest.raises(pausing.PauseError, match="reason must be text"):
        pausing.check_reason(5)

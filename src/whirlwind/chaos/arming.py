"""Arming chaos: deliberate (confirm the model's name), visible, and temporary (pure).

Failure injection is off unless an operator armed it: `confirm` must be the model's name
exactly, the model must not be the controller model, and the arming ends by itself after
`duration` (at most 24 hours). Every reader asks `is_armed(now)`, so an expired arming is
simply not in effect, wherever it is kept (the agent's journal, the charm's peer data).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from whirlwind import pausing, policies

MAX_DURATION = 24 * 3600  # chaos left armed overnight is an accident waiting to happen
MAX_BY = 200
# Beyond this the expiry shows with its date: `until 15:00 UTC` could be today or tomorrow.
_SHOW_DATE_AFTER = datetime.timedelta(hours=20)


class ArmingError(ValueError):
    """An arming request is refused; the message names the parameter and the problem."""


@dataclasses.dataclass(frozen=True)
class Arming:
    """Whether chaos is armed, until when, by whom, since when, and whether only as a dry run."""

    armed: bool = False
    until: datetime.datetime | None = None
    by: str = ""
    at: datetime.datetime | None = None
    dry_run: bool = False

    def is_armed(self, now: datetime.datetime) -> bool:
        """Whether the arming is in effect at `now` (it always ends at `until`)."""
        return self.armed and self.until is not None and now < self.until

    def to_state(self) -> dict[str, Any]:
        """JSON for the journal (and kebab-case for the control API)."""
        return {
            "armed": self.armed,
            "until": _iso(self.until),
            "by": self.by,
            "at": _iso(self.at),
            "dry-run": self.dry_run,
        }

    @classmethod
    def from_state(cls, data: Any) -> Arming:
        """The arming from `to_state`'s JSON (peer data too).

        Anything malformed is not armed: no end, an end not after `at` or more than 24 h
        after it. Whatever the source, an arming read back never lasts longer than one made.
        """
        if not isinstance(data, Mapping) or data.get("armed") is not True:
            return cls()
        until = pausing.parse_time(data.get("until"))
        at = pausing.parse_time(data.get("at"))
        if until is None or (
            at is not None and not at < until <= at + datetime.timedelta(seconds=MAX_DURATION)
        ):
            return cls()
        by = data.get("by")
        return cls(
            armed=True,
            until=until,
            by=" ".join(by.split())[:MAX_BY] if isinstance(by, str) else "",
            at=at,
            dry_run=data.get("dry-run") is True,
        )

    def describe(self, now: datetime.datetime | None = None) -> str:
        """`CHAOS ARMED until 15:00 UTC`, `chaos armed (dry-run) until ...`, `chaos not armed`.

        With `now`, an expired arming is not armed, and an expiry 20 hours or more away shows
        its date.
        """
        until = self.until
        if until is None or not self.armed or (now is not None and not self.is_armed(now)):
            return "chaos not armed"
        head = "chaos armed (dry-run)" if self.dry_run else "CHAOS ARMED"
        return f"{head} until {format_until(until, now)}"


def to_status(current: Arming, now: datetime.datetime) -> dict[str, Any]:
    """The arming at `now` for status and the control API (kebab-case; expired: not armed)."""
    armed = current.is_armed(now)
    shown = current if armed else Arming()
    return {
        "chaos": shown.describe(now),
        "chaos-armed": armed,
        "chaos-armed-until": _iso(shown.until),
        "chaos-armed-by": shown.by,
        "chaos-armed-at": _iso(shown.at),
        "chaos-dry-run": shown.dry_run,
    }


def format_until(until: datetime.datetime, now: datetime.datetime | None = None) -> str:
    """`15:00 UTC`, or `2026-11-30 15:00 UTC` when `now` is given and it is 20 h or more away."""
    if now is not None and until - now >= _SHOW_DATE_AFTER:
        return pausing.format_time(until)
    return f"{until.astimezone(datetime.timezone.utc):%H:%M} UTC"


def check_duration(value: Any) -> int:
    """An arming duration in seconds from 7200 or `90s`, `30m`, `2h`: above 0, at most 24 h."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ArmingError("duration is required (for example 2h; at most 24h)")
    try:
        seconds = policies.parse_duration(value, "duration")
    except policies.PolicyError as exc:
        raise ArmingError(str(exc)) from None
    if seconds <= 0:
        raise ArmingError(f"duration must be greater than 0, got {value!r}")
    if seconds > MAX_DURATION:
        raise ArmingError(f"duration must be at most 24h, got {value!r}")
    return seconds


def check_by(value: Any) -> str:
    """Who armed it, as one line of at most MAX_BY characters."""
    if not isinstance(value, str):
        raise ArmingError("by must be text")
    text = " ".join(value.split())
    if len(text) > MAX_BY:
        raise ArmingError(f"by must be at most {MAX_BY} characters, got {len(text)}")
    return text


def check_confirm(confirm: Any, model_name: str) -> None:
    """Raise ArmingError unless `confirm` is exactly the model's name (both named)."""
    if not model_name:
        raise ArmingError("the model's name is not known yet; try again in a minute")
    if confirm != model_name:
        raise ArmingError(
            f"confirm must be the model's name exactly: got {confirm!r}, "
            f"the model is {model_name!r}"
        )


def arm(
    now: datetime.datetime,
    duration: Any,
    by: str,
    dry_run: bool,
    confirm: Any,
    model_name: str,
    *,
    controller_model: bool = False,
) -> Arming:
    """Arm chaos from `now` for `duration`, or raise ArmingError saying why not."""
    if controller_model:
        raise ArmingError("this is the controller model: chaos is never armed there")
    check_confirm(confirm, model_name)
    seconds = check_duration(duration)
    if not isinstance(dry_run, bool):
        raise ArmingError(f"dry-run must be true or false, got {dry_run!r}")
    return Arming(True, now + datetime.timedelta(seconds=seconds), check_by(by), now, dry_run)


def expire(current: Arming, now: datetime.datetime) -> Arming:
    """The arming after `now`: one whose time is up becomes no arming."""
    return current if current.is_armed(now) or current == Arming() else Arming()


def follow_settings(
    current: Arming, seen: Arming | None, given: Arming | None
) -> tuple[Arming, Arming | None]:
    """The arming in effect and the settings' arming to remember, after settings `given`.

    `given` is the charm's arming from the settings (None: they carry none); `seen` the one
    applied last. The charm's arming wins when it changed, not on every reload: a disarm on
    the agent's side (`ctl disarm-chaos`) is not undone by a reload of the same settings.
    """
    if given is None or given == seen:
        return current, seen
    return given, given


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None

"""The pause switch: on or off, since when, until when (a timed pause), and why (pure).

A pause without `until` stays until resumed. A timed pause ends by itself at `until`: every
reader asks `is_paused(now)`, so an expired pause is simply not in effect, wherever it is
kept (the agent's journal, the charm's peer data).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

MAX_DURATION = 30 * 24 * 3600  # a pause longer than a month is a resume forgotten
MAX_REASON = 200


class PauseError(ValueError):
    """A pause request is invalid; the message names the parameter."""


@dataclasses.dataclass(frozen=True)
class Pause:
    """Whether work is paused, since and until when, and why."""

    paused: bool = False
    since: datetime.datetime | None = None
    until: datetime.datetime | None = None
    reason: str = ""

    def is_paused(self, now: datetime.datetime) -> bool:
        """Whether the pause is in effect at `now` (a timed pause ends at `until`)."""
        return self.paused and (self.until is None or now < self.until)

    def to_state(self) -> dict[str, Any]:
        """JSON for the journal (and kebab-case for the control API)."""
        return {
            "paused": self.paused,
            "since": _iso(self.since),
            "until": _iso(self.until),
            "reason": self.reason,
        }

    @classmethod
    def from_state(cls, data: Any) -> Pause:
        """The pause from `to_state`'s JSON (anything malformed: not paused)."""
        if not isinstance(data, Mapping) or not data.get("paused"):
            return cls()
        reason = data.get("reason")
        return cls(
            paused=True,
            since=parse_time(data.get("since")),
            until=parse_time(data.get("until")),
            reason=reason if isinstance(reason, str) else "",
        )

    def describe(self) -> str:
        """`paused until 14:00 UTC (reason)`, `paused since ...`, or `running`."""
        if not self.paused:
            return "running"
        if self.until is not None:
            text = f"paused until {format_time(self.until)}"
        elif self.since is not None:
            text = f"paused since {format_time(self.since)}"
        else:
            text = "paused"
        return f"{text} ({self.reason})" if self.reason else text


def check_reason(reason: Any) -> str:
    """The reason as given (one line, at most MAX_REASON characters)."""
    if not isinstance(reason, str):
        raise PauseError("reason must be text")
    text = " ".join(reason.split())
    if len(text) > MAX_REASON:
        raise PauseError(f"reason must be at most {MAX_REASON} characters, got {len(text)}")
    return text


def check_duration(seconds: Any) -> int:
    """A pause duration in whole seconds, above 0 and at most 30 days."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        raise PauseError(f"duration must be greater than 0, got {seconds!r}")
    if seconds > MAX_DURATION:
        raise PauseError(f"duration must be at most 30 days, got {seconds}s")
    return seconds


def pause(
    current: Pause, now: datetime.datetime, *, duration: int | None = None, reason: str = ""
) -> Pause:
    """Pause now, for `duration` seconds (None: until resumed); keep the first `since`."""
    since = current.since if current.is_paused(now) and current.since else now
    until = now + datetime.timedelta(seconds=duration) if duration is not None else None
    return Pause(True, since, until, reason)


def expire(current: Pause, now: datetime.datetime) -> Pause:
    """The pause after `now`: a timed pause that has ended becomes no pause."""
    return current if current.is_paused(now) or not current.paused else Pause()


def format_time(when: datetime.datetime) -> str:
    """`2026-11-22 14:00 UTC`."""
    return f"{when.astimezone(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"


def parse_time(value: Any) -> datetime.datetime | None:
    """An aware datetime from ISO text (None for anything else)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None

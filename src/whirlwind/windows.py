"""Change windows: when voluntary work may start (pure; time is passed in).

Syntax, as operators type it (the `windows` option, and per application in `policies`):

    mon-fri 09:00-17:00 Europe/London; sat 10:00-12:00 UTC

Entries are separated by `;`. Each is `[DAYS] HH:MM-HH:MM [ZONE]`: DAYS is a day (`mon` ..
`sun`), a range (`mon-fri`, `fri-mon` wraps), a comma-separated list of those, or `daily`
(the default); ZONE is an IANA time zone name (default UTC). An end at or before the start
crosses midnight (`fri 22:00-02:00` is Friday 22:00 to Saturday 02:00); `24:00` is the end
of the day. The day is the day the window opens. Empty: always open.

Times are wall-clock times in the window's zone, and a window opens when that clock first
shows its start and closes when it first shows its end. On the day the clocks go forward, a
window starting in the skipped hour opens when the clock jumps (01:30 on a 01:00 -> 02:00
change opens at 02:00 summer time); on the day they go back, a time in the repeated hour is
its first occurrence, so a window from 01:00 to 03:00 lasts three hours that day.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import re
import zoneinfo
from collections.abc import Iterator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EXAMPLE = "mon-fri 09:00-17:00 Europe/London; sat 10:00-12:00 UTC"
UTC = datetime.timezone.utc
_TIME = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")
# Looking this many days back and ahead covers any weekly window crossing midnight.
_HORIZON = 8


class WindowError(ValueError):
    """A window is written wrong; the message names the part and shows the right form."""


@dataclasses.dataclass(frozen=True)
class Window:
    """One entry: on `days` (0 = Monday), from `start` to `end` minutes after midnight."""

    days: frozenset[int]
    start: int
    end: int
    zone: str = "UTC"
    text: str = ""

    @property
    def crosses_midnight(self) -> bool:
        """Whether it ends on the next day."""
        return self.end <= self.start

    def get_tz(self) -> datetime.tzinfo:
        """The window's time zone."""
        return UTC if self.zone == "UTC" else zoneinfo.ZoneInfo(self.zone)

    def spans(self, day: datetime.date) -> tuple[datetime.datetime, datetime.datetime] | None:
        """When the window opening on `day` (a date in its zone) opens and closes, in UTC."""
        if day.weekday() not in self.days:
            return None
        tz = self.get_tz()
        opens = first_at(day, self.start, tz)
        end_day = day + datetime.timedelta(days=1) if self.crosses_midnight else day
        return opens, first_at(end_day, self.end, tz)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A set of windows; no windows means always open."""

    windows: tuple[Window, ...] = ()
    text: str = ""

    @property
    def always(self) -> bool:
        """Whether there is no restriction."""
        return not self.windows

    def _spans_around(
        self, now: datetime.datetime
    ) -> Iterator[tuple[datetime.datetime, datetime.datetime]]:
        for window in self.windows:
            today = now.astimezone(window.get_tz()).date()
            for offset in range(-_HORIZON, _HORIZON + 1):
                span = window.spans(today + datetime.timedelta(days=offset))
                if span is not None and span[0] < span[1]:
                    yield span

    def is_open(self, now: datetime.datetime) -> bool:
        """Whether voluntary work may start at `now`."""
        return self.always or any(a <= now < b for a, b in self._spans_around(now))

    def closes_at(self, now: datetime.datetime) -> datetime.datetime | None:
        """When the open window(s) around `now` close.

        None: always open, closed now, or open for a week or more from now.
        """
        if self.always:
            return None
        end = None
        for opens, closes in sorted(set(self._spans_around(now))):
            if end is None and opens <= now < closes:
                end = closes
            elif end is not None and opens <= end:
                end = max(end, closes)  # windows that overlap or touch make one
        if end is not None and end - now >= datetime.timedelta(days=_HORIZON - 1):
            return None  # open for a week or more: no end in sight
        return end

    def opens_at(self, now: datetime.datetime) -> datetime.datetime | None:
        """When the next window opens after `now` (None: always open, or open now)."""
        if self.always or self.is_open(now):
            return None
        starts = [opens for opens, _ in self._spans_around(now) if opens > now]
        return min(starts, default=None)


def first_at(day: datetime.date, minutes: int, tz: datetime.tzinfo) -> datetime.datetime:
    """The first instant (UTC) at which the wall clock in `tz` shows `minutes` on `day`.

    Times in a skipped hour give the moment the clock jumps; repeated times their first
    occurrence.
    """
    wall = datetime.datetime.combine(day, datetime.time()) + datetime.timedelta(minutes=minutes)
    early = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    late = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    low, high = min(early, late), max(early, late)
    if _wall(low, tz) == wall:
        return low
    if _wall(high, tz) == wall:
        return high
    # In a gap: the first instant whose wall time is past `wall` (to the second).
    while high - low > datetime.timedelta(seconds=1):
        middle = low + (high - low) / 2
        if _wall(middle, tz) >= wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def _wall(instant: datetime.datetime, tz: datetime.tzinfo) -> datetime.datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def parse_windows(text: str, option: str = "windows") -> Schedule:
    """A Schedule from the operator's text; WindowError names the wrong part."""
    if not isinstance(text, str):
        raise WindowError(f"{option}: expected text such as {EXAMPLE!r}")
    windows = []
    for part in text.split(";"):
        entry = " ".join(part.split())
        if entry:
            windows.append(_parse_entry(entry, option))
    return Schedule(tuple(windows), "; ".join(w.text for w in windows))


@functools.lru_cache(maxsize=256)
def get_schedule(text: str) -> Schedule:
    """parse_windows for text already validated (the settings), cached."""
    return parse_windows(text)


def _parse_entry(entry: str, option: str) -> Window:
    words = entry.split(" ")
    hint = f"(for example {EXAMPLE!r})"
    times_at = next((i for i, w in enumerate(words) if "-" in w and ":" in w), None)
    if times_at is None or times_at > 1 or len(words) > times_at + 2:
        raise WindowError(f"{option}: {entry!r} is not [days] HH:MM-HH:MM [zone] {hint}")
    days = _parse_days(words[0], entry, option) if times_at == 1 else frozenset(range(7))
    start_text, _, end_text = words[times_at].partition("-")
    start = _parse_time(start_text, entry, option, end=False)
    end = _parse_time(end_text, entry, option, end=True)
    zone = words[times_at + 1] if len(words) > times_at + 1 else "UTC"
    if zone != "UTC":
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise WindowError(
                f"{option}: {entry!r}: unknown time zone {zone!r} "
                "(use an IANA name such as Europe/London or UTC)"
            ) from None
    if start == end:
        raise WindowError(f"{option}: {entry!r}: the window is empty (start equals end)")
    return Window(days=days, start=start, end=end, zone=zone, text=entry)


def _parse_days(text: str, entry: str, option: str) -> frozenset[int]:
    if text.lower() == "daily":
        return frozenset(range(7))
    days: set[int] = set()
    for item in text.lower().split(","):
        first, _, last = item.partition("-")
        for name in (first, last) if last else (first,):
            if name not in DAYS:
                raise WindowError(
                    f"{option}: {entry!r}: unknown day {name!r} "
                    f"(use {', '.join(DAYS)}, a range such as mon-fri, or daily)"
                )
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days)


def _parse_time(text: str, entry: str, option: str, *, end: bool) -> int:
    match = _TIME.match(text)
    hours, minutes = (int(match.group(1)), int(match.group(2))) if match else (-1, -1)
    valid = 0 <= hours <= 23 and 0 <= minutes <= 59
    if end and (hours, minutes) == (24, 0):
        return 24 * 60
    if not valid:
        raise WindowError(f"{option}: {entry!r}: {text!r} is not a time HH:MM such as 09:00")
    return hours * 60 + minutes

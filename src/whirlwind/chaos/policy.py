"""An application's `chaos` policy: which failures, how often, how many a day (pure).

In `policies`, per application (no `chaos` key: the application has not opted in):

    wsgi-example:
      chaos: {kinds: [kill-unit, slow-network], chance: 0.1, interval: 1h, max-per-day: 4,
              duration: 10m, delay: 200ms}

`chance` (0..1) or `pattern` (`k/n`: the first k of every n eligible ticks) says how often a
chaos tick injects; exactly one of them. Bad values raise policies.PolicyError naming the
application, the key and the problem, with an example of the right form.

policies.py parses the `chaos` key with this module and this module uses policies' errors and
durations: nothing here touches `policies` at import time, so either may be imported first.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

from whirlwind import policies
from whirlwind.chaos import wrench as wrench_mod

KILL_UNIT = "kill-unit"
KILL_MACHINE = "kill-machine"
STOP_AGENT = "stop-agent"
SLOW_NETWORK = "slow-network"
WRENCH = "wrench"
KINDS = (KILL_UNIT, KILL_MACHINE, STOP_AGENT, SLOW_NETWORK, WRENCH)
# Kinds that last `duration` and are then reverted on the machine; the others remove.
TIMED = frozenset({STOP_AGENT, SLOW_NETWORK, WRENCH})
# Kinds that destroy the unit (the storage rule applies to them).
DESTRUCTIVE = frozenset({KILL_UNIT, KILL_MACHINE})
CHAOS_KEYS = (
    "kinds",
    "chance",
    "pattern",
    "interval",
    "max-per-day",
    "duration",
    "delay",
    "wrench",
    "min-healthy",
)
DEFAULT_MAX_PER_DAY = 4
MAX_PER_DAY = 1000
MAX_PATTERN = 1000
DEFAULT_DURATION = 600
MAX_DURATION = 24 * 3600
DEFAULT_DELAY_MS = 200
MAX_DELAY_MS = 10_000
_PATTERN = re.compile(r"^\s*([0-9]+)\s*/\s*([0-9]+)\s*$")
_DELAY = re.compile(r"^\s*([0-9]+)\s*(ms|s)\s*$")
_EXAMPLES = {
    "kinds": "kinds: [kill-unit, slow-network]",
    "chance": "chance: 0.1",
    "pattern": 'pattern: "2/3"',
    "interval": "interval: 1h",
    "max-per-day": "max-per-day: 4",
    "duration": "duration: 10m",
    "delay": "delay: 200ms",
    "wrench": f"wrench: {wrench_mod.POINTS[0].text}",
    "min-healthy": "min-healthy: 50%",
}
# Builds the error for a key and a problem (the message adds where and an example).
_Fail = Callable[[str, str], "policies.PolicyError"]


@dataclasses.dataclass(frozen=True)
class Pattern:
    """`k/n`: inject on the first k of every n eligible chaos ticks."""

    k: int
    n: int

    @property
    def text(self) -> str:
        """`2/3`."""
        return f"{self.k}/{self.n}"

    def hits(self, position: int) -> bool:
        """Whether the eligible tick at `position` (0 first) is one of the first k of its n."""
        return position % self.n < self.k


@dataclasses.dataclass(frozen=True)
class ChaosPolicy:
    """One application's chaos: kinds, chance or pattern, pacing and limits."""

    kinds: tuple[str, ...]
    chance: float | None = None
    pattern: Pattern | None = None
    # Seconds between chaos ticks; None: the application's interval.
    interval: int | None = None
    max_per_day: int = DEFAULT_MAX_PER_DAY
    duration: int = DEFAULT_DURATION
    delay_ms: int = DEFAULT_DELAY_MS
    wrench: wrench_mod.Point | None = None
    # Percent of units that must stay healthy during an injection (None: every unit healthy
    # and at least 2 units before it).
    min_healthy: int | None = None

    def describe_rule(self) -> str:
        """`chance 0.1` or `pattern 2/3`."""
        # 12 significant digits: exact for any chance an operator writes, and the draw
        # compares against this text's value, so replaying the record gives the same result.
        return f"pattern {self.pattern.text}" if self.pattern else f"chance {self.chance:.12g}"

    def to_dict(self) -> dict[str, Any]:
        """Kebab-case mapping in the form parse_chaos reads (defaults left out)."""
        data: dict[str, Any] = {"kinds": list(self.kinds)}
        if self.pattern is not None:
            data["pattern"] = self.pattern.text
        else:
            data["chance"] = self.chance
        if self.interval is not None:
            data["interval"] = policies.format_duration(self.interval)
        if self.max_per_day != DEFAULT_MAX_PER_DAY:
            data["max-per-day"] = self.max_per_day
        if self.duration != DEFAULT_DURATION:
            data["duration"] = policies.format_duration(self.duration)
        if self.delay_ms != DEFAULT_DELAY_MS:
            data["delay"] = f"{self.delay_ms}ms"
        if self.wrench is not None:
            data["wrench"] = self.wrench.text
        if self.min_healthy is not None:
            data["min-healthy"] = f"{self.min_healthy}%"
        return data


def parse_chaos(application: str, value: Any) -> ChaosPolicy | None:
    """The `chaos` policy of `application` (None: not opted in: no value, null or false)."""
    where = f"policies: {application}: chaos"
    if value is None or value is False:
        return None
    if not isinstance(value, Mapping):
        raise policies.PolicyError(
            f"{where}: expected a mapping such as {{kinds: [kill-unit], chance: 0.1}}"
        )
    unknown = sorted(str(key) for key in value if key not in CHAOS_KEYS)
    if unknown:
        raise policies.PolicyError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(CHAOS_KEYS)})"
        )

    def fail(key: str, problem: str) -> policies.PolicyError:
        return policies.PolicyError(f"{where}: {key}: {problem} (e.g. {_EXAMPLES[key]})")

    if "kinds" not in value:
        raise fail("kinds", "required: which failures to inject")
    kinds = _parse_kinds(value["kinds"], fail)
    if ("chance" in value) == ("pattern" in value):
        problem = "give one of them, not both" if "chance" in value else "one of them is required"
        raise policies.PolicyError(
            f'{where}: chance or pattern: {problem} (e.g. chance: 0.1 or pattern: "2/3")'
        )
    found: dict[str, Any] = {"kinds": kinds}
    if "chance" in value:
        found["chance"] = _parse_chance(value["chance"], fail)
    else:
        found["pattern"] = _parse_pattern(value["pattern"], fail)
    if "interval" in value:
        seconds = _duration(value["interval"], "interval", policies.MAX_INTERVAL, fail)
        found["interval"] = seconds
    if "max-per-day" in value:
        count = value["max-per-day"]
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PER_DAY:
            raise fail("max-per-day", f"expected a whole number 1..{MAX_PER_DAY}, got {count!r}")
        found["max_per_day"] = count
    for key, needs in (("duration", TIMED), ("delay", {SLOW_NETWORK}), ("wrench", {WRENCH})):
        if key in value and not needs.intersection(kinds):
            raise fail(key, f"only with kinds {', '.join(sorted(needs))} (none in kinds)")
    if "duration" in value:
        found["duration"] = _duration(value["duration"], "duration", MAX_DURATION, fail)
    if "delay" in value:
        found["delay_ms"] = _parse_delay(value["delay"], fail)
    if WRENCH in kinds:
        if "wrench" not in value:
            raise fail("wrench", "required with the wrench kind: which point")
        text = value["wrench"]
        point = wrench_mod.get_point(text) if isinstance(text, str) else None
        if point is None:
            raise fail(
                "wrench", f"{text!r} is not offered (offered: {wrench_mod.describe_points()})"
            )
        found["wrench"] = point
    if "min-healthy" in value:
        try:
            found["min_healthy"] = policies.parse_percent(value["min-healthy"], "min-healthy")
        except policies.PolicyError as exc:
            raise fail("min-healthy", str(exc).removeprefix("min-healthy: ")) from None
    return ChaosPolicy(**found)


def _parse_kinds(value: Any, fail: _Fail) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise fail("kinds", f"expected a list of {', '.join(KINDS)}, got {value!r}")
    kinds: list[str] = []
    for item in items:
        if item not in KINDS:
            raise fail("kinds", f"{item!r} is not a kind (kinds: {', '.join(KINDS)})")
        if item in kinds:
            raise fail("kinds", f"{item} is given twice")
        kinds.append(item)
    return tuple(kinds)


def _parse_chance(value: Any, fail: _Fail) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail("chance", f"expected a number from 0 to 1, got {value!r}")
    if not 0 <= value <= 1:
        raise fail("chance", f"must be from 0 to 1, got {value!r}")
    return float(value)


def _parse_pattern(value: Any, fail: _Fail) -> Pattern:
    match = _PATTERN.match(value) if isinstance(value, str) else None
    if match is None:
        raise fail("pattern", f"expected k/n (the first k of every n ticks), got {value!r}")
    k, n = int(match.group(1)), int(match.group(2))
    if not 1 <= k <= n <= MAX_PATTERN:
        raise fail("pattern", f"needs 1 <= k <= n <= {MAX_PATTERN}, got {value!r}")
    return Pattern(k, n)


def _duration(value: Any, key: str, most: int, fail: _Fail) -> int:
    try:
        seconds = policies.parse_duration(value, key)
    except policies.PolicyError as exc:
        raise fail(key, str(exc).removeprefix(f"{key}: ")) from None
    if seconds == 0:
        raise fail(key, "must be greater than 0")
    if seconds > most:
        raise fail(key, f"must be at most {policies.format_duration(most)}, got {value!r}")
    return seconds


def _parse_delay(value: Any, fail: _Fail) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        millis = value
    elif isinstance(value, str) and (match := _DELAY.match(value)):
        millis = int(match.group(1)) * (1000 if match.group(2) == "s" else 1)
    else:
        raise fail("delay", f"expected milliseconds or seconds such as 200ms or 1s, got {value!r}")
    if not 1 <= millis <= MAX_DELAY_MS:
        raise fail("delay", f"must be from 1ms to {MAX_DELAY_MS // 1000}s, got {value!r}")
    return millis

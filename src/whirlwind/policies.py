"""Lifecycle policies: durations, per-application overrides, and the policy in effect.

The operator gives model-wide defaults (`interval`, `max-age`, `heal`, ...) and, in
`policies`, overrides per application. Everything here is pure and validated: a bad value
raises PolicyError whose message names the application, the key and the problem.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping
from typing import Any

import yaml

from whirlwind import windows as windows_mod
from whirlwind.chaos import policy as chaos_policy

DAY = 24 * 3600
_DURATION = re.compile(r"^\s*([0-9]+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": DAY}
STORAGE_MODES = ("skip", "allow")
MAX_UNITS = 1000
# Upper bounds, as for the model-wide options (settings.py).
MAX_INTERVAL = 30 * DAY
MAX_TIMEOUT = 7 * DAY
MAX_AGE = 3650 * DAY
POLICY_KEYS = (
    "interval",
    "max-age",
    "heal",
    "heal-after",
    "settle-period",
    "settle-timeout",
    "units",
    "storage",
    "min-healthy",
    "windows",
    "chaos",
)


class PolicyError(ValueError):
    """A policy value is invalid; the message names where and what."""


def parse_duration(value: Any, option: str, *, most: int | None = None) -> int:
    """Seconds from a whole number or `90s`, `10m`, `12h`, `7d` (0 allowed)."""
    if isinstance(value, bool):
        raise PolicyError(f"{option}: expected a duration such as 600, 90s, 10m, 12h or 7d")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise PolicyError(
            f"{option}: {value!r} is not a duration (use seconds or 90s, 10m, 12h, 7d)"
        )
    if seconds < 0:
        raise PolicyError(f"{option}: must be 0 or more, got {value!r}")
    if most is not None and seconds > most:
        raise PolicyError(f"{option}: must be at most {most // DAY} days, got {value!r}")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest exact form: 600 -> 10m, 90 -> 90s, 604800 -> 7d, 0 -> 0."""
    if seconds == 0:
        return "0"
    for suffix, size in (("d", DAY), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{suffix}"
    return f"{seconds}s"


def parse_percent(value: Any, option: str) -> int:
    """A percentage 0..100 from 50, "50" or "50%"."""
    text = value if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif text is not None and re.fullmatch(r"\s*[0-9]+\s*%?\s*", text):
        number = int(text.strip().rstrip("%"))
    else:
        raise PolicyError(f"{option}: {value!r} is not a percentage such as 50%")
    if not 0 <= number <= 100:
        raise PolicyError(f"{option}: must be between 0% and 100%, got {value!r}")
    return number


@dataclasses.dataclass(frozen=True)
class Overrides:
    """One application's overrides (None: the model-wide value)."""

    interval: int | None = None
    max_age: int | None = None
    heal: bool | None = None
    heal_after: int | None = None
    settle_period: int | None = None
    settle_timeout: int | None = None
    units: int | None = None
    storage: str | None = None
    min_healthy: int | None = None
    windows: str | None = None
    # Failure injection (chaos/policy.py); None: the application has not opted in.
    chaos: chaos_policy.ChaosPolicy | None = None

    def to_dict(self) -> dict[str, Any]:
        """Kebab-case mapping of the values set (the form parse_overrides reads)."""
        data: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            key = field.name.replace("_", "-")
            if isinstance(value, chaos_policy.ChaosPolicy):
                data[key] = value.to_dict()
            else:
                data[key] = f"{value}%" if key == "min-healthy" else value
        return data


def _parse_overrides(application: str, values: Any) -> Overrides:
    where = f"policies: {application}"
    if not isinstance(values, Mapping):
        raise PolicyError(f"{where}: expected a mapping of keys such as max-age: 7d")
    unknown = sorted(str(key) for key in values if key not in POLICY_KEYS)
    if unknown:
        raise PolicyError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(POLICY_KEYS)})")
    found: dict[str, Any] = {}
    for key, value in values.items():
        option = f"{where}: {key}"
        if key in ("interval", "settle-timeout"):
            seconds = parse_duration(
                value, option, most=MAX_INTERVAL if key == "interval" else MAX_TIMEOUT
            )
            if seconds == 0:
                raise PolicyError(f"{option}: must be greater than 0")
            found[key] = seconds
        elif key == "settle-period":
            found[key] = parse_duration(value, option, most=MAX_TIMEOUT)
        elif key in ("max-age", "heal-after"):
            found[key] = parse_duration(value, option, most=MAX_AGE)
        elif key == "heal":
            if not isinstance(value, bool):
                raise PolicyError(f"{option}: expected true or false, got {value!r}")
            found[key] = value
        elif key == "units":
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 1 <= value <= MAX_UNITS
            ):
                raise PolicyError(
                    f"{option}: expected a whole number 1..{MAX_UNITS}, got {value!r}"
                )
            found[key] = value
        elif key == "storage":
            if value not in STORAGE_MODES:
                raise PolicyError(f"{option}: expected skip or allow, got {value!r}")
            found[key] = value
        elif key == "chaos":
            found[key] = chaos_policy.parse_chaos(application, value)
        elif key == "windows":
            try:
                found[key] = windows_mod.parse_windows(value, option).text
            except windows_mod.WindowError as exc:
                raise PolicyError(str(exc)) from None
        else:
            found[key] = parse_percent(value, option)
    return Overrides(**{key.replace("-", "_"): value for key, value in found.items()})


def _load_yaml(text: str) -> Any:
    """YAML as safe_load reads it, except that top-level keys stay the text written.

    YAML 1.1 reads `on`, `yes`, `no`, `off`, `true` and `null` as booleans or None, and all
    of them are valid application names.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if not isinstance(node, yaml.MappingNode):
            return None if node is None else loader.construct_document(node)
        return {
            str(key.value): loader.construct_object(item, deep=True) for key, item in node.value
        }
    finally:
        loader.dispose()


def parse_policies(value: Any, services: Collection[str]) -> dict[str, Overrides]:
    """Overrides per application from YAML text (charm option) or a mapping (settings file).

    Every application must be one of `services`.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    data = value
    if isinstance(value, str):
        try:
            data = _load_yaml(value)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise PolicyError(f"policies: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise PolicyError("policies: expected a mapping of application to overrides")
    policies: dict[str, Overrides] = {}
    for application, values in data.items():
        name = str(application)
        if name not in services:
            raise PolicyError(f"policies: {name}: not in services (add it there first)")
        policies[name] = _parse_overrides(name, values)
    return policies


@dataclasses.dataclass(frozen=True)
class Policy:
    """What applies to one application: the model-wide values with its overrides."""

    interval: int
    max_age: int
    heal: bool
    heal_after: int
    heal_max_unhealthy: float
    settle_period: int
    settle_timeout: int
    remove_timeout: int
    units: int | None = None
    storage: str = "skip"
    min_healthy: int | None = None
    # Whether this application keeps its own interval (else: the model-wide rotation).
    own_interval: bool = False
    # When voluntary work may start (always when empty); healing too with heal_in_windows.
    windows: windows_mod.Schedule = dataclasses.field(default_factory=windows_mod.Schedule)
    heal_in_windows: bool = False
    # Failure injection for this application (None: not opted in).
    chaos: chaos_policy.ChaosPolicy | None = None

"""The `chaos` key of `policies`: kinds, chance or pattern, pacing, limits, and its errors."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest

import whirlwind
from tests.unit import inmemory_backend as imb
from whirlwind import policies
from whirlwind import settings as settings_mod
from whirlwind.chaos import policy as chaos_policy
from whirlwind.chaos import wrench

WHERE = "policies: web: chaos"


def _parse(chaos: Any) -> chaos_policy.ChaosPolicy | None:
    return policies.parse_policies({"web": {"chaos": chaos}}, ["web"])["web"].chaos


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            {"kinds": ["kill-unit"], "chance": 0.1},
            chaos_policy.ChaosPolicy(kinds=("kill-unit",), chance=0.1),
        ),
        (
            {"kinds": "kill-machine", "pattern": "2/3"},
            chaos_policy.ChaosPolicy(kinds=("kill-machine",), pattern=chaos_policy.Pattern(2, 3)),
        ),
        (
            {
                "kinds": ["kill-unit", "slow-network"],
                "chance": 1,
                "interval": "1h",
                "max-per-day": 10,
                "duration": "24h",
                "delay": "2s",
                "min-healthy": "50%",
            },
            chaos_policy.ChaosPolicy(
                kinds=("kill-unit", "slow-network"),
                chance=1.0,
                interval=3600,
                max_per_day=10,
                duration=86400,
                delay_ms=2000,
                min_healthy=50,
            ),
        ),
        (
            {"kinds": ["stop-agent"], "chance": 0, "duration": 90},
            chaos_policy.ChaosPolicy(kinds=("stop-agent",), chance=0.0, duration=90),
        ),
        (
            {"kinds": ["wrench"], "pattern": " 1 / 1000 ", "wrench": "hostkeyreporter/delay"},
            chaos_policy.ChaosPolicy(
                kinds=("wrench",),
                pattern=chaos_policy.Pattern(1, 1000),
                wrench=wrench.get_point("hostkeyreporter/delay"),
            ),
        ),
        ({"kinds": ["slow-network"], "chance": 0.5, "delay": 150},
         chaos_policy.ChaosPolicy(kinds=("slow-network",), chance=0.5, delay_ms=150)),
    ],
)  # fmt: skip
def test_parse(value: dict[str, Any], expected: chaos_policy.ChaosPolicy) -> None:
    result = _parse(value)

    assert result == expected


def test_defaults() -> None:
    result = _parse({"kinds": ["stop-agent"], "chance": 0.2})

    assert result is not None
    assert (result.interval, result.max_per_day, result.duration, result.delay_ms) == (
        None,
        4,
        600,
        200,
    )
    assert result.min_healthy is None
    assert result.describe_rule() == "chance 0.2"


@pytest.mark.parametrize("value", [None, False])
def test_no_value_is_not_opted_in(value: Any) -> None:
    assert _parse(value) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yes", f"{WHERE}: expected a mapping such as {{kinds: [kill-unit], chance: 0.1}}"),
        (True, f"{WHERE}: expected a mapping"),
        ({"kinds": ["kill-unit"], "chance": 0.1, "rate": 2},
         f"{WHERE}: unknown key 'rate' (known: kinds, chance, pattern, interval, max-per-day, "
         "duration, delay, wrench, min-healthy)"),
        ({"chance": 0.1},
         f"{WHERE}: kinds: required: which failures to inject "
         "(e.g. kinds: [kill-unit, slow-network])"),
        ({"kinds": [], "chance": 0.1}, f"{WHERE}: kinds: expected a list of kill-unit, "),
        ({"kinds": ["reboot"], "chance": 0.1},
         f"{WHERE}: kinds: 'reboot' is not a kind (kinds: kill-unit, kill-machine, stop-agent, "
         "slow-network, wrench)"),
        ({"kinds": ["kill-unit", "kill-unit"], "chance": 0.1},
         f"{WHERE}: kinds: kill-unit is given twice"),
        ({"kinds": ["kill-unit"]},
         f"{WHERE}: chance or pattern: one of them is required "
         "(e.g. chance: 0.1 or pattern: \"2/3\")"),
        ({"kinds": ["kill-unit"], "chance": 0.1, "pattern": "1/2"},
         f"{WHERE}: chance or pattern: give one of them, not both"),
        ({"kinds": ["kill-unit"], "chance": 1.5},
         f"{WHERE}: chance: must be from 0 to 1, got 1.5 (e.g. chance: 0.1)"),
        ({"kinds": ["kill-unit"], "chance": -0.1}, f"{WHERE}: chance: must be from 0 to 1"),
        ({"kinds": ["kill-unit"], "chance": "10%"},
         f"{WHERE}: chance: expected a number from 0 to 1, got '10%'"),
        ({"kinds": ["kill-unit"], "chance": True}, f"{WHERE}: chance: expected a number"),
        ({"kinds": ["kill-unit"], "pattern": "3/2"},
         f"{WHERE}: pattern: needs 1 <= k <= n <= 1000, got '3/2' (e.g. pattern: \"2/3\")"),
        ({"kinds": ["kill-unit"], "pattern": "0/3"}, f"{WHERE}: pattern: needs 1 <= k <= n"),
        ({"kinds": ["kill-unit"], "pattern": "1/1001"}, f"{WHERE}: pattern: needs 1 <= k"),
        ({"kinds": ["kill-unit"], "pattern": 0.5},
         f"{WHERE}: pattern: expected k/n (the first k of every n ticks), got 0.5"),
        ({"kinds": ["kill-unit"], "chance": 0.1, "interval": 0},
         f"{WHERE}: interval: must be greater than 0 (e.g. interval: 1h)"),
        ({"kinds": ["kill-unit"], "chance": 0.1, "interval": "31d"},
         f"{WHERE}: interval: must be at most 30d, got '31d'"),
        ({"kinds": ["kill-unit"], "chance": 0.1, "interval": "soon"},
         f"{WHERE}: interval: 'soon' is not a duration"),
        ({"kinds": ["kill-unit"], "chance": 0.1, "max-per-day": 0},
         f"{WHERE}: max-per-day: expected a whole number 1..1000, got 0 (e.g. max-per-day: 4)"),
        ({"kinds": ["kill-unit"], "chance": 0.1, "max-per-day": "4"},
         f"{WHERE}: max-per-day: expected a whole number"),
        ({"kinds": ["stop-agent"], "chance": 0.1, "duration": "25h"},
         f"{WHERE}: duration: must be at most 1d, got '25h' (e.g. duration: 10m)"),
        ({"kinds": ["stop-agent"], "chance": 0.1, "duration": "0"},
         f"{WHERE}: duration: must be greater than 0"),
        ({"kinds": ["kill-unit"], "chance": 0.1, "duration": "10m"},
         f"{WHERE}: duration: only with kinds slow-network, stop-agent, wrench (none in kinds)"),
        ({"kinds": ["stop-agent"], "chance": 0.1, "delay": "200ms"},
         f"{WHERE}: delay: only with kinds slow-network (none in kinds)"),
        ({"kinds": ["slow-network"], "chance": 0.1, "delay": "11s"},
         f"{WHERE}: delay: must be from 1ms to 10s, got '11s' (e.g. delay: 200ms)"),
        ({"kinds": ["slow-network"], "chance": 0.1, "delay": 0},
         f"{WHERE}: delay: must be from 1ms to 10s, got 0"),
        ({"kinds": ["slow-network"], "chance": 0.1, "delay": "2m"},
         f"{WHERE}: delay: expected milliseconds or seconds such as 200ms or 1s, got '2m'"),
        ({"kinds": ["wrench"], "chance": 0.1},
         f"{WHERE}: wrench: required with the wrench kind: which point "
         "(e.g. wrench: hostkeyreporter/delay)"),
        ({"kinds": ["wrench"], "chance": 0.1, "wrench": "provisioner/stop-instances"},
         f"{WHERE}: wrench: 'provisioner/stop-instances' is not offered (offered: "
         "hostkeyreporter/delay, storageprovisioner/DetachFilesystem"),
        ({"kinds": ["kill-unit"], "chance": 0.1, "wrench": "hostkeyreporter/delay"},
         f"{WHERE}: wrench: only with kinds wrench (none in kinds)"),
        ({"kinds": ["kill-unit"], "chance": 0.1, "min-healthy": "150%"},
         f"{WHERE}: min-healthy: must be between 0% and 100%, got '150%' "
         "(e.g. min-healthy: 50%)"),
    ],
)  # fmt: skip
def test_errors_name_the_application_key_and_problem(value: Any, message: str) -> None:
    with pytest.raises(policies.PolicyError) as caught:
        _parse(value)

    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    "chaos",
    [
        {"kinds": ["kill-unit"], "chance": 0.25},
        {"kinds": ["wrench", "slow-network", "stop-agent"], "pattern": "2/3", "interval": "90s",
         "max-per-day": 7, "duration": "1h", "delay": "1s",
         "wrench": "storageprovisioner/DetachVolume", "min-healthy": "0%"},
    ],
)  # fmt: skip
def test_round_trip_through_the_settings_file(chaos: dict[str, Any]) -> None:
    overrides = policies.parse_policies({"web": {"chaos": chaos}}, ["web"])

    data = overrides["web"].to_dict()
    again = policies.parse_policies({"web": data}, ["web"])

    assert again == overrides
    assert "chaos" in data


def test_policy_for_carries_chaos() -> None:
    overrides = policies.parse_policies(
        "web:\n  chaos: {kinds: [kill-unit], chance: 0.1}\n", ["web", "db"]
    )
    settings = imb.make_settings(
        pathlib.Path("/nonexistent"),
        services=("web", "db"),
        policies=tuple(overrides.items()),
    )

    web, db = settings.policy_for("web"), settings.policy_for("db")

    assert web.chaos == chaos_policy.ChaosPolicy(kinds=("kill-unit",), chance=0.1)
    assert db.chaos is None


def test_settings_file_keeps_chaos(tmp_path: pathlib.Path) -> None:
    chaos = {"kinds": ["kill-unit"], "chance": 1}
    overrides = policies.parse_policies({"web": {"chaos": chaos}}, ["web"])
    settings = imb.make_settings(tmp_path, services=("web",), policies=tuple(overrides.items()))
    path = tmp_path / "settings.yaml"
    path.write_text(settings_mod.dump_settings(settings))

    loaded = settings_mod.load_settings(path)

    expected = chaos_policy.ChaosPolicy(kinds=("kill-unit",), chance=1.0)
    assert loaded.policy_for("web").chaos == expected


@pytest.mark.parametrize("module", ["whirlwind.policies", "whirlwind.chaos.policy"])
def test_either_module_imports_first(module: str) -> None:
    # policies parses chaos with chaos.policy, which uses policies' errors: a cycle that must
    # work whichever is imported first (a fresh interpreter each).
    source = str(pathlib.Path(whirlwind.__file__).parents[1])
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        env={**os.environ, "PYTHONPATH": source},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("chaos", "rule"),
    [
        ({"kinds": ["kill-unit"], "chance": 1}, "chance 1"),
        ({"kinds": ["kill-unit"], "chance": 0.123456789}, "chance 0.123456789"),
        ({"kinds": ["kill-unit"], "chance": 0.00001}, "chance 1e-05"),
        ({"kinds": ["kill-unit"], "pattern": "2/3"}, "pattern 2/3"),
    ],
)
def test_rule_text_keeps_the_chance_exactly(chaos: dict[str, Any], rule: str) -> None:
    # Draws record this text and replay compares against it.
    result = _parse(chaos)

    assert result is not None
    assert result.describe_rule() == rule

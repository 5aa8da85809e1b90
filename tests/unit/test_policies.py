"""Lifecycle policies: durations, percentages, per-application overrides, the policy in effect."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from tests.unit import inmemory_backend as imb
from whirlwind import policies
from whirlwind import settings as settings_mod

DAY = 24 * 3600
USE = "(use seconds or 90s, 10m, 12h, 7d)"
KNOWN = (
    "known: interval, max-age, heal, heal-after, settle-period, settle-timeout, units, "
    "storage, min-healthy, windows, chaos"
)


def _settings(**overrides: Any) -> settings_mod.AgentSettings:
    values: dict[str, Any] = {"services": ("web", "db")}
    values.update(overrides)
    return imb.make_settings(pathlib.Path("/nonexistent"), **values)


def _data(**overrides: Any) -> dict[str, Any]:
    """A settings file's mapping, as load_settings reads it."""
    data: dict[str, Any] = {
        "controller": {
            "endpoints": "10.0.0.1:17070",
            "ca-cert": imb.CA_CERT,
            "username": "admin",
            "password": "s3cret",
        },
        "model-uuid": "uuid-1",
        "services": "web, db",
    }
    data.update(overrides)
    return data


# -- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (600, 600),
        ("0", 0),
        ("45", 45),
        ("90s", 90),
        ("10m", 600),
        ("12h", 43200),
        ("7d", 7 * DAY),
        ("  10m  ", 600),
        ("10 m", 600),
        ("\t7d\n", 7 * DAY),
        ("0d", 0),
    ],
)
def test_duration_accepts_seconds_and_suffixed_text(value: Any, expected: int) -> None:
    assert policies.parse_duration(value, "max-age") == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "max-age: expected a duration such as 600, 90s, 10m, 12h or 7d"),
        (False, "max-age: expected a duration such as 600, 90s, 10m, 12h or 7d"),
        (-1, "max-age: must be 0 or more, got -1"),
        ("-5s", f"max-age: '-5s' is not a duration {USE}"),
        ("1y", f"max-age: '1y' is not a duration {USE}"),
        ("ten minutes", f"max-age: 'ten minutes' is not a duration {USE}"),
        ("10M", f"max-age: '10M' is not a duration {USE}"),
        ("1.5h", f"max-age: '1.5h' is not a duration {USE}"),
        ("", f"max-age: '' is not a duration {USE}"),
        (1.5, f"max-age: 1.5 is not a duration {USE}"),
        (None, f"max-age: None is not a duration {USE}"),
    ],
)
def test_duration_rejects_what_is_not_a_whole_non_negative_duration(
    value: Any, message: str
) -> None:
    with pytest.raises(policies.PolicyError) as error:
        policies.parse_duration(value, "max-age")

    assert str(error.value) == message


@pytest.mark.parametrize(
    ("value", "most", "message"),
    [
        ("31d", 30 * DAY, "interval: must be at most 30 days, got '31d'"),
        (30 * DAY + 1, 30 * DAY, f"interval: must be at most 30 days, got {30 * DAY + 1}"),
        ("8d", 7 * DAY, "interval: must be at most 7 days, got '8d'"),
    ],
)
def test_duration_over_the_bound_is_rejected(value: Any, most: int, message: str) -> None:
    with pytest.raises(policies.PolicyError) as error:
        policies.parse_duration(value, "interval", most=most)

    assert str(error.value) == message


def test_duration_exactly_at_the_bound_is_accepted() -> None:
    assert policies.parse_duration("30d", "interval", most=30 * DAY) == 30 * DAY
    assert policies.parse_duration(30 * DAY, "interval", most=30 * DAY) == 30 * DAY


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0"),
        (1, "1s"),
        (90, "90s"),
        (600, "10m"),
        (5400, "90m"),
        (3600, "1h"),
        (43200, "12h"),
        (DAY, "1d"),
        (7 * DAY, "7d"),
        (DAY + 3600, "25h"),
        (3601, "3601s"),
    ],
)
def test_format_duration_is_the_shortest_exact_form_and_parses_back(
    seconds: int, text: str
) -> None:
    assert policies.format_duration(seconds) == text
    assert policies.parse_duration(text, "x") == seconds


# -- percentages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(50, 50), ("50", 50), ("50%", 50), (" 75 % ", 75), (0, 0), ("0%", 0), (100, 100)],
)
def test_percent_accepts_numbers_and_percent_text(value: Any, expected: int) -> None:
    assert policies.parse_percent(value, "min-healthy") == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "min-healthy: True is not a percentage such as 50%"),
        (0.5, "min-healthy: 0.5 is not a percentage such as 50%"),
        ("half", "min-healthy: 'half' is not a percentage such as 50%"),
        ("-1%", "min-healthy: '-1%' is not a percentage such as 50%"),
        ("50%%", "min-healthy: '50%%' is not a percentage such as 50%"),
        (None, "min-healthy: None is not a percentage such as 50%"),
        (-1, "min-healthy: must be between 0% and 100%, got -1"),
        (101, "min-healthy: must be between 0% and 100%, got 101"),
        ("150%", "min-healthy: must be between 0% and 100%, got '150%'"),
    ],
)
def test_percent_rejects_what_is_not_zero_to_a_hundred(value: Any, message: str) -> None:
    with pytest.raises(policies.PolicyError) as error:
        policies.parse_percent(value, "min-healthy")

    assert str(error.value) == message


# -- policies ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "   \n", "# nothing yet\n", {}])
def test_no_policies_is_an_empty_mapping(value: Any) -> None:
    assert policies.parse_policies(value, ("web",)) == {}


def test_policies_from_yaml_text() -> None:
    text = (
        "web: {units: 3, max-age: 7d}\n"
        "db:\n"
        "  storage: skip\n"
        "  min-healthy: 50%\n"
        "  heal-after: 5m\n"
        "  heal: false\n"
        "  interval: 1h\n"
        "  settle-period: 30s\n"
        "  settle-timeout: 15m\n"
    )

    assert policies.parse_policies(text, ("web", "db")) == {
        "web": policies.Overrides(units=3, max_age=7 * DAY),
        "db": policies.Overrides(
            storage="skip",
            min_healthy=50,
            heal_after=300,
            heal=False,
            interval=3600,
            settle_period=30,
            settle_timeout=900,
        ),
    }


def test_policies_from_a_mapping_keep_the_order_given() -> None:
    parsed = policies.parse_policies(
        {"db": {"heal": True}, "web": {"max-age": 86400, "min-healthy": 75}}, ("web", "db")
    )

    assert list(parsed) == ["db", "web"]
    assert parsed["db"] == policies.Overrides(heal=True)
    assert parsed["web"] == policies.Overrides(max_age=DAY, min_healthy=75)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("web: [1, 2\n", 2),
        ("web:\n  max-age: 7d\n bad: x\n", 3),
        ("web: units: 3\n", 1),
        ("web:\n\tunits: 3\n", 2),
    ],
)
def test_malformed_yaml_names_the_line(text: str, line: int) -> None:
    with pytest.raises(policies.PolicyError) as error:
        policies.parse_policies(text, ("web",))

    assert str(error.value) == f"policies: not valid YAML at line {line}"


@pytest.mark.parametrize("application", ["on", "yes", "no", "off", "true", "null"])
def test_quoted_application_names_that_look_like_yaml_scalars_are_read_as_written(
    application: str,
) -> None:
    text = f'"{application}": {{units: 3}}\n'

    assert policies.parse_policies(text, (application,)) == {
        application: policies.Overrides(units=3)
    }


@pytest.mark.parametrize("application", ["on", "yes", "null"])
def test_unquoted_application_names_that_look_like_yaml_scalars_are_read_as_written(
    application: str,
) -> None:
    # parse_services accepts these names; their policies should be accepted too.
    assert settings_mod.parse_services(application) == (application,)

    assert policies.parse_policies(f"{application}: {{units: 3}}\n", (application,)) == {
        application: policies.Overrides(units=3)
    }


@pytest.mark.parametrize("value", ["- web\n- db\n", "just words", "42", ["web"], 7])
def test_policies_must_be_a_mapping(value: Any) -> None:
    with pytest.raises(policies.PolicyError) as error:
        policies.parse_policies(value, ("web",))

    assert str(error.value) == "policies: expected a mapping of application to overrides"


def test_policies_for_an_application_not_in_services_are_rejected() -> None:
    with pytest.raises(policies.PolicyError) as error:
        policies.parse_policies("web: {units: 2}\nother: {units: 2}\n", ("web", "db"))

    assert str(error.value) == "policies: other: not in services (add it there first)"


@pytest.mark.parametrize("values", ["7d", None, ["max-age", "7d"], 3])
def test_an_applications_overrides_must_be_a_mapping(values: Any) -> None:
    with pytest.raises(policies.PolicyError) as error:
        policies.parse_policies({"web": values}, ("web",))

    assert str(error.value) == "policies: web: expected a mapping of keys such as max-age: 7d"


@pytest.mark.parametrize(
    ("values", "unknown"),
    [
        ({"maxage": "7d"}, "maxage"),
        ({"max_age": "7d"}, "max_age"),
        ({"units": 2, "zeta": 1, "alpha": 1}, "alpha"),
        ({5: 1}, "5"),
    ],
)
def test_unknown_key_is_named_with_the_known_keys(values: dict[Any, Any], unknown: str) -> None:
    with pytest.raises(policies.PolicyError) as error:
        policies.parse_policies({"web": values}, ("web",))

    assert str(error.value) == f"policies: web: unknown key {unknown!r} ({KNOWN})"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("interval", 0, "must be greater than 0"),
        ("interval", "0s", "must be greater than 0"),
        ("interval", "31d", "must be at most 30 days, got '31d'"),
        ("interval", "soon", f"'soon' is not a duration {USE}"),
        ("interval", True, "expected a duration such as 600, 90s, 10m, 12h or 7d"),
        ("settle-timeout", 0, "must be greater than 0"),
        ("settle-timeout", "8d", "must be at most 7 days, got '8d'"),
        ("settle-period", "8d", "must be at most 7 days, got '8d'"),
        ("settle-period", -1, "must be 0 or more, got -1"),
        ("max-age", "3651d", "must be at most 3650 days, got '3651d'"),
        ("max-age", "1y", f"'1y' is not a duration {USE}"),
        ("heal-after", -5, "must be 0 or more, got -5"),
        ("heal-after", "3651d", "must be at most 3650 days, got '3651d'"),
        ("heal", "yes", "expected true or false, got 'yes'"),
        ("heal", 1, "expected true or false, got 1"),
        ("units", 0, "expected a whole number 1..1000, got 0"),
        ("units", 1001, "expected a whole number 1..1000, got 1001"),
        ("units", True, "expected a whole number 1..1000, got True"),
        ("units", "3", "expected a whole number 1..1000, got '3'"),
        ("units", 2.0, "expected a whole number 1..1000, got 2.0"),
        ("storage", "keep", "expected skip or allow, got 'keep'"),
        ("storage", True, "expected skip or allow, got True"),
        ("min-healthy", "120%", "must be between 0% and 100%, got '120%'"),
        ("min-healthy", "most", "'most' is not a percentage such as 50%"),
        ("min-healthy", 0.5, "0.5 is not a percentage such as 50%"),
    ],
)
def test_each_keys_wrong_value_is_named(key: str, value: Any, problem: str) -> None:
    with pytest.raises(policies.PolicyError) as error:
        policies.parse_policies({"web": {key: value}}, ("web",))

    assert str(error.value) == f"policies: web: {key}: {problem}"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("interval", 1, policies.Overrides(interval=1)),
        ("interval", "30d", policies.Overrides(interval=30 * DAY)),
        ("settle-period", 0, policies.Overrides(settle_period=0)),
        ("settle-timeout", "7d", policies.Overrides(settle_timeout=7 * DAY)),
        ("max-age", 0, policies.Overrides(max_age=0)),
        ("max-age", "3650d", policies.Overrides(max_age=3650 * DAY)),
        ("heal-after", "0", policies.Overrides(heal_after=0)),
        ("units", 1, policies.Overrides(units=1)),
        ("units", 1000, policies.Overrides(units=1000)),
        ("storage", "allow", policies.Overrides(storage="allow")),
        ("min-healthy", "0%", policies.Overrides(min_healthy=0)),
        ("min-healthy", 100, policies.Overrides(min_healthy=100)),
    ],
)
def test_each_keys_bounds_are_accepted(key: str, value: Any, expected: policies.Overrides) -> None:
    assert policies.parse_policies({"web": {key: value}}, ("web",)) == {"web": expected}


@pytest.mark.parametrize(
    "overrides",
    [
        policies.Overrides(),
        policies.Overrides(units=3, max_age=7 * DAY),
        policies.Overrides(min_healthy=0, heal=False, heal_after=0, settle_period=0),
        policies.Overrides(
            interval=1200,
            max_age=30 * DAY,
            heal=True,
            heal_after=300,
            settle_period=30,
            settle_timeout=900,
            units=5,
            storage="allow",
            min_healthy=75,
        ),
    ],
)
def test_overrides_to_dict_parses_back_to_the_same(overrides: policies.Overrides) -> None:
    as_dict = overrides.to_dict()
    as_text = yaml.safe_dump({"web": as_dict})

    assert policies.parse_policies({"web": as_dict}, ("web",)) == {"web": overrides}
    assert policies.parse_policies(as_text, ("web",)) == {"web": overrides}


def test_overrides_to_dict_is_kebab_case_with_only_the_values_set() -> None:
    overrides = policies.Overrides(max_age=7 * DAY, heal=False, min_healthy=50)

    assert overrides.to_dict() == {"max-age": 7 * DAY, "heal": False, "min-healthy": "50%"}


# -- the policy in effect ------------------------------------------------------------------


def test_policy_for_uses_the_overrides_where_set() -> None:
    settings = _settings(
        policies=(
            (
                "web",
                policies.Overrides(
                    interval=1200,
                    max_age=7 * DAY,
                    heal=False,
                    heal_after=60,
                    settle_period=30,
                    settle_timeout=900,
                    units=3,
                    storage="allow",
                    min_healthy=50,
                ),
            ),
        ),
    )

    assert settings.policy_for("web") == policies.Policy(
        interval=1200,
        max_age=7 * DAY,
        heal=False,
        heal_after=60,
        heal_max_unhealthy=0.5,
        settle_period=30,
        settle_timeout=900,
        remove_timeout=120,
        units=3,
        storage="allow",
        min_healthy=50,
        own_interval=True,
    )


@pytest.mark.parametrize("application", ["db", "web", "not-configured"])
def test_policy_for_falls_back_to_the_model_wide_values(application: str) -> None:
    settings = _settings(
        interval=900,
        heal=False,
        heal_after=120,
        heal_max_unhealthy=0.25,
        max_age=DAY,
        policies=(("web", policies.Overrides()),),
    )

    assert settings.policy_for(application) == policies.Policy(
        interval=900,
        max_age=DAY,
        heal=False,
        heal_after=120,
        heal_max_unhealthy=0.25,
        settle_period=60,
        settle_timeout=600,
        remove_timeout=120,
        units=None,
        storage="skip",
        min_healthy=None,
        own_interval=False,
    )


def test_policy_for_mixes_set_and_unset_keys() -> None:
    settings = _settings(
        interval=900,
        max_age=DAY,
        heal_after=120,
        policies=(("web", policies.Overrides(heal_after=30, units=2)),),
    )

    policy = settings.policy_for("web")

    assert (policy.heal_after, policy.units) == (30, 2)
    assert (policy.interval, policy.max_age, policy.heal) == (900, DAY, True)
    assert (policy.own_interval, policy.storage, policy.min_healthy) == (False, "skip", None)


@pytest.mark.parametrize(
    ("overrides", "own_interval"),
    [
        (policies.Overrides(interval=600), True),  # same value as model-wide, still its own
        (policies.Overrides(interval=60), True),
        (policies.Overrides(max_age=DAY), False),
        (policies.Overrides(), False),
    ],
)
def test_own_interval_is_set_only_by_an_interval_override(
    overrides: policies.Overrides, own_interval: bool
) -> None:
    settings = _settings(policies=(("web", overrides),))

    assert settings.policy_for("web").own_interval is own_interval
    assert settings.policy_for("db").own_interval is False


# -- the settings file ------------------------------------------------------------------------


def test_settings_file_reads_lifecycle_keys_as_durations() -> None:
    settings = settings_mod.parse_settings(
        _data(
            interval="15m",
            **{
                "settle-period": "90s",
                "settle-timeout": "1h",
                "remove-timeout": "5m",
                "heal": False,
                "heal-after": "2m",
                "heal-max-unhealthy": 0.25,
                "max-age": "7d",
                "policies": {"web": {"units": 3, "interval": "1h", "min-healthy": "50%"}},
            },
        )
    )

    assert (settings.interval, settings.settle_period, settings.settle_timeout) == (
        900,
        90,
        3600,
    )
    assert settings.remove_timeout == 300
    assert (settings.heal, settings.heal_after, settings.heal_max_unhealthy) == (False, 120, 0.25)
    assert settings.max_age == 7 * DAY
    assert settings.policies == (
        ("web", policies.Overrides(units=3, interval=3600, min_healthy=50)),
    )


def test_settings_file_takes_policies_as_yaml_text_too() -> None:
    settings = settings_mod.parse_settings(_data(policies="db: {storage: allow}\n"))

    assert settings.policies == (("db", policies.Overrides(storage="allow")),)


def test_settings_file_round_trips_its_policies() -> None:
    settings = settings_mod.parse_settings(
        _data(policies={"web": {"max-age": "7d", "min-healthy": "75%", "heal": False}})
    )

    again = settings_mod.parse_settings(settings.to_dict())

    assert again.policies == settings.policies
    assert again.policy_for("web") == settings.policy_for("web")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"policies": {"other": {"units": 2}}},
            "policies: other: not in services (add it there first)",
        ),
        ({"policies": "web: [\n"}, "policies: not valid YAML at line 2"),
        (
            {"policies": {"web": {"units": 0}}},
            "policies: web: units: expected a whole number 1..1000, got 0",
        ),
        ({"max-age": "1y"}, f"max-age: '1y' is not a duration {USE}"),
        ({"max-age": "3651d"}, "max-age: must be at most 3650 days, got '3651d'"),
        ({"heal-after": -1}, "heal-after: must be 0 or more, got -1"),
        ({"heal": "yes"}, "heal must be true or false, got 'yes'"),
        (
            {"heal-max-unhealthy": "half"},
            "heal-max-unhealthy must be a fraction such as 0.5, got 'half'",
        ),
        (
            {"heal-max-unhealthy": True},
            "heal-max-unhealthy must be a fraction such as 0.5, got True",
        ),
        (
            {"heal-max-unhealthy": 0},
            "heal-max-unhealthy must be a fraction above 0 and at most 1, got 0.0",
        ),
        (
            {"heal-max-unhealthy": 1.5},
            "heal-max-unhealthy must be a fraction above 0 and at most 1, got 1.5",
        ),
        ({"interval": "ten minutes"}, f"interval: 'ten minutes' is not a duration {USE}"),
        ({"interval": "31d"}, "interval must be at most 2592000 (30 days), got 2678400"),
        ({"settle-timeout": "0"}, "settle-timeout must be greater than 0, got 0"),
    ],
)
def test_settings_file_lifecycle_errors_name_the_key(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(settings_mod.SettingsError) as error:
        settings_mod.parse_settings(_data(**overrides))

    assert str(error.value) == message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"settle-timeout": "1h", "policies": {"web": {"settle-period": "1h"}}},
            "policies: web: settle-period (3600s) must be shorter than settle-timeout (3600s)",
        ),
        (
            {"settle-timeout": 1800, "policies": {"web": {"settle-period": "1h"}}},
            "policies: web: settle-period (3600s) must be shorter than settle-timeout (1800s)",
        ),
        (
            {"settle-period": "10m", "policies": {"db": {"settle-timeout": "5m"}}},
            "policies: db: settle-period (600s) must be shorter than settle-timeout (300s)",
        ),
    ],
)
def test_settings_file_checks_each_applications_own_timings(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(settings_mod.SettingsError) as error:
        settings_mod.parse_settings(_data(**overrides))

    assert str(error.value) == message


def test_settings_file_accepts_own_timings_that_fit_where_model_wide_ones_would_not() -> None:
    settings = settings_mod.parse_settings(
        _data(
            **{
                "settle-timeout": "30m",
                "policies": {"web": {"settle-period": "1h", "settle-timeout": "2h"}},
            }
        )
    )

    assert (
        settings.policy_for("web").settle_period,
        settings.policy_for("web").settle_timeout,
    ) == (
        3600,
        7200,
    )
    assert settings.policy_for("db").settle_timeout == 1800


def test_settings_reject_policies_for_an_application_not_in_services() -> None:
    with pytest.raises(settings_mod.SettingsError) as error:
        _settings(policies=(("other", policies.Overrides(units=2)),))

    assert str(error.value) == "policies: other: not in services"

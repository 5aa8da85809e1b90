"""The settings schema: defaults, validation messages that name the option, round trips."""

from __future__ import annotations

import datetime
import pathlib
from typing import Any

import pytest
import yaml

from tests.unit import inmemory_backend as imb
from whirlwind import settings as settings_mod
from whirlwind.chaos import arming as arming_mod

CA = imb.CA_CERT


def _data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "controller": {
            "endpoints": "10.0.0.1:17070, 10.0.0.2:17070",
            "ca-cert": CA,
            "username": "admin",
            "password": "s3cret",
        },
        "model-uuid": "uuid-1",
    }
    data.update(overrides)
    return data


def test_minimal_settings_get_the_defaults() -> None:
    settings = settings_mod.parse_settings(_data())

    assert settings.controller.endpoints == ("10.0.0.1:17070", "10.0.0.2:17070")
    assert (settings.interval, settings.settle_period, settings.settle_timeout) == (600, 60, 1800)
    assert (settings.max_in_flight, settings.strategy, settings.paused) == (1, "oldest", None)
    assert settings.services == ()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"interval": 0}, "interval must be greater than 0, got 0"),
        ({"interval": "ten minutes"}, "interval: 'ten minutes' is not a duration"),
        ({"settle-period": 100, "settle-timeout": 100}, "settle-period (100s) must be shorter"),
        ({"log-level": "chatty"}, "log-level must be one of"),
        ({"strategy": "newest"}, "strategy must be one of oldest, random"),
        ({"services": "good, Bad_Name"}, "services: 'Bad_Name' is not a valid application name"),
        ({"dry-run": "yes"}, "dry-run must be true or false"),
        ({"max-in-flight": 0}, "max-in-flight must be greater than 0"),
        ({"surprise": 1}, "unknown option 'surprise'"),
        ({"model-uuid": ""}, "model-uuid is missing"),
        ({"controller": {"endpoints": "x"}}, "endpoints: 'x' is not host:port"),
    ],
)
def test_invalid_values_name_the_option(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(settings_mod.SettingsError) as error:
        settings_mod.parse_settings(_data(**overrides))

    assert message in str(error.value)


def test_services_are_split_deduplicated_and_ordered() -> None:
    assert settings_mod.parse_services("web, db web\napp") == ("web", "db", "app")


def test_password_file_is_read_relative_to_the_settings_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "password").write_text("from-file\n")
    data = _data()
    del data["controller"]["password"]
    data["controller"]["password-file"] = "password"
    data["services"] = ["app"]
    data["paused"] = True
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(data))

    settings = settings_mod.load_settings(tmp_path / "settings.yaml")

    assert settings.controller.password == "from-file"
    assert settings.services == ("app",)
    assert settings.paused is True


def test_dump_and_load_round_trip_and_describe_hides_secrets(tmp_path: pathlib.Path) -> None:
    settings = imb.make_settings(tmp_path, services=("app", "web"), own_application="ww")
    path = tmp_path / "settings.yaml"
    path.write_text(settings_mod.dump_settings(settings))

    assert settings_mod.load_settings(path) == settings
    described = repr(settings.describe())
    assert "s3cret" not in described
    assert "CERTIFICATE" not in described
    assert "s3cret" not in repr(settings)


def test_files_are_written_atomically_with_their_mode(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "sub" / "secret"

    assert settings_mod.write_file_atomically(path, "one", mode=0o600) is True
    assert settings_mod.write_file_atomically(path, "one", mode=0o600) is False
    assert path.read_text() == "one"
    assert path.stat().st_mode & 0o777 == 0o600


UNTIL = "2026-11-30T15:00:00+00:00"
AT = "2026-11-30T13:00:00+00:00"


def test_the_charms_chaos_arming_round_trips(tmp_path: pathlib.Path) -> None:
    data = _data(
        **{
            "chaos-armed": True,
            "chaos-armed-until": UNTIL,
            "chaos-armed-by": "arm-chaos action 7 on whirlwind/0",
            "chaos-armed-at": AT,
            "chaos-dry-run": True,
            "chaos-seed": 42,
        }
    )
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(data))

    settings = settings_mod.load_settings(tmp_path / "settings.yaml")

    arming = settings.chaos_arming
    assert arming is not None
    assert arming.is_armed(datetime.datetime.fromisoformat(AT))
    assert arming.to_state() == {
        "armed": True,
        "until": UNTIL,
        "by": "arm-chaos action 7 on whirlwind/0",
        "at": AT,
        "dry-run": True,
    }
    assert settings.chaos_seed == 42
    (tmp_path / "again.yaml").write_text(settings_mod.dump_settings(settings))
    assert settings_mod.load_settings(tmp_path / "again.yaml") == settings


@pytest.mark.parametrize(
    ("overrides", "armed"),
    [({}, None), ({"chaos-armed": False}, False), ({"chaos-armed": None}, None)],
)
def test_without_an_armed_charm_the_settings_carry_no_arming(
    overrides: dict[str, Any], armed: bool | None
) -> None:
    settings = settings_mod.parse_settings(_data(**overrides))

    assert settings.chaos_armed is armed
    assert settings.chaos_arming == (None if armed is None else arming_mod.Arming())
    assert not {k for k in settings.to_dict() if k.startswith("chaos-armed-")}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"chaos-armed": "yes"}, "chaos-armed must be true or false, got 'yes'"),
        ({"chaos-armed": True}, "chaos-armed-until is missing (chaos-armed is true)"),
        ({"chaos-armed": True, "chaos-armed-until": "15:00"},
         "chaos-armed-until: '15:00' is not an ISO time with a zone"),
        ({"chaos-armed": True, "chaos-armed-until": "2026-11-30T15:00:00"},
         "is not an ISO time with a zone"),
        ({"chaos-armed": True, "chaos-armed-until": UNTIL, "chaos-armed-at": "2026-11-29T14:00Z"},
         "chaos-armed-until must be after chaos-armed-at and at most 24h later"),
        ({"chaos-armed": True, "chaos-armed-until": AT, "chaos-armed-at": UNTIL},
         "chaos-armed-until must be after chaos-armed-at"),
        ({"chaos-armed": True, "chaos-armed-until": UNTIL, "chaos-armed-by": "x" * 201},
         "chaos-armed-by must be at most 200 characters, got 201"),
        ({"chaos-armed": True, "chaos-armed-until": UNTIL, "chaos-armed-by": 7},
         "chaos-armed-by must be a string, got int"),
        ({"chaos-armed": True, "chaos-armed-until": UNTIL, "chaos-dry-run": "no"},
         "chaos-dry-run must be true or false"),
        ({"chaos-armed-until": UNTIL}, "chaos-armed-until: only with chaos-armed: true"),
        ({"chaos-armed": False, "chaos-dry-run": True},
         "chaos-dry-run: only with chaos-armed: true"),
        ({"chaos-seed": -1}, "chaos-seed must be a whole number 0..2**63-1, got -1"),
        ({"chaos-seed": 2**63}, "chaos-seed must be a whole number 0..2**63-1"),
        ({"chaos-seed": "42"}, "chaos-seed must be a whole number 0..2**63-1, got '42'"),
        ({"chaos-seed": True}, "chaos-seed must be a whole number"),
    ],
)  # fmt: skip
def test_invalid_chaos_settings_name_the_option(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(settings_mod.SettingsError) as error:
        settings_mod.parse_settings(_data(**overrides))

    assert message in str(error.value)


@pytest.mark.parametrize("seed", [0, 7, 2**63 - 1])
def test_chaos_seed_bounds(seed: int) -> None:
    assert settings_mod.parse_settings(_data(**{"chaos-seed": seed})).chaos_seed == seed

"""The one settings schema: the charm renders it, the agent reads it."""

from __future__ import annotations

import dataclasses
import datetime
import os
import pathlib
import re
import ssl
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import yaml

from whirlwind import alerts as alerts_mod
from whirlwind import pausing
from whirlwind import policies as policies_mod
from whirlwind import windows as windows_mod
from whirlwind.chaos import arming

# Juju application names: lower-case letters, digits and hyphens; no segment is digits only.
_APP_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]*[a-z][a-z0-9]*)*$")
_ENDPOINT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
STRATEGIES = ("oldest", "random")

DEFAULT_STATE_DIR = pathlib.Path("/var/lib/whirlwind")
DEFAULT_CONTROL_SOCKET = pathlib.Path("/run/whirlwind/control.sock")

Strategy = Literal["oldest", "random"]

DAY = 24 * 3600
# Upper bounds of the operator's durations (seconds): beyond them nothing sensible happens, and
# the arithmetic on dates and socket timeouts overflows.
MAX_INTERVAL = 30 * DAY
MAX_TIMEOUT = 7 * DAY
MAX_STATUS_POLL_INTERVAL = DAY
MAX_CONSECUTIVE_FAILURES = 1000
MAX_IN_FLIGHT = 100
MAX_CHAOS_SEED = 2**63 - 1  # fits Juju's int config and every JSON reader
DEFAULT_METRICS_PORT = 9587


class SettingsError(ValueError):
    """A settings value is invalid; the message names the option and the problem."""


@dataclasses.dataclass(frozen=True)
class ControllerSettings:
    """How to reach and log in to the Juju controller."""

    endpoints: tuple[str, ...]
    ca_cert: str
    username: str
    password: str = dataclasses.field(repr=False)

    def to_dict(self, password_file: pathlib.Path | None = None) -> dict[str, Any]:
        """Kebab-case mapping; with `password_file`, the password itself is left out."""
        data: dict[str, Any] = {
            "endpoints": list(self.endpoints),
            "ca-cert": self.ca_cert,
            "username": self.username,
        }
        if password_file is None:
            data["password"] = self.password
        else:
            data["password-file"] = str(password_file)
        return data


@dataclasses.dataclass(frozen=True)
class AgentSettings:
    """Everything the agent needs to run; immutable, validated at construction."""

    controller: ControllerSettings
    model_uuid: str
    services: tuple[str, ...] = ()
    interval: int = 600
    settle_period: int = 60
    settle_timeout: int = 1800
    remove_timeout: int = 900
    dry_run: bool = False
    state_dir: pathlib.Path = DEFAULT_STATE_DIR
    control_socket: pathlib.Path = DEFAULT_CONTROL_SOCKET
    log_level: str = "INFO"
    # The agent's log also goes to this file, size-rotated (logsetup.py); None: journal only.
    log_file: pathlib.Path | None = None
    status_poll_interval: int = 60
    max_consecutive_failures: int = 3
    strategy: Strategy = "oldest"
    max_in_flight: int = 1
    own_application: str | None = None
    # None: pause state is the agent's own (journal). True/False: set by the charm, authoritative.
    paused: bool | None = None
    # With paused: when the pause ends by itself (None: when resumed), and why.
    paused_until: datetime.datetime | None = None
    pause_reason: str = ""
    # The key that signs Whirlwind's operations (HMAC); empty: the agent keeps its own.
    op_key: str = dataclasses.field(default="", repr=False)
    # Lifecycle policies (policies.py): self-healing, age limit, per-application overrides.
    heal: bool = True
    heal_after: int = 600
    heal_max_unhealthy: float = 0.5
    max_age: int = 0
    policies: tuple[tuple[str, policies_mod.Overrides], ...] = ()
    # Change windows (windows.py): when voluntary work may start; "" is always.
    windows: str = ""
    heal_in_windows: bool = False
    # Chaos arming (chaos/arming.py). None: the agent's own (journal); True/False: the charm's,
    # with when it ends, who armed it and when, and whether only as a dry run.
    chaos_armed: bool | None = None
    chaos_armed_until: datetime.datetime | None = None
    chaos_armed_by: str = ""
    chaos_armed_at: datetime.datetime | None = None
    chaos_dry_run: bool = False
    # Makes the chaos draws reproducible (None: a fresh seed); the journal records it.
    chaos_seed: int | None = None
    # Prometheus metrics on 127.0.0.1:<port> (metrics.py); 0: off.
    metrics_port: int = DEFAULT_METRICS_PORT
    # Alertmanager URL and label matchers whose firing alerts hold voluntary work (alerts.py).
    block_on_alerts: str = ""

    def __post_init__(self) -> None:
        check_timings(
            interval=self.interval,
            settle_period=self.settle_period,
            settle_timeout=self.settle_timeout,
            remove_timeout=self.remove_timeout,
        )
        check_lifecycle(
            services=self.services,
            interval=self.interval,
            settle_period=self.settle_period,
            settle_timeout=self.settle_timeout,
            remove_timeout=self.remove_timeout,
            heal_after=self.heal_after,
            heal_max_unhealthy=self.heal_max_unhealthy,
            max_age=self.max_age,
            policies=self.policies,
        )
        try:
            windows_mod.parse_windows(self.windows)
        except windows_mod.WindowError as exc:
            raise SettingsError(str(exc)) from None
        for name, most in (
            ("status_poll_interval", MAX_STATUS_POLL_INTERVAL),
            ("max_consecutive_failures", MAX_CONSECUTIVE_FAILURES),
            ("max_in_flight", MAX_IN_FLIGHT),
        ):
            _require_positive(_kebab(name), getattr(self, name))
            _require_at_most(_kebab(name), getattr(self, name), most)
        if self.log_level not in LOG_LEVELS:
            raise SettingsError(
                f"log-level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )
        if self.strategy not in STRATEGIES:
            raise SettingsError(
                f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}"
            )
        if not self.model_uuid:
            raise SettingsError("model-uuid is missing")
        check_chaos(self)
        check_observability(self)

    @property
    def chaos_arming(self) -> arming.Arming | None:
        """The charm's chaos arming (None: the settings carry none; the agent keeps its own)."""
        if self.chaos_armed is None:
            return None
        if not self.chaos_armed:
            return arming.Arming()
        return arming.Arming(
            True,
            self.chaos_armed_until,
            self.chaos_armed_by,
            self.chaos_armed_at,
            self.chaos_dry_run,
        )

    def policy_for(self, application: str) -> policies_mod.Policy:
        """The policy in effect for `application`: model-wide values with its overrides."""
        own = dict(self.policies).get(application, policies_mod.Overrides())

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        return policies_mod.Policy(
            interval=pick(own.interval, self.interval),
            max_age=pick(own.max_age, self.max_age),
            heal=pick(own.heal, self.heal),
            heal_after=pick(own.heal_after, self.heal_after),
            heal_max_unhealthy=self.heal_max_unhealthy,
            settle_period=pick(own.settle_period, self.settle_period),
            settle_timeout=pick(own.settle_timeout, self.settle_timeout),
            remove_timeout=self.remove_timeout,
            units=own.units,
            storage=pick(own.storage, "skip"),
            min_healthy=own.min_healthy,
            own_interval=own.interval is not None,
            windows=windows_mod.get_schedule(pick(own.windows, self.windows)),
            heal_in_windows=self.heal_in_windows,
            chaos=own.chaos,
        )

    def to_dict(
        self, password_file: pathlib.Path | None = None, op_key_file: pathlib.Path | None = None
    ) -> dict[str, Any]:
        """Kebab-case mapping in the schema `load_settings` reads (secrets inline or by file)."""
        data: dict[str, Any] = {
            "controller": self.controller.to_dict(password_file),
            "model-uuid": self.model_uuid,
            "services": list(self.services),
            "interval": self.interval,
            "settle-period": self.settle_period,
            "settle-timeout": self.settle_timeout,
            "remove-timeout": self.remove_timeout,
            "dry-run": self.dry_run,
            "state-dir": str(self.state_dir),
            "control-socket": str(self.control_socket),
            "log-level": self.log_level,
            "status-poll-interval": self.status_poll_interval,
            "max-consecutive-failures": self.max_consecutive_failures,
            "strategy": self.strategy,
            "max-in-flight": self.max_in_flight,
            "heal": self.heal,
            "heal-after": self.heal_after,
            "heal-max-unhealthy": self.heal_max_unhealthy,
            "max-age": self.max_age,
            "windows": self.windows,
            "heal-in-windows": self.heal_in_windows,
        }
        if self.metrics_port != DEFAULT_METRICS_PORT:
            data["metrics-port"] = self.metrics_port
        if self.block_on_alerts:
            data["block-on-alerts"] = self.block_on_alerts
        if self.log_file is not None:
            data["log-file"] = str(self.log_file)
        if self.policies:
            data["policies"] = {app: overrides.to_dict() for app, overrides in self.policies}
        if self.own_application is not None:
            data["own-application"] = self.own_application
        if self.paused is not None:
            data["paused"] = self.paused
        if self.paused and self.paused_until is not None:
            data["paused-until"] = self.paused_until.isoformat()
        if self.paused and self.pause_reason:
            data["pause-reason"] = self.pause_reason
        if self.chaos_armed is not None:
            data["chaos-armed"] = self.chaos_armed
        if self.chaos_armed and self.chaos_armed_until is not None:
            data["chaos-armed-until"] = self.chaos_armed_until.isoformat()
            data["chaos-armed-by"] = self.chaos_armed_by
            if self.chaos_armed_at is not None:
                data["chaos-armed-at"] = self.chaos_armed_at.isoformat()
            data["chaos-dry-run"] = self.chaos_dry_run
        if self.chaos_seed is not None:
            data["chaos-seed"] = self.chaos_seed
        if op_key_file is not None:
            data["op-key-file"] = str(op_key_file)
        elif self.op_key:
            data["op-key"] = self.op_key
        return data

    def describe(self) -> dict[str, Any]:
        """Effective settings for logs and status: everything but credentials."""
        data = self.to_dict()
        data.pop("op-key", None)
        data["controller"] = {
            "endpoints": list(self.controller.endpoints),
            "username": self.controller.username,
        }
        return data


def check_chaos(settings: AgentSettings) -> None:
    """Raise SettingsError naming the option when the chaos arming or seed does not fit."""
    until, at = settings.chaos_armed_until, settings.chaos_armed_at
    if not settings.chaos_armed:
        given = [
            option
            for option, value in (
                ("chaos-armed-until", until),
                ("chaos-armed-by", settings.chaos_armed_by),
                ("chaos-armed-at", at),
                ("chaos-dry-run", settings.chaos_dry_run),
            )
            if value
        ]
        if given:
            raise SettingsError(f"{given[0]}: only with chaos-armed: true")
    elif until is None:
        raise SettingsError("chaos-armed-until is missing (chaos-armed is true)")
    elif at is not None and not at < until <= at + datetime.timedelta(seconds=arming.MAX_DURATION):
        raise SettingsError(
            "chaos-armed-until must be after chaos-armed-at and at most 24h later, "
            f"got {until.isoformat()} and {at.isoformat()}"
        )
    try:
        arming.check_by(settings.chaos_armed_by)
    except arming.ArmingError as exc:
        raise SettingsError(f"chaos-armed-{exc}") from None
    seed = settings.chaos_seed
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_CHAOS_SEED
    ):
        raise SettingsError(f"chaos-seed must be a whole number 0..2**63-1, got {seed!r}")


def check_observability(settings: AgentSettings) -> None:
    """Raise SettingsError naming the option when metrics-port or block-on-alerts is wrong."""
    port = settings.metrics_port
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise SettingsError(
            f"metrics-port must be a port number 1..65535 or 0 (off), got {port!r}"
        )
    try:
        alerts_mod.parse_config(settings.block_on_alerts)
    except alerts_mod.AlertsConfigError as exc:
        raise SettingsError(f"block-on-alerts: {exc}") from None


def _parse_chaos(data: Mapping[str, Any]) -> dict[str, Any]:
    """AgentSettings keyword arguments from the chaos options present in `data`."""
    kwargs: dict[str, Any] = {}
    if data.get("chaos-armed") is not None:
        kwargs["chaos_armed"] = _get_bool(data, "chaos-armed")
    for option in ("chaos-armed-until", "chaos-armed-at"):
        if data.get(option) is not None:
            moment = pausing.parse_time(data[option])
            if moment is None:
                raise SettingsError(f"{option}: {data[option]!r} is not an ISO time with a zone")
            kwargs[option.replace("-", "_")] = moment
    if data.get("chaos-armed-by") is not None:
        kwargs["chaos_armed_by"] = _get_str(data, "chaos-armed-by")
    if "chaos-dry-run" in data:
        kwargs["chaos_dry_run"] = _get_bool(data, "chaos-dry-run")
    if data.get("chaos-seed") is not None:
        seed = data["chaos-seed"]
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise SettingsError(f"chaos-seed must be a whole number 0..2**63-1, got {seed!r}")
        kwargs["chaos_seed"] = seed
    return kwargs


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def check_timings(
    *, interval: int, settle_period: int, settle_timeout: int, remove_timeout: int
) -> None:
    """Raise SettingsError naming the option when the operator-facing timings do not fit."""
    _require_positive("interval", interval)
    _require_positive("settle-timeout", settle_timeout)
    _require_positive("remove-timeout", remove_timeout)
    if settle_period < 0:
        raise SettingsError(f"settle-period must be 0 or more, got {settle_period}")
    _require_at_most("interval", interval, MAX_INTERVAL)
    for option, value in (
        ("settle-period", settle_period),
        ("settle-timeout", settle_timeout),
        ("remove-timeout", remove_timeout),
    ):
        _require_at_most(option, value, MAX_TIMEOUT)
    if settle_period >= settle_timeout:
        raise SettingsError(
            f"settle-period ({settle_period}s) must be shorter than "
            f"settle-timeout ({settle_timeout}s)"
        )


def check_lifecycle(
    *,
    services: tuple[str, ...],
    interval: int,
    settle_period: int,
    settle_timeout: int,
    remove_timeout: int,
    heal_after: int,
    heal_max_unhealthy: float,
    max_age: int,
    policies: tuple[tuple[str, policies_mod.Overrides], ...],
) -> None:
    """Raise SettingsError naming the application and key when the lifecycle policy is wrong."""
    _require_at_most("heal-after", heal_after, policies_mod.MAX_AGE)
    _require_at_most("max-age", max_age, policies_mod.MAX_AGE)
    if heal_after < 0 or max_age < 0:
        raise SettingsError("heal-after and max-age must be 0 or more")
    if not 0 < heal_max_unhealthy <= 1:
        raise SettingsError(
            "heal-max-unhealthy must be a fraction above 0 and at most 1, "
            f"got {heal_max_unhealthy}"
        )
    for application, own in policies:
        if application not in services:
            raise SettingsError(f"policies: {application}: not in services")
        try:
            check_timings(
                interval=interval if own.interval is None else own.interval,
                settle_period=settle_period if own.settle_period is None else own.settle_period,
                settle_timeout=(
                    settle_timeout if own.settle_timeout is None else own.settle_timeout
                ),
                remove_timeout=remove_timeout,
            )
        except SettingsError as exc:
            raise SettingsError(f"policies: {application}: {exc}") from None


def parse_lifecycle(data: Mapping[str, Any], services: tuple[str, ...]) -> dict[str, Any]:
    """AgentSettings keyword arguments from the lifecycle options present in `data`.

    The same keys in the charm's config and the agent's settings file: heal, heal-after,
    heal-max-unhealthy, max-age (durations: seconds or 90s, 10m, 12h, 7d), policies (YAML
    text or a mapping of application to overrides), windows and heal-in-windows.
    """
    kwargs: dict[str, Any] = {}
    if "heal" in data:
        kwargs["heal"] = _get_bool(data, "heal")
    if "heal-in-windows" in data:
        kwargs["heal_in_windows"] = _get_bool(data, "heal-in-windows")
    if "windows" in data:
        value = data["windows"]
        try:
            kwargs["windows"] = windows_mod.parse_windows(value if value is not None else "").text
        except windows_mod.WindowError as exc:
            raise SettingsError(str(exc)) from None
    try:
        for option in ("heal-after", "max-age"):
            if option in data:
                kwargs[option.replace("-", "_")] = policies_mod.parse_duration(
                    data[option], option, most=policies_mod.MAX_AGE
                )
        kwargs["policies"] = tuple(
            policies_mod.parse_policies(data.get("policies"), services).items()
        )
    except policies_mod.PolicyError as exc:
        raise SettingsError(str(exc)) from None
    if "heal-max-unhealthy" in data:
        value = data["heal-max-unhealthy"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(
                f"heal-max-unhealthy must be a fraction such as 0.5, got {value!r}"
            )
        kwargs["heal_max_unhealthy"] = float(value)
    return kwargs


def _require_positive(option: str, value: int) -> None:
    if value <= 0:
        raise SettingsError(f"{option} must be greater than 0, got {value}")


def _require_at_most(option: str, value: int, most: int) -> None:
    if value > most:
        days = f" ({most // DAY} days)" if most >= DAY and most % DAY == 0 else ""
        raise SettingsError(f"{option} must be at most {most}{days}, got {value}")


def parse_services(value: str | Iterable[str]) -> tuple[str, ...]:
    """Application names from a comma/space separated string or a list; order kept, no repeats."""
    items = re.split(r"[,\s]+", value) if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise SettingsError(f"services: {item!r} is not an application name")
        name = item.strip()
        if not name:
            continue
        if not _APP_NAME.match(name):
            raise SettingsError(f"services: {name!r} is not a valid application name")
        if name not in names:
            names.append(name)
    return tuple(names)


def parse_endpoints(value: str | Iterable[str]) -> tuple[str, ...]:
    """Controller API addresses (host:port) from a comma/space separated string or a list."""
    items = re.split(r"[,\s]+", value) if isinstance(value, str) else list(value)
    endpoints: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise SettingsError(f"endpoints: {item!r} is not host:port")
        text = item.strip()
        if not text:
            continue
        match = _ENDPOINT.match(text)
        if match is None or not 0 < int(match.group(2)) < 65536:
            raise SettingsError(f"endpoints: {text!r} is not host:port")
        endpoints.append(text)
    if not endpoints:
        raise SettingsError("endpoints: no controller address given")
    return tuple(endpoints)


def validate_ca_cert(value: str) -> str:
    """Return the PEM text if it is a certificate TLS can load, else raise SettingsError."""
    text = value.strip()
    if "-----BEGIN CERTIFICATE-----" not in text or "-----END CERTIFICATE-----" not in text:
        raise SettingsError("ca-cert: not a PEM certificate")
    try:
        ssl.create_default_context(cadata=text + "\n")
    except (ssl.SSLError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        raise SettingsError(f"ca-cert: not a loadable certificate ({reason})") from None
    return text + "\n"


def parse_settings(
    data: Mapping[str, Any], *, base_dir: pathlib.Path | None = None
) -> AgentSettings:
    """Build AgentSettings from the kebab-case mapping; raise SettingsError naming the option."""
    if not isinstance(data, Mapping):
        raise SettingsError("settings: expected a mapping at the top level")
    known = {
        "controller", "model-uuid", "services", "interval", "settle-period", "settle-timeout",
        "remove-timeout", "dry-run", "state-dir", "control-socket", "log-level",
        "status-poll-interval", "max-consecutive-failures", "strategy", "max-in-flight",
        "own-application", "paused", "op-key", "op-key-file", "heal", "heal-after",
        "heal-max-unhealthy", "max-age", "policies", "windows", "heal-in-windows",
        "paused-until", "pause-reason", "chaos-armed", "chaos-armed-until", "chaos-armed-by",
        "chaos-armed-at", "chaos-dry-run", "chaos-seed", "metrics-port", "block-on-alerts",
        "log-file",
    }  # fmt: skip
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(f"unknown option {unknown[0]!r}")
    controller = _parse_controller(data.get("controller"), base_dir)
    kwargs: dict[str, Any] = {
        "controller": controller,
        "model_uuid": _get_str(data, "model-uuid", required=True),
        "services": parse_services(_get(data, "services", ())),
    }
    for option in ("interval", "settle-period", "settle-timeout", "remove-timeout"):
        if option in data:
            # Durations: plain seconds or 90s, 10m, 12h, 7d.
            try:
                kwargs[option.replace("-", "_")] = policies_mod.parse_duration(
                    data[option], option
                )
            except policies_mod.PolicyError as exc:
                raise SettingsError(str(exc)) from None
    for option in ("status-poll-interval", "max-consecutive-failures", "max-in-flight"):
        if option in data:
            kwargs[option.replace("-", "_")] = _get_int(data, option)
    if "dry-run" in data:
        kwargs["dry_run"] = _get_bool(data, "dry-run")
    kwargs.update(parse_lifecycle(data, kwargs["services"]))
    if "paused" in data and data["paused"] is not None:
        kwargs["paused"] = _get_bool(data, "paused")
    if data.get("paused-until") is not None:
        until = pausing.parse_time(data["paused-until"])
        if until is None:
            raise SettingsError(f"paused-until: {data['paused-until']!r} is not an ISO time")
        kwargs["paused_until"] = until
    if "pause-reason" in data:
        try:
            kwargs["pause_reason"] = pausing.check_reason(data["pause-reason"])
        except pausing.PauseError as exc:
            raise SettingsError(f"pause-{exc}") from None
    kwargs.update(_parse_chaos(data))
    if data.get("metrics-port") is not None:
        kwargs["metrics_port"] = _get_int(data, "metrics-port")
    if "block-on-alerts" in data:
        kwargs["block_on_alerts"] = _get_str(data, "block-on-alerts")
    for option in ("state-dir", "control-socket"):
        if option in data:
            kwargs[option.replace("-", "_")] = _get_path(data, option, base_dir)
    if "log-level" in data:
        kwargs["log_level"] = _get_str(data, "log-level", required=True).upper()
    if _get_str(data, "log-file"):  # empty: no log file
        kwargs["log_file"] = _get_path(data, "log-file", base_dir)
    if "strategy" in data:
        kwargs["strategy"] = _get_str(data, "strategy", required=True)
    if data.get("own-application") is not None:
        kwargs["own_application"] = _get_str(data, "own-application", required=True)
    if "op-key" in data and "op-key-file" in data:
        raise SettingsError("give at most one of op-key or op-key-file")
    if "op-key" in data:
        kwargs["op_key"] = _get_str(data, "op-key", required=True)
    elif "op-key-file" in data:
        kwargs["op_key"] = read_secret_file(
            _get_path(data, "op-key-file", base_dir), "op-key-file"
        )
    return AgentSettings(**kwargs)


def _parse_controller(value: Any, base_dir: pathlib.Path | None) -> ControllerSettings:
    if not isinstance(value, Mapping):
        raise SettingsError("controller: expected a mapping with endpoints, ca-cert, username")
    unknown = sorted(
        set(value) - {"endpoints", "ca-cert", "username", "password", "password-file"}
    )
    if unknown:
        raise SettingsError(f"controller: unknown option {unknown[0]!r}")
    if "endpoints" not in value:
        raise SettingsError("controller.endpoints is missing")
    endpoints = parse_endpoints(value["endpoints"])
    ca_cert = validate_ca_cert(_get_str(value, "ca-cert", required=True, prefix="controller."))
    username = _get_str(value, "username", required=True, prefix="controller.")
    if ("password" in value) == ("password-file" in value):
        raise SettingsError("controller: give exactly one of password or password-file")
    if "password" in value:
        password = _get_str(value, "password", required=True, prefix="controller.")
    else:
        path = _get_path(value, "password-file", base_dir, prefix="controller.")
        password = read_password_file(path)
    return ControllerSettings(
        endpoints=endpoints, ca_cert=ca_cert, username=username, password=password
    )


def read_password_file(path: pathlib.Path) -> str:
    """The password kept in `path`, exactly, or SettingsError saying what is wrong."""
    return read_secret_file(path, "controller.password-file")


def read_secret_file(path: pathlib.Path, option: str) -> str:
    """A secret written as its exact text plus one newline (only that newline is removed)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{option}: cannot read {path}: {exc.strerror}") from None
    secret = text.removesuffix("\n")
    if not secret.strip():
        raise SettingsError(f"{option}: {path} is empty")
    return secret


def _get(data: Mapping[str, Any], option: str, default: Any) -> Any:
    value = data.get(option)
    return default if value is None else value


def _get_str(
    data: Mapping[str, Any], option: str, *, required: bool = False, prefix: str = ""
) -> str:
    value = data.get(option)
    if value is None or value == "":
        if required:
            raise SettingsError(f"{prefix}{option} is missing")
        return ""
    if not isinstance(value, str):
        raise SettingsError(f"{prefix}{option} must be a string, got {type(value).__name__}")
    return value


def _get_int(data: Mapping[str, Any], option: str) -> int:
    value = data[option]
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"{option} must be a whole number of seconds, got {value!r}")
    return value


def _get_bool(data: Mapping[str, Any], option: str) -> bool:
    value = data[option]
    if not isinstance(value, bool):
        raise SettingsError(f"{option} must be true or false, got {value!r}")
    return value


def _get_path(
    data: Mapping[str, Any], option: str, base_dir: pathlib.Path | None, prefix: str = ""
) -> pathlib.Path:
    path = pathlib.Path(_get_str(data, option, required=True, prefix=prefix)).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def load_settings(path: pathlib.Path) -> AgentSettings:
    """Read and validate a settings YAML file; relative paths are taken from its folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SettingsError(f"settings file {path} is not valid YAML{where}") from None
    return parse_settings(data or {}, base_dir=path.parent.resolve())


def dump_settings(
    settings: AgentSettings,
    password_file: pathlib.Path | None = None,
    op_key_file: pathlib.Path | None = None,
) -> str:
    """YAML text of the settings; secrets given a file are referenced, not written."""
    return yaml.safe_dump(settings.to_dict(password_file, op_key_file), sort_keys=False)


def write_file_atomically(path: pathlib.Path, content: str, mode: int = 0o644) -> bool:
    """Replace `path` with `content` atomically with `mode`; return whether it changed."""
    try:
        if path.read_text(encoding="utf-8") == content and (path.stat().st_mode & 0o777) == mode:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        # mkstemp creates the file 0600, so secrets are never readable in between.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        pathlib.Path(tmp_name).unlink(missing_ok=True)
        raise
    return True

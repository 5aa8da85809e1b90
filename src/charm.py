#!/usr/bin/env python3
"""Whirlwind charm: events feed one idempotent reconcile; actions talk to the local agent."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import re
import secrets
from collections.abc import Mapping
from typing import Any

import ops

import cos
import workload
from charms.whirlwind.v0 import controller_credentials
from whirlwind import alerts, control, pausing, policies, settings, windows
from whirlwind.chaos import arming

logger = logging.getLogger(__name__)

CONTROLLER_RELATION = "controller"
PEER_RELATION = "whirlwind-peers"
COS_AGENT_RELATION = cos.RELATION_NAME
METRICS_PORT_RANGE = (1024, 65535)
PAUSED_KEY = "paused"
PAUSED_SINCE_KEY = "paused-since"
PAUSED_UNTIL_KEY = "paused-until"
PAUSE_REASON_KEY = "pause-reason"
LEADER_KEY = "leader"
# The chaos arming in the peer app databag: armed, until, by (action and unit), at, dry-run.
CHAOS_ARMED_KEY = "chaos-armed"
CHAOS_ARMED_UNTIL_KEY = "chaos-armed-until"
CHAOS_ARMED_BY_KEY = "chaos-armed-by"
CHAOS_ARMED_AT_KEY = "chaos-armed-at"
CHAOS_DRY_RUN_KEY = "chaos-dry-run"
CHAOS_DETAIL_KEYS = (
    CHAOS_ARMED_UNTIL_KEY,
    CHAOS_ARMED_BY_KEY,
    CHAOS_ARMED_AT_KEY,
    CHAOS_DRY_RUN_KEY,
)
# `juju bootstrap` names the controller's own model so; the agent also checks the watcher's
# is-controller flag (state.Model.IsControllerModel), which a charm cannot see.
CONTROLLER_MODEL_NAME = "controller"
# The peer app databag names the application-owned secret holding the key that signs
# Whirlwind's operations (the key itself never goes into relation data, which every model
# user can read with `juju show-unit`).
OP_KEY_SECRET_KEY = "op-key-secret"
OP_KEY_CONTENT_KEY = "op-key"
OP_KEY_LABEL = "whirlwind-op-key"
LOG_LEVELS = ("debug", "info", "warning", "error")
STATUS_TIMEOUT = 2.0  # seconds; status is collected in every hook, so keep it short
ACTION_TIMEOUT = 30.0
REPLACE_MARGIN = 300  # seconds on top of settle-timeout + remove-timeout
STANDBY_MESSAGE = "Standby: the leader's agent is active"
HISTORY_DEFAULT = 10  # operations the history action shows, as in actions.yaml
HISTORY_MAX = 100


@dataclasses.dataclass(frozen=True)
class WhirlwindConfig:
    """The charm's config options; invalid values raise ValueError naming the option."""

    interval: int = 600
    services: str = ""
    settle_period: int = 60
    settle_timeout: int = 1800
    remove_timeout: int = 900
    dry_run: bool = False
    credentials: ops.Secret | None = None
    log_level: str = "info"
    max_in_flight: int = 1
    heal: bool = True
    heal_after: str = "10m"
    heal_max_unhealthy: float = 0.5
    max_age: str = "0"
    policies: str = ""
    windows: str = ""
    heal_in_windows: bool = False
    metrics_port: int = settings.DEFAULT_METRICS_PORT
    block_on_alerts: str = ""

    def __post_init__(self) -> None:
        # The same rules and messages as the agent's own settings (SettingsError is a ValueError).
        settings.check_timings(
            interval=self.interval,
            settle_period=self.settle_period,
            settle_timeout=self.settle_timeout,
            remove_timeout=self.remove_timeout,
        )
        if self.log_level.lower() not in LOG_LEVELS:
            raise ValueError(
                f"log-level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )
        settings.parse_services(self.services)  # its message starts with "services:"
        if not 1 <= self.max_in_flight <= settings.MAX_IN_FLIGHT:
            raise ValueError(
                f"max-in-flight must be a whole number 1..{settings.MAX_IN_FLIGHT}, "
                f"got {self.max_in_flight}"
            )
        self.windows_text  # noqa: B018 (validates: "windows: 'x' is not [days] ...")
        low, high = METRICS_PORT_RANGE
        if isinstance(self.metrics_port, bool) or not low <= self.metrics_port <= high:
            raise ValueError(
                f"metrics-port must be a port number {low}..{high}, got {self.metrics_port}"
            )
        try:
            alerts.parse_config(self.block_on_alerts)
        except alerts.AlertsConfigError as exc:
            raise ValueError(f"block-on-alerts: {exc}") from None
        # Names the application and key: "policies: db: units: expected a whole number ...".
        settings.check_lifecycle(
            services=self.service_names,
            interval=self.interval,
            settle_period=self.settle_period,
            settle_timeout=self.settle_timeout,
            remove_timeout=self.remove_timeout,
            **self.lifecycle,
        )

    @property
    def service_names(self) -> tuple[str, ...]:
        """The target applications, in the order given."""
        return settings.parse_services(self.services)

    @property
    def windows_text(self) -> str:
        """The change windows, normalised ("" is always open)."""
        try:
            return windows.parse_windows(self.windows).text
        except windows.WindowError as exc:
            raise ValueError(str(exc)) from None

    @property
    def lifecycle(self) -> dict[str, Any]:
        """heal-after, heal-max-unhealthy, max-age and policies as AgentSettings arguments."""
        parsed = settings.parse_lifecycle(
            {
                "heal": self.heal,
                "heal-after": self.heal_after,
                "heal-max-unhealthy": self.heal_max_unhealthy,
                "max-age": self.max_age,
                "policies": self.policies,
            },
            self.service_names,
        )
        del parsed["heal"]  # a plain bool, passed as it is
        return parsed

    @property
    def chaos_applications(self) -> tuple[str, ...]:
        """The applications that opted in to failure injection (a `chaos` policy)."""
        return tuple(app for app, own in self.lifecycle["policies"] if own.chaos is not None)


@dataclasses.dataclass(frozen=True)
class ReplaceNowParams:
    """Parameters of the replace-now action."""

    service: str
    unit: str | None = None
    wait: bool = True
    dry_run: bool | None = None

    def __post_init__(self) -> None:
        try:
            names = settings.parse_services(self.service)
        except settings.SettingsError:
            names = ()
        if len(names) != 1 or names[0] != self.service.strip():
            raise ValueError(f"service: {self.service!r} is not one application name")
        if self.unit and not re.fullmatch(rf"{re.escape(names[0])}/[0-9]+", self.unit):
            raise ValueError(
                f"unit: {self.unit!r} is not a unit of {names[0]} (like {names[0]}/3)"
            )


@dataclasses.dataclass(frozen=True)
class HistoryParams:
    """Parameters of the history action ("" is the same as not given)."""

    limit: int = HISTORY_DEFAULT
    service: str = ""
    id: str = ""

    def __post_init__(self) -> None:
        limit = self.limit
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= HISTORY_MAX:
            raise ValueError(
                f"limit: must be a whole number from 1 to {HISTORY_MAX}, got {limit!r}"
            )
        if self.service.strip() and not control.is_application_name(self.service.strip()):
            raise ValueError(f"service: {self.service!r} is not one application name")


@dataclasses.dataclass(frozen=True)
class PauseParams:
    """Parameters of the pause action: how long (90s, 30m, 2h, 3d; empty: until resume), why."""

    duration: str = ""
    reason: str = ""

    def __post_init__(self) -> None:
        self.seconds  # noqa: B018 (validates)
        try:
            pausing.check_reason(self.reason)
        except pausing.PauseError as exc:
            raise ValueError(str(exc)) from None

    @property
    def seconds(self) -> int | None:
        """The duration in seconds (None: until resumed)."""
        if not self.duration.strip():
            return None
        try:
            return pausing.check_duration(policies.parse_duration(self.duration, "duration"))
        except (policies.PolicyError, pausing.PauseError) as exc:
            text = str(exc)
            text = text if text.startswith("duration") else f"duration: {text}"
            raise ValueError(text) from None


@dataclasses.dataclass(frozen=True)
class ArmChaosParams:
    """Parameters of the arm-chaos action: the model's name, and for how long (at most 24h)."""

    confirm: str = ""
    duration: str = ""
    dry_run: bool = False

    def __post_init__(self) -> None:
        self.seconds  # noqa: B018 (validates)

    @property
    def seconds(self) -> int:
        """The duration in seconds."""
        try:
            return arming.check_duration(self.duration)
        except arming.ArmingError as exc:
            raise ValueError(str(exc)) from None


@dataclasses.dataclass(frozen=True)
class PauseState:
    """The pause switch kept in the peer relation's app databag (times as ISO text)."""

    paused: bool = False
    since: str | None = None
    until: str | None = None
    reason: str = ""


class WhirlwindCharm(ops.CharmBase):
    """Runs the Whirlwind agent on the leader unit."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.credentials = controller_credentials.ControllerCredentialsRequirer(
            self, CONTROLLER_RELATION
        )
        for event in (
            self.on.install,
            self.on.start,
            self.on.config_changed,
            self.on.leader_elected,
            self.on.update_status,
            self.on.secret_changed,
            self.on[CONTROLLER_RELATION].relation_changed,
            self.on[CONTROLLER_RELATION].relation_broken,
            self.on[PEER_RELATION].relation_created,
            self.on[PEER_RELATION].relation_changed,
            self.on[COS_AGENT_RELATION].relation_joined,
            self.on[COS_AGENT_RELATION].relation_changed,
        ):
            framework.observe(event, self._on_change)
        framework.observe(self.on.upgrade_charm, self._on_upgrade_charm)
        framework.observe(self.on.remove, self._on_remove)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(self.on.pause_action, self._on_pause_action)
        framework.observe(self.on.resume_action, self._on_resume_action)
        framework.observe(self.on.replace_now_action, self._on_replace_now_action)
        framework.observe(self.on.history_action, self._on_history_action)
        framework.observe(self.on.plan_action, self._on_plan_action)
        framework.observe(self.on.arm_chaos_action, self._on_arm_chaos_action)
        framework.observe(self.on.disarm_chaos_action, self._on_disarm_chaos_action)

    # Hooks: thin, all through the one reconcile.

    def _on_change(self, _: ops.EventBase) -> None:
        self._reconcile()

    def _on_upgrade_charm(self, _: ops.UpgradeCharmEvent) -> None:
        # The agent's code came with the charm: restart even if no file changed.
        self._reconcile(restart=True)

    def _on_remove(self, _: ops.RemoveEvent) -> None:
        self._get_workload().remove()

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        event.add_status(self._get_status())

    def _on_pause_action(self, event: ops.ActionEvent) -> None:
        params = event.load_params(PauseParams, errors="fail")
        self._set_paused(event, paused=True, duration=params.seconds, reason=params.reason)

    def _on_resume_action(self, event: ops.ActionEvent) -> None:
        self._set_paused(event, paused=False)

    def _on_arm_chaos_action(self, event: ops.ActionEvent) -> None:
        self._set_armed(event, event.load_params(ArmChaosParams, errors="fail"))

    def _on_disarm_chaos_action(self, event: ops.ActionEvent) -> None:
        self._set_armed(event, None)

    # Factories (tests replace them with fakes).

    def _get_paths(self) -> workload.WorkloadPaths:
        """Where the machine side keeps its files and the agent its socket and journal."""
        return workload.WorkloadPaths()

    def _get_workload(self) -> workload.Workload:
        """The machine side of this unit."""
        return workload.Workload(self.unit.name, self.charm_dir, self._get_paths())

    def _get_control_client(self, timeout: float) -> control.ControlClient:
        """A client for the local agent's control socket."""
        return control.ControlClient(self._get_paths().control_socket, timeout=timeout)

    # Reconcile.

    def _reconcile(self, restart: bool = False) -> None:
        """Make the machine match the inputs, then publish this unit's cos-agent data."""
        desired = self._reconcile_agent(restart)
        self._publish_cos_agent(desired.metrics_port if desired is not None else None)

    def _reconcile_agent(self, restart: bool = False) -> settings.AgentSettings | None:
        """Make the machine match config, credentials, leadership and the pause switch.

        Returns the settings the agent runs with here (None: it does not run on this unit).
        """
        machine = self._get_workload()
        if not self.unit.is_leader():
            if machine.stop_and_disable():
                logger.info("stopped the agent: this unit is not the leader")
            machine.remove_credentials()
            return None
        self._record_leader()
        self._ensure_op_key()
        desired = self._get_agent_settings()
        if isinstance(desired, ops.StatusBase):
            if machine.stop_and_disable():
                logger.warning("stopped the agent: %s", desired.message)
            machine.remove_credentials()
            return None
        changed = machine.configure(desired)
        try:
            result = machine.ensure_running(changed, restart=restart)
        except workload.WorkloadError as exc:
            # The status says "not running"; update-status tries again.
            logger.error("%s", exc)
            return desired
        if result is not workload.StartResult.UNCHANGED:
            logger.info("agent %s", result.value)
        return desired

    def _publish_cos_agent(self, metrics_port: int | None) -> None:
        """Rules and dashboards from every unit; the scrape job where the agent runs."""
        relation = self.model.get_relation(COS_AGENT_RELATION)
        if relation is None:
            return
        topology = cos.Topology(
            model=self.model.name,
            model_uuid=self.model.uuid,
            application=self.app.name,
            unit=self.unit.name,
            charm_name=self.meta.name,
        )
        data = cos.build_unit_data(self.charm_dir, topology, metrics_port)
        text = cos.dump_unit_data(data)
        databag = relation.data[self.unit]
        if databag.get(cos.DATA_KEY) != text:
            databag[cos.DATA_KEY] = text
            logger.info(
                "published the cos-agent data (%s)",
                f"scrape job on port {metrics_port}" if metrics_port else "no scrape job",
            )

    def _ensure_op_key(self) -> None:
        """The leader creates the operation-signing key once (an app-owned secret)."""
        peer = self.model.get_relation(PEER_RELATION)
        if peer is None or peer.data[self.app].get(OP_KEY_SECRET_KEY):
            return
        secret = self.app.add_secret(
            {OP_KEY_CONTENT_KEY: secrets.token_hex(32)},
            label=OP_KEY_LABEL,
            description="signs Whirlwind's operations, so only its units adopt them",
        )
        peer.data[self.app][OP_KEY_SECRET_KEY] = secret.id or secret.get_info().id
        logger.info("created the operation-signing key")

    def _get_op_key(self) -> str | ops.WaitingStatus:
        """The operation-signing key from the secret the peer data names."""
        peer = self.model.get_relation(PEER_RELATION)
        secret_id = peer.data[self.app].get(OP_KEY_SECRET_KEY) if peer is not None else None
        if not secret_id:
            return ops.WaitingStatus("Waiting for the leader to create the operation key")
        try:
            content = self.model.get_secret(id=secret_id).get_content(refresh=True)
        except ops.ModelError:
            return ops.WaitingStatus("Waiting for access to the operation key secret")
        key = content.get(OP_KEY_CONTENT_KEY, "")
        return key or ops.WaitingStatus("Waiting for the operation key")

    def _record_leader(self) -> None:
        """Tell the other units who leads, so their actions can say where to run."""
        peer = self.model.get_relation(PEER_RELATION)
        if peer is not None and peer.data[self.app].get(LEADER_KEY) != self.unit.name:
            peer.data[self.app][LEADER_KEY] = self.unit.name

    # Inputs.

    def _load_config(self) -> WhirlwindConfig | ops.BlockedStatus:
        """The typed config, or a blocked status naming the option and the problem."""
        try:
            config = self.load_config(WhirlwindConfig)
        except ValueError as exc:
            return ops.BlockedStatus(f"Invalid config: {exc}")
        if self.app.name in config.service_names:
            return ops.BlockedStatus(
                f"Invalid config: services: {self.app.name} is this application; "
                "Whirlwind never replaces its own units"
            )
        return config

    def _get_pause_state(self) -> PauseState:
        """The pause switch from the peer app databag (not paused without a peer relation)."""
        peer = self.model.get_relation(PEER_RELATION)
        if peer is None:
            return PauseState()
        data = peer.data[self.app]
        if data.get(PAUSED_KEY) != "true":
            return PauseState()
        until = data.get(PAUSED_UNTIL_KEY) or None
        ends = pausing.parse_time(until)
        if ends is not None and ends <= datetime.datetime.now(datetime.timezone.utc):
            return PauseState()  # a timed pause that has ended (the agent resumed itself)
        return PauseState(
            paused=True,
            since=data.get(PAUSED_SINCE_KEY) or None,
            until=until,
            reason=data.get(PAUSE_REASON_KEY, ""),
        )

    def _get_arming(self) -> arming.Arming:
        """The chaos arming from the peer app databag (none without it; an expired one: none)."""
        peer = self.model.get_relation(PEER_RELATION)
        if peer is None:
            return arming.Arming()
        data = peer.data[self.app]
        kept = arming.Arming.from_state(
            {
                "armed": data.get(CHAOS_ARMED_KEY) == "true",
                "until": data.get(CHAOS_ARMED_UNTIL_KEY),
                "by": data.get(CHAOS_ARMED_BY_KEY),
                "at": data.get(CHAOS_ARMED_AT_KEY),
                "dry-run": data.get(CHAOS_DRY_RUN_KEY) == "true",
            }
        )
        return arming.expire(kept, _now())

    def _get_credentials(
        self, config: WhirlwindConfig
    ) -> controller_credentials.ControllerCredentials | ops.BlockedStatus | ops.WaitingStatus:
        """Credentials from the relation, else from the `credentials` secret, else why not."""
        # A provider must not name the operator's own secret (and send its password to the
        # provider's endpoints): the credentials option's secret is refused on the relation.
        refused = [config.credentials.id] if config.credentials and config.credentials.id else []
        result = self.credentials.get_credentials(refused_secret_ids=refused)
        if result is None:
            if config.credentials is None:
                return ops.BlockedStatus(
                    "Missing controller credentials: integrate with a credentials provider "
                    f"or set credentials=secret:<id> (juju config {self.app.name} ...)"
                )
            secret_id = config.credentials.id
            try:
                content = config.credentials.get_content(refresh=True)
            except ops.ModelError:
                return ops.BlockedStatus(
                    f"Invalid config: credentials: cannot read {secret_id}; "
                    f"run juju grant-secret <secret> {self.app.name}"
                )
            result = controller_credentials.credentials_from_secret_content(content)
            if isinstance(result, controller_credentials.CredentialsInvalid):
                return ops.BlockedStatus(f"Invalid config: credentials: {result.reason}")
        if isinstance(result, controller_credentials.CredentialsWaiting):
            return ops.WaitingStatus(_capitalise(result.reason))
        if isinstance(result, controller_credentials.CredentialsInvalid):
            return ops.BlockedStatus(f"Invalid controller credentials: {result.reason}")
        return result

    def _get_agent_settings(
        self, config: WhirlwindConfig | ops.BlockedStatus | None = None
    ) -> settings.AgentSettings | ops.BlockedStatus | ops.WaitingStatus:
        """The settings the agent should run with, or the status saying why there are none."""
        config = self._load_config() if config is None else config
        if isinstance(config, ops.BlockedStatus):
            return config
        credentials = self._get_credentials(config)
        if isinstance(credentials, ops.StatusBase):
            return credentials
        if self.model.get_relation(PEER_RELATION) is None:
            # Without it the pause switch is unknown: never start an agent that may be paused.
            return ops.WaitingStatus("Waiting for the peer relation (pause state)")
        op_key = self._get_op_key()
        if isinstance(op_key, ops.StatusBase):
            return op_key
        endpoints, ca_cert = credentials.endpoints, credentials.ca_cert
        if not endpoints or not ca_cert:
            own = self._get_workload().read_agent_controller_info()
            endpoints = endpoints or (own.endpoints if own else ())
            ca_cert = ca_cert or (own.ca_cert if own else None)
        if not endpoints or not ca_cert:
            missing = "endpoints" if not endpoints else "ca-cert"
            return ops.BlockedStatus(
                f"Missing controller {missing}: not in the credentials and not readable "
                "from this unit's agent.conf; add it to the credentials"
            )
        pause = self._get_pause_state()
        chaos = self._get_arming()
        try:
            return settings.AgentSettings(
                controller=settings.ControllerSettings(
                    endpoints=settings.parse_endpoints(endpoints),
                    ca_cert=settings.validate_ca_cert(ca_cert),
                    username=credentials.username,
                    password=credentials.password,
                ),
                model_uuid=self.model.uuid,
                services=config.service_names,
                interval=config.interval,
                settle_period=config.settle_period,
                settle_timeout=config.settle_timeout,
                remove_timeout=config.remove_timeout,
                dry_run=config.dry_run,
                state_dir=self._get_paths().state_dir,
                control_socket=self._get_paths().control_socket,
                log_level=config.log_level.upper(),
                log_file=self._get_paths().log_file,
                own_application=self.app.name,
                paused=pause.paused,
                paused_until=pausing.parse_time(pause.until) if pause.paused else None,
                pause_reason=pause.reason if pause.paused else "",
                op_key=op_key,
                max_in_flight=config.max_in_flight,
                heal=config.heal,
                windows=config.windows_text,
                heal_in_windows=config.heal_in_windows,
                chaos_armed=chaos.armed,
                chaos_armed_until=chaos.until,
                chaos_armed_by=chaos.by,
                chaos_armed_at=chaos.at,
                chaos_dry_run=chaos.dry_run,
                metrics_port=config.metrics_port,
                block_on_alerts=config.block_on_alerts,
                **config.lifecycle,
            )
        except settings.SettingsError as exc:
            return ops.BlockedStatus(f"Invalid controller credentials: {exc}")

    # Status.

    def _get_status(self) -> ops.StatusBase:
        """The one unit status: what to fix, what to wait for, or what the agent does."""
        config = self._load_config()
        if isinstance(config, ops.BlockedStatus):
            return config
        if not self.unit.is_leader():
            return ops.ActiveStatus(self._get_standby_message())
        desired = self._get_agent_settings(config)
        if isinstance(desired, ops.StatusBase):
            return desired
        if not self._get_workload().is_running():
            return ops.MaintenanceStatus(
                f"Agent not running yet (see journalctl -u {workload.SERVICE_NAME})"
            )
        try:
            agent = self._get_control_client(STATUS_TIMEOUT).status()
        except (control.AgentUnavailableError, control.ControlError) as exc:
            logger.info("agent status unavailable: %s", exc)
            agent = None
        return describe_status(
            config,
            self._get_pause_state(),
            agent,
            datetime.datetime.now(datetime.timezone.utc),
            chaos=self._get_arming(),
        )

    def _get_standby_message(self) -> str:
        """Standby, naming the leader whose agent works when this unit knows it."""
        peer = self.model.get_relation(PEER_RELATION)
        leader = peer.data[self.app].get(LEADER_KEY) if peer is not None else None
        if leader and leader != self.unit.name:
            return f"Standby: the agent runs on the leader ({leader})"
        return STANDBY_MESSAGE

    # Actions.

    def _set_paused(
        self,
        event: ops.ActionEvent,
        paused: bool,
        duration: int | None = None,
        reason: str = "",
    ) -> None:
        """Pause or resume: persist in the peer databag, re-render, tell the running agent."""
        verb = "pause" if paused else "resume"
        if not self.unit.is_leader():
            event.fail(self._not_leader_message())
            return
        peer = self.model.get_relation(PEER_RELATION)
        if peer is None:
            event.fail("The peer relation is not set up yet; try again in a minute")
            return
        before = self._get_pause_state()
        reason = pausing.check_reason(reason)
        if paused:
            now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
            until = now + datetime.timedelta(seconds=duration) if duration else None
            after = PauseState(
                True,
                before.since if before.paused else now.isoformat(),
                until.isoformat() if until else None,
                reason,
            )
        else:
            after = PauseState()
        changed = after != before
        data = peer.data[self.app]
        if changed and paused:
            data.update({PAUSED_KEY: "true", PAUSED_SINCE_KEY: after.since or ""})
            data.update({PAUSED_UNTIL_KEY: after.until or "", PAUSE_REASON_KEY: after.reason})
        elif changed:
            data[PAUSED_KEY] = "false"
            for key in (PAUSED_SINCE_KEY, PAUSED_UNTIL_KEY, PAUSE_REASON_KEY):
                data.pop(key, None)
        event.log(f"{verb}d in the charm state" if changed else f"already {verb}d")
        self._reconcile()
        try:
            client = self._get_control_client(ACTION_TIMEOUT)
            reply = client.pause(duration, reason) if paused else client.resume()
        except control.AgentUnavailableError as exc:
            event.log(f"agent not reached ({exc}); it reads the {verb} state when it starts")
        except control.ControlError as exc:
            event.log(f"agent did not confirm ({exc.code}): {exc.message}")
        else:
            changed = changed or bool(reply.get("changed"))
            event.log(f"agent {verb}d" if reply.get("changed") else f"agent was already {verb}d")
        state = self._get_pause_state()
        if paused:
            text = _describe_pause(state)
            message = text if changed else f"already {text}"
        else:
            message = "resumed" if changed else "already running (not paused)"
        event.set_results(
            {
                "paused": _flag(state.paused),
                "changed": _flag(changed),
                "paused-since": state.since or "",
                "paused-until": state.until or "",
                "reason": state.reason,
                "message": message,
            }
        )

    def _set_armed(self, event: ops.ActionEvent, params: ArmChaosParams | None) -> None:
        """Arm (params) or disarm chaos: persist in the peer databag, re-render, tell the agent."""
        if not self.unit.is_leader():
            event.fail(self._not_leader_message())
            return
        peer = self.model.get_relation(PEER_RELATION)
        if peer is None:
            event.fail("The peer relation is not set up yet; try again in a minute")
            return
        before = self._get_arming()
        after = arming.Arming()
        if params is not None:
            # Juju tells a charm the action's id and unit (JUJU_ACTION_UUID, in
            # worker/uniter/runner/context/context.go), never the user who ran it.
            by = f"arm-chaos action {event.id} on {self.unit.name}"
            try:
                after = arming.arm(
                    _now().replace(microsecond=0),
                    params.duration,
                    by,
                    params.dry_run,
                    params.confirm,
                    self.model.name,
                    controller_model=self.model.name == CONTROLLER_MODEL_NAME,
                )
            except arming.ArmingError as exc:
                event.fail(f"Refused: {exc}")
                return
            event.log(f"armed by {by}: Juju does not tell the charm which user ran the action")
        changed = after != before
        data = peer.data[self.app]
        if after.armed:
            data[CHAOS_ARMED_KEY] = "true"
            data[CHAOS_ARMED_UNTIL_KEY] = after.until.isoformat() if after.until else ""
            data[CHAOS_ARMED_AT_KEY] = after.at.isoformat() if after.at else ""
            data[CHAOS_ARMED_BY_KEY] = after.by
            data[CHAOS_DRY_RUN_KEY] = _flag(after.dry_run)
        elif changed or data.get(CHAOS_ARMED_KEY) == "true":  # an expired arming too
            data[CHAOS_ARMED_KEY] = "false"
            for key in CHAOS_DETAIL_KEYS:
                data.pop(key, None)
        self._reconcile()
        verb = "arm" if params is not None else "disarm"
        try:
            client = self._get_control_client(ACTION_TIMEOUT)
            if params is not None:
                reply = client.arm_chaos(params.seconds, params.confirm, params.dry_run, after.by)
            else:
                reply = client.disarm_chaos()
        except control.AgentUnavailableError as exc:
            event.log(f"agent not reached ({exc}); it reads the arming when it starts")
        except control.ControlError as exc:
            event.log(f"agent did not confirm ({exc.code}): {exc.message}")
        else:
            changed = changed or bool(reply.get("changed"))
            event.log(f"agent {verb}ed" if reply.get("changed") else f"agent was already {verb}ed")
        config = self._load_config()
        apps = config.chaos_applications if isinstance(config, WhirlwindConfig) else ()
        if params is not None:
            text = _describe_chaos(after, apps)
        else:
            text = "chaos disarmed" if changed else "already disarmed (chaos not armed)"
        event.set_results(
            {
                "chaos-armed": _flag(after.armed),
                "changed": _flag(changed),
                "armed-until": after.until.isoformat() if after.until else "",
                "armed-by": after.by,
                "armed-at": after.at.isoformat() if after.at else "",
                "dry-run": _flag(after.dry_run),
                "applications": ", ".join(apps),
                "message": _capitalise(text),
            }
        )

    def _on_replace_now_action(self, event: ops.ActionEvent) -> None:
        params = event.load_params(ReplaceNowParams, errors="fail")
        if not self.unit.is_leader():
            event.fail(self._not_leader_message())
            return
        config = self._load_config()
        if isinstance(config, ops.BlockedStatus):
            event.fail(config.message)
            return
        if self._get_pause_state().paused:
            event.fail("Whirlwind is paused: run the resume action first")
            return
        request = control.ReplaceNowRequest(
            service=params.service.strip(),
            unit=params.unit or None,
            wait=params.wait,
            dry_run=params.dry_run,
        )
        timeout = (
            config.settle_timeout + config.remove_timeout + REPLACE_MARGIN
            if params.wait
            else ACTION_TIMEOUT
        )
        target = request.unit or f"a unit of {request.service}"
        event.log(
            f"asking the agent to replace {target}" + (" and waiting" if params.wait else "")
        )
        try:
            reply = self._get_control_client(ACTION_TIMEOUT).replace_now(request, timeout=timeout)
        except control.AgentUnavailableError as exc:
            event.fail(f"Agent not running: {exc}")
            return
        except control.ControlError as exc:
            event.fail(_describe_control_error(exc, request.service))
            return
        results = _operation_results(reply if isinstance(reply, Mapping) else {})
        event.set_results(results)
        outcome = results.get("result", "")
        event.log(f"{results.get('old-unit', target)}: {outcome}")
        if outcome in ("failed", "rolled-back"):
            reason = results.get("reason") or "no reason given"
            event.fail(f"Replacement of {results.get('old-unit', target)} {outcome}: {reason}")

    def _on_history_action(self, event: ops.ActionEvent) -> None:
        params = event.load_params(HistoryParams, errors="fail")
        if not self.unit.is_leader():
            event.fail(self._not_leader_message())
            return
        service = params.service.strip() or None
        op_id = params.id.strip() or None
        not_found = f"operation {op_id!r} not found" + (
            f" for service {service!r}" if service else ""
        )
        try:
            reply = self._get_control_client(ACTION_TIMEOUT).history(
                params.limit, service=service, op_id=op_id
            )
        except control.AgentUnavailableError as exc:
            event.fail(f"Agent not running: {exc}")
            return
        except control.ControlError as exc:
            if exc.code == control.UNKNOWN_OPERATION:
                event.fail(not_found)
            else:
                event.fail(_describe_control_error(exc, service or ""))
            return
        entries: list[Mapping[str, Any]] = (
            [e for e in reply if isinstance(e, Mapping)] if isinstance(reply, list) else []
        )
        if op_id is None:
            event.set_results(_history_results(entries, service))
        elif entries:
            event.set_results(_history_operation_results(entries[0]))
        else:
            event.fail(not_found)

    def _on_plan_action(self, event: ops.ActionEvent) -> None:
        if not self.unit.is_leader():
            event.fail(self._not_leader_message())
            return
        try:
            reply = self._get_control_client(ACTION_TIMEOUT).plan()
        except control.AgentUnavailableError as exc:
            event.fail(f"Agent not running: {exc}")
            return
        except control.ControlError as exc:
            event.fail(_describe_control_error(exc, ""))
            return
        event.set_results(_plan_results(reply if isinstance(reply, Mapping) else {}))

    def _not_leader_message(self) -> str:
        """Where to run leader-only actions."""
        peer = self.model.get_relation(PEER_RELATION)
        leader = peer.data[self.app].get(LEADER_KEY) if peer is not None else None
        if leader and leader != self.unit.name:
            return f"Not the leader: run it on the leader unit ({leader})"
        return "Not the leader: run it on the leader unit"


def describe_status(
    config: WhirlwindConfig,
    pause: PauseState,
    agent: Mapping[str, Any] | None,
    now: datetime.datetime | None = None,
    chaos: arming.Arming | None = None,
) -> ops.StatusBase:
    """A one-line status from config and the agent's status (None: the agent did not answer).

    Juju keeps every status change in `juju show-status-log`, so the text only changes when
    something happened: the next replacement shows as a clock time, not a countdown.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    # Armed chaos comes first, whatever else is going on.
    chaos_head = _describe_armed(config, chaos, agent or {}, now)
    if agent is not None and not agent.get("connected", False):
        text = "agent connecting to the controller"
        return ops.WaitingStatus(_capitalise(f"{chaos_head}; {text}" if chaos_head else text))
    agent = agent or {}
    unknown = [s for s in agent.get("unknown-services") or [] if isinstance(s, str)]
    blocked_services = agent.get("blocked-services")
    blocked = sorted(blocked_services) if isinstance(blocked_services, Mapping) else []
    services = [s for s in config.service_names if s not in unknown and s not in blocked]
    in_flight = agent.get("in-flight")
    paused = bool(agent.get("paused", pause.paused))
    parts: list[str] = []
    if paused:
        agent_pause = PauseState(
            True,
            agent.get("paused-since"),
            agent.get("paused-until"),
            str(agent.get("pause-reason") or ""),
        )
        parts.append(_describe_pause(pause if pause.paused else agent_pause, now))
    if isinstance(in_flight, Mapping):
        verb = "finishing" if paused else "replacing"
        step = in_flight.get("step")
        parts.append(f"{verb} {_describe_operation(in_flight)}" + (f" ({step})" if step else ""))
    elif not paused and not config.service_names:
        parts.append("no services configured (set services=...)")
    elif not paused and services:
        parts += [f"watching {', '.join(services)}", f"every {_format_duration(config.interval)}"]
        parts += _describe_next(agent, now)
    elif paused and agent.get("next-trigger") == "heal":
        parts += _describe_next(agent, now)  # healing goes on while paused
    window = agent.get("window")
    if isinstance(window, Mapping) and window.get("windows") and not paused:
        parts.append(str(window.get("detail")))
    parts += _describe_notes(agent)
    if unknown:
        parts.append(f"not in the model: {', '.join(unknown)}")
    last = agent.get("last")
    if isinstance(last, Mapping) and last.get("old-unit"):
        parts.append(f"last {_describe_operation(last)} {last.get('result') or 'unknown'}")
    if not agent:
        parts.append("agent not answering")
    message = "; ".join(parts)
    if agent.get("dry-run", config.dry_run):
        message = f"dry-run: {message}" if message else "dry-run"
    if blocked:
        # The operator must act: the agent stopped working on these applications.
        head = f"blocked on repeated failures of {', '.join(blocked)}: run resume or replace-now"
        message = f"{head}; {message}" if message else head
    if chaos_head:
        message = f"{chaos_head}; {message}" if message else chaos_head
    if blocked:
        return ops.BlockedStatus(_capitalise(message))
    return ops.ActiveStatus(_capitalise(message))


def _describe_armed(
    config: WhirlwindConfig,
    chaos: arming.Arming | None,
    agent: Mapping[str, Any],
    now: datetime.datetime,
) -> str | None:
    """The armed chaos for the status line: the agent's arming, else the charm's (None: off)."""
    if "chaos-armed" in agent:
        chaos = arming.Arming(
            agent.get("chaos-armed") is True,
            pausing.parse_time(agent.get("chaos-armed-until")),
            dry_run=agent.get("chaos-dry-run") is True,
        )
    if chaos is None or not chaos.is_armed(now):
        return None
    return _describe_chaos(chaos, config.chaos_applications, now)


def _describe_chaos(
    chaos: arming.Arming, applications: tuple[str, ...], now: datetime.datetime | None = None
) -> str:
    """`CHAOS ARMED until 15:00 UTC: wsgi-example` (the applications that opted in)."""
    return f"{chaos.describe(now)}: {', '.join(applications) or 'no application opted in'}"


def _describe_next(agent: Mapping[str, Any], now: datetime.datetime) -> list[str]:
    """The next event: `next x at 12:00` (rotation) or `next heal x at 12:00` (others)."""
    due, service, trigger = (
        agent.get("next-due"),
        agent.get("next-service"),
        agent.get("next-trigger"),
    )
    if not isinstance(due, str) or not isinstance(service, str):
        return []
    what = service if trigger in (None, "interval") else f"{trigger} {service}"
    return [f"next {what} {_format_due(due, now)}"]


def _describe_notes(agent: Mapping[str, Any]) -> list[str]:
    """The planner's notes an operator should see: mass failure, more units than wanted."""
    notes = agent.get("notes")
    if not isinstance(notes, Mapping):
        return []
    shown = []
    for service, texts in sorted(notes.items()):
        for text in texts if isinstance(texts, list) else []:
            if isinstance(text, str) and ("mass failure" in text or "more than units" in text):
                shown.append(f"{service}: {text}")
    return shown


def _describe_operation(operation: Mapping[str, Any]) -> str:
    """Old and new unit as "x/3 -> x/7", or "x/3" while (or when) there is no new unit."""
    old = operation.get("old-unit") or operation.get("service") or "a unit"
    new = operation.get("new-unit")
    return f"{old} -> {new}" if new else str(old)


def _describe_control_error(exc: control.ControlError, service: str) -> str:
    if exc.code == control.UNKNOWN_SERVICE:
        return f"Unknown service {service!r}: {exc.message}"
    if exc.code == control.UNKNOWN_UNIT:
        return f"Unknown unit: {exc.message}"
    if exc.code == control.PAUSED:
        return "Whirlwind is paused: run the resume action first"
    if exc.code == control.BUSY:
        return f"Busy: {exc.message}"
    if exc.code == control.NOT_READY:
        return f"Agent not ready: {exc.message}"
    if exc.code == control.REFUSED:
        return f"Refused: {exc.message}"
    if exc.code == control.NOT_IMPLEMENTED:
        return f"Not supported by the agent: {exc.message}"
    return f"Agent error ({exc.code}): {exc.message}"


_RESULT_KEYS = {
    "id": "operation-id",
    "trigger": "trigger",
    "service": "service",
    "old-unit": "old-unit",
    "new-unit": "new-unit",
    "result": "result",
    "reason": "reason",
    "started": "started",
    "finished": "finished",
    "duration": "duration",
}


def _operation_results(reply: Mapping[str, Any]) -> dict[str, str]:
    """Kebab-case action results from a history entry or a "started" reply; None left out."""
    return {
        key: _flag(reply[field]) if isinstance(reply[field], bool) else str(reply[field])
        for field, key in _RESULT_KEYS.items()
        if reply.get(field) is not None
    }


def _history_results(entries: list[Mapping[str, Any]], service: str | None) -> dict[str, Any]:
    """The history list: `count`, `operations` keyed "1", "2"... (newest first), `message`."""
    if not entries:
        return {
            "count": "0",
            "message": f"no operations of {service}" if service else "no operations",
        }
    width = len(str(len(entries)))  # "01".."10": `juju run` sorts the keys as text
    return {
        "count": str(len(entries)),
        "operations": {
            f"{n:0{width}d}": _operation_results(entry) for n, entry in enumerate(entries, 1)
        },
        "message": "\n".join(_history_line(entry) for entry in entries),
    }


def _history_operation_results(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One operation: its fields, `steps` ("1-plan": time, ...) and its `message` line."""
    results: dict[str, Any] = dict(_operation_results(entry))
    raw = entry.get("steps")
    steps = [s for s in raw if isinstance(s, Mapping)] if isinstance(raw, list) else []
    width = len(str(len(steps)))
    if steps:
        results["steps"] = {
            f"{n:0{width}d}-{_result_key(s.get('step'))}": str(s.get("at") or "")
            for n, s in enumerate(steps, 1)
        }
    results["message"] = _history_line(entry)
    return results


def _history_line(entry: Mapping[str, Any]) -> str:
    """`<started> <id> <trigger> <old> -> <new> <result> (<duration>s)`; no duration: no (...)."""
    started = entry.get("started")
    fields = [
        _format_moment(started) if isinstance(started, str) else "-",
        *(str(entry.get(key) or "-") for key in ("id", "trigger", "old-unit")),
        "->",
        *(str(entry.get(key) or "-") for key in ("new-unit", "result")),
    ]
    duration = entry.get("duration")
    if duration is not None:
        fields.append(f"({duration}s)")
    return " ".join(fields)


def _parse_moment(value: str) -> datetime.datetime | None:
    """ISO time (`Z` allowed): in UTC if it names a zone, else naive; None if it does not parse."""
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(datetime.timezone.utc) if moment.tzinfo is not None else moment


def _format_moment(value: str) -> str:
    """ISO time as "2026-11-22T10:00:05Z" (left as given if it does not parse)."""
    moment = _parse_moment(value)
    return value if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _result_key(value: object) -> str:
    """`value` as a valid action result key part (lower-case letters, digits, hyphens)."""
    return re.sub(r"[^a-z0-9]+", "-", str(value or "").lower()).strip("-") or "step"


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _format_duration(seconds: int) -> str:
    """600 -> "10m", 90 -> "1m30s", 3600 -> "1h", 45 -> "45s"."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)
    return text or "0s"


def _format_due(value: str, now: datetime.datetime) -> str:
    """When the next replacement is due: "now", "at 10:04 UTC", or "at 2026-11-23 10:04 UTC"."""
    due = _parse_moment(value)
    if due is None:
        return f"at {value}"
    if due.tzinfo is None:
        due = due.replace(tzinfo=datetime.timezone.utc)
    if due <= now:
        return "due now"
    if due - now < datetime.timedelta(hours=20):
        return f"at {due:%H:%M} UTC"
    return f"at {_format_time(value)}"


def _format_time(value: str) -> str:
    """ISO time as "2026-11-22 10:00 UTC" (left as given if it does not parse)."""
    moment = _parse_moment(value)
    return value if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def _describe_pause(pause: PauseState, now: datetime.datetime | None = None) -> str:
    """`paused until 14:00 UTC (reason)`, `paused since 2026-11-22 10:00 UTC`, or `paused`."""
    if pause.until:
        text = "paused until " + _format_due(pause.until, now or _now()).removeprefix("at ")
    elif pause.since:
        text = f"paused since {_format_time(pause.since)}"
    else:
        text = "paused"
    return f"{text} ({pause.reason})" if pause.reason else text


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _gate_results(gates: Any) -> dict[str, str]:
    """Gates as action results: `holds: <detail>` or `open: <detail>` by name."""
    return {
        str(name): ("holds: " if g.get("holds") else "open: ") + str(g.get("detail"))
        for name, g in (gates.items() if isinstance(gates, Mapping) else ())
        if isinstance(g, Mapping)
    }


def _plan_results(plan: Mapping[str, Any]) -> dict[str, Any]:
    """The agent's plan as action results: per target its next step, victim, gates, units."""
    results: dict[str, Any] = {}
    targets = plan.get("targets")
    for target in targets if isinstance(targets, list) else []:
        if not isinstance(target, Mapping) or not isinstance(target.get("service"), str):
            continue
        nxt, gates, units = (target.get(key) for key in ("next", "gates", "units"))
        nxt = nxt if isinstance(nxt, Mapping) else None
        units = units if isinstance(units, Mapping) else {}
        entry: dict[str, Any] = {
            "next": (
                f"{nxt.get('trigger')} at {nxt.get('at')}: {nxt.get('what')}" if nxt else "none"
            ),
            "victim": str(target.get("victim") or ""),
            "why": str(target.get("why") or ""),
            "gates": _gate_results(gates),
            "units": {str(k): "" if v is None else str(v) for k, v in units.items()},
        }
        notes = target.get("notes")
        if isinstance(notes, list) and notes:
            entry["notes"] = "; ".join(str(n) for n in notes)
        chaos = target.get("chaos")
        if isinstance(chaos, Mapping):
            injection = chaos.get("injection")
            entry["chaos"] = {
                "gates": _gate_results(chaos.get("gates")),
                "next-tick": str(chaos.get("next-tick") or "none"),
                "injection": (
                    f"{injection.get('kind')} on {injection.get('unit')}: {injection.get('why')}"
                    if isinstance(injection, Mapping)
                    else "none"
                ),
            }
        results.setdefault("targets", {})[target["service"]] = entry
    results["message"] = str(plan.get("message") or "no targets")
    return results


if __name__ == "__main__":  # pragma: nocover
    ops.main(WhirlwindCharm)

"""Charm hooks, reconcile and status with ops.testing; the workload and agent are faked."""

from __future__ import annotations

import datetime
import logging
import pathlib
from typing import Any

import ops
import pytest
from ops import testing

import charm
import workload
from tests.unit.conftest import (
    CA_CERT,
    MODEL_UUID,
    OTHER_CA_CERT,
    PASSWORD,
    FakeControlClient,
    FakeWorkload,
    agent_status,
    credentials_secret,
    leader_state,
    peer_relation,
    provider_relation,
)
from whirlwind import control, settings

MISSING = (
    "Missing controller credentials: integrate with a credentials provider "
    "or set credentials=secret:<id> (juju config whirlwind ...)"
)


def test_leader_renders_settings_and_starts_the_agent(
    ctx: testing.Context, fake_workload: FakeWorkload
):
    out = ctx.run(ctx.on.config_changed(), leader_state())

    assert out.unit_status == testing.ActiveStatus("Watching wsgi-example; every 10m")
    assert fake_workload.calls == ["configure", "ensure_running"]
    assert fake_workload.running
    rendered = fake_workload.settings
    assert rendered is not None
    assert rendered.model_uuid == MODEL_UUID
    assert rendered.own_application == "whirlwind"
    assert rendered.services == ("wsgi-example",)
    assert rendered.paused is False
    assert rendered.state_dir == workload.WorkloadPaths().state_dir
    assert rendered.control_socket == workload.CONTROL_SOCKET
    assert rendered.log_level == "INFO"
    # The user secret has no endpoints or CA: both come from this unit's agent.conf.
    assert rendered.controller.endpoints == ("10.0.0.1:17070",)
    assert rendered.controller.ca_cert == CA_CERT
    assert rendered.controller.username == "whirlwind"
    assert rendered.controller.password == PASSWORD


def test_every_option_reaches_the_settings(ctx: testing.Context, fake_workload: FakeWorkload):
    config = {
        "interval": 90,
        "services": "a-app, b-app c-app",
        "settle-period": 5,
        "settle-timeout": 100,
        "remove-timeout": 50,
        "dry-run": True,
        "log-level": "debug",
    }

    ctx.run(ctx.on.config_changed(), leader_state(config=config))

    rendered = fake_workload.settings
    assert rendered is not None
    assert (rendered.interval, rendered.settle_period) == (90, 5)
    assert (rendered.settle_timeout, rendered.remove_timeout) == (100, 50)
    assert rendered.services == ("a-app", "b-app", "c-app")
    assert rendered.dry_run is True
    assert rendered.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"interval": 0}, "Invalid config: interval must be greater than 0, got 0"),
        ({"settle-timeout": -1}, "Invalid config: settle-timeout must be greater than 0, got -1"),
        ({"remove-timeout": 0}, "Invalid config: remove-timeout must be greater than 0, got 0"),
        ({"settle-period": -5}, "Invalid config: settle-period must be 0 or more, got -5"),
        (
            {"settle-period": 600, "settle-timeout": 600},
            "Invalid config: settle-period (600s) must be shorter than settle-timeout (600s)",
        ),
        (
            {"log-level": "chatty"},
            "Invalid config: log-level must be one of debug, info, warning, error, got 'chatty'",
        ),
        (
            {"services": "good, Bad_Name"},
            "Invalid config: services: 'Bad_Name' is not a valid application name",
        ),
    ],
)
def test_invalid_config_blocks_and_stops_the_agent(
    ctx: testing.Context, fake_workload: FakeWorkload, config: dict[str, Any], message: str
):
    fake_workload.running = True

    out = ctx.run(ctx.on.config_changed(), leader_state(config=config))

    assert out.unit_status == testing.BlockedStatus(message)
    assert fake_workload.calls == ["stop_and_disable", "remove_credentials"]
    assert not fake_workload.running


def test_lifecycle_options_reach_the_settings(ctx: testing.Context, fake_workload: FakeWorkload):
    config = {
        "services": "wsgi-example, db",
        "heal": False,
        "heal-after": "5m",
        "heal-max-unhealthy": 0.3,
        "max-age": "7d",
        "max-in-flight": 2,
        "policies": "wsgi-example: {units: 3, max-age: 2d}\ndb: {storage: allow, heal: true}\n",
    }

    ctx.run(ctx.on.config_changed(), leader_state(config=config))

    rendered = fake_workload.settings
    assert rendered is not None
    assert (rendered.heal, rendered.heal_after, rendered.heal_max_unhealthy) == (False, 300, 0.3)
    assert (rendered.max_age, rendered.max_in_flight) == (7 * 86400, 2)
    assert rendered.policy_for("wsgi-example").units == 3
    assert rendered.policy_for("wsgi-example").max_age == 2 * 86400
    assert rendered.policy_for("db").storage == "allow"
    assert rendered.policy_for("db").heal is True  # the override wins over heal=false
    assert rendered.policy_for("db").max_age == 7 * 86400


def test_windows_reach_the_settings_and_bad_ones_block(
    ctx: testing.Context, fake_workload: FakeWorkload
):
    config = {
        "services": "app",
        "windows": "mon-fri 09:00-17:00 Europe/London;  sat 10:00-12:00",
        "heal-in-windows": True,
    }
    ctx.run(ctx.on.config_changed(), leader_state(config=config))
    rendered = fake_workload.settings
    assert rendered is not None
    assert rendered.windows == "mon-fri 09:00-17:00 Europe/London; sat 10:00-12:00"
    assert rendered.heal_in_windows is True

    out = ctx.run(
        ctx.on.config_changed(), leader_state(config={"services": "app", "windows": "weekdays"})
    )
    assert out.unit_status == testing.BlockedStatus(
        "Invalid config: windows: 'weekdays' is not [days] HH:MM-HH:MM [zone] (for example "
        "'mon-fri 09:00-17:00 Europe/London; sat 10:00-12:00 UTC')"
    )


def test_lifecycle_defaults(ctx: testing.Context, fake_workload: FakeWorkload):
    ctx.run(ctx.on.config_changed(), leader_state(config={"services": "wsgi-example"}))

    rendered = fake_workload.settings
    assert rendered is not None
    assert (rendered.heal, rendered.heal_after, rendered.heal_max_unhealthy) == (True, 600, 0.5)
    assert (rendered.max_age, rendered.max_in_flight, rendered.policies) == (0, 1, ())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"heal-after": "ten minutes"},
            "heal-after: 'ten minutes' is not a duration (use seconds or 90s, 10m, 12h, 7d)",
        ),
        (
            {"max-age": "-1d"},
            "max-age: '-1d' is not a duration (use seconds or 90s, 10m, 12h, 7d)",
        ),
        ({"max-age": "99999d"}, "max-age: must be at most 3650 days, got '99999d'"),
        (
            {"heal-max-unhealthy": 1.5},
            "heal-max-unhealthy must be a fraction above 0 and at most 1, got 1.5",
        ),
        ({"max-in-flight": 0}, "max-in-flight must be a whole number 1..100, got 0"),
        ({"policies": "app: [unclosed"}, "policies: not valid YAML at line 1"),
        ({"policies": "- app"}, "policies: expected a mapping of application to overrides"),
        (
            {"policies": "other: {units: 2}"},
            "policies: other: not in services (add it there first)",
        ),
        (
            {"policies": "app: {units: many}"},
            "policies: app: units: expected a whole number 1..1000, got 'many'",
        ),
        (
            {"policies": "app: {units: 0}"},
            "policies: app: units: expected a whole number 1..1000, got 0",
        ),
        (
            {"policies": "app: {colour: red}"},
            "policies: app: unknown key 'colour' (known: interval, max-age, heal, heal-after, "
            "settle-period, settle-timeout, units, storage, min-healthy, windows, chaos)",
        ),
        (
            {"policies": "app: {storage: keep}"},
            "policies: app: storage: expected skip or allow, got 'keep'",
        ),
        (
            {"policies": "app: {heal: maybe}"},
            "policies: app: heal: expected true or false, got 'maybe'",
        ),
        (
            {"policies": "app: {min-healthy: 150%}"},
            "policies: app: min-healthy: must be between 0% and 100%, got '150%'",
        ),
        ({"policies": "app: {interval: 0}"}, "policies: app: interval: must be greater than 0"),
        (
            {"policies": "app: {settle-period: 1h}"},
            "policies: app: settle-period (3600s) must be shorter than settle-timeout (1800s)",
        ),
        (
            {"policies": "app: {max-age: 1y}"},
            "policies: app: max-age: '1y' is not a duration (use seconds or 90s, 10m, 12h, 7d)",
        ),
    ],
)
def test_bad_lifecycle_options_block_naming_application_and_key(
    ctx: testing.Context, fake_workload: FakeWorkload, config: dict[str, Any], message: str
):
    fake_workload.running = True

    out = ctx.run(ctx.on.config_changed(), leader_state(config={"services": "app", **config}))

    assert out.unit_status == testing.BlockedStatus(f"Invalid config: {message}")
    assert not fake_workload.running


def test_invalid_config_blocks_non_leaders_too(ctx: testing.Context):
    out = ctx.run(ctx.on.config_changed(), leader_state(leader=False, config={"interval": -1}))

    assert out.unit_status == testing.BlockedStatus(
        "Invalid config: interval must be greater than 0, got -1"
    )


def test_missing_credentials_tells_the_operator_how_to_provide_them(
    ctx: testing.Context, fake_workload: FakeWorkload
):
    state = testing.State(leader=True, config={"services": "x"}, relations=[peer_relation()])

    out = ctx.run(ctx.on.install(), state)

    assert out.unit_status == testing.BlockedStatus(MISSING)
    assert "configure" not in fake_workload.calls


def test_config_secret_not_granted_blocks_naming_the_option(
    ctx: testing.Context, fake_workload: FakeWorkload
):
    state = testing.State(
        leader=True, config={"credentials": "secret:cv0aaaaaaaaaaaaaaaaa"}, relations=[]
    )

    out = ctx.run(ctx.on.config_changed(), state)

    assert out.unit_status == testing.BlockedStatus(
        "Invalid config: credentials: cannot read secret:cv0aaaaaaaaaaaaaaaaa; "
        "run juju grant-secret <secret> whirlwind"
    )
    assert "configure" not in fake_workload.calls


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"password": ""}, "Invalid config: credentials: secret has no 'password'"),
        (
            {"endpoints": "nowhere"},
            "Invalid config: credentials: endpoints: 'nowhere' is not host:port",
        ),
        ({"ca-cert": "junk"}, "Invalid config: credentials: ca-cert: not a PEM certificate"),
    ],
)
def test_invalid_config_secret_content_blocks(
    ctx: testing.Context, content: dict[str, str], message: str
):
    out = ctx.run(ctx.on.config_changed(), leader_state(secret=credentials_secret(**content)))

    assert out.unit_status == testing.BlockedStatus(message)


def test_config_secret_endpoints_and_ca_override_agent_conf(
    ctx: testing.Context, fake_workload: FakeWorkload
):
    secret = credentials_secret(endpoints="10.9.9.9:17070", **{"ca-cert": OTHER_CA_CERT})

    ctx.run(ctx.on.config_changed(), leader_state(secret=secret))

    assert fake_workload.settings is not None
    assert fake_workload.settings.controller.endpoints == ("10.9.9.9:17070",)
    assert fake_workload.settings.controller.ca_cert == OTHER_CA_CERT


@pytest.mark.parametrize("missing", ["endpoints", "ca-cert"])
def test_no_endpoints_or_ca_anywhere_blocks(
    ctx: testing.Context, fake_workload: FakeWorkload, missing: str
):
    fake_workload.agent_info = (
        workload.AgentControllerInfo((), CA_CERT)
        if missing == "endpoints"
        else workload.AgentControllerInfo(("10.0.0.1:17070",), None)
    )

    out = ctx.run(ctx.on.config_changed(), leader_state())

    assert out.unit_status == testing.BlockedStatus(
        f"Missing controller {missing}: not in the credentials and not readable "
        "from this unit's agent.conf; add it to the credentials"
    )


def test_agent_conf_with_a_bad_address_blocks(ctx: testing.Context, fake_workload: FakeWorkload):
    fake_workload.agent_info = workload.AgentControllerInfo(("no-port",), CA_CERT)

    out = ctx.run(ctx.on.config_changed(), leader_state())

    assert out.unit_status == testing.BlockedStatus(
        "Invalid controller credentials: endpoints: 'no-port' is not host:port"
    )


def test_relation_credentials_win_over_the_config_secret(
    ctx: testing.Context, fake_workload: FakeWorkload
):
    password = testing.Secret(tracked_content={"password": "from-the-relation"})
    state = leader_state(
        relations=[peer_relation(), provider_relation(password)], secrets=[password]
    )

    out = ctx.run(ctx.on.relation_changed(state.get_relations("controller")[0]), state)

    assert out.unit_status == testing.ActiveStatus("Watching wsgi-example; every 10m")
    assert fake_workload.settings is not None
    assert fake_workload.settings.controller.password == "from-the-relation"
    assert fake_workload.settings.controller.endpoints == ("10.1.1.1:17070",)
    assert fake_workload.settings.controller.ca_cert == OTHER_CA_CERT


def test_relation_without_data_is_waiting(ctx: testing.Context, fake_workload: FakeWorkload):
    relation = testing.Relation("controller", remote_app_name="credentials-provider")
    state = testing.State(leader=True, relations=[peer_relation(), relation])

    out = ctx.run(ctx.on.relation_changed(relation), state)

    assert out.unit_status == testing.WaitingStatus(
        "Waiting for credentials from credentials-provider"
    )
    assert "configure" not in fake_workload.calls


def test_relation_secret_not_granted_yet_is_waiting(ctx: testing.Context):
    relation = provider_relation(None, **{"secret-id": "secret:cv0bbbbbbbbbbbbbbbbb"})
    state = testing.State(leader=True, relations=[peer_relation(), relation])

    out = ctx.run(ctx.on.relation_changed(relation), state)

    assert out.unit_status == testing.WaitingStatus(
        "Waiting for credentials-provider to grant the credentials secret"
    )


def test_relation_with_a_bad_endpoint_blocks(ctx: testing.Context):
    password = testing.Secret(tracked_content={"password": PASSWORD})
    relation = provider_relation(password, endpoints="10.1.1.1")
    state = testing.State(leader=True, relations=[peer_relation(), relation], secrets=[password])

    out = ctx.run(ctx.on.relation_changed(relation), state)

    assert out.unit_status == testing.BlockedStatus(
        "Invalid controller credentials: credentials-provider: endpoints: "
        "'10.1.1.1' is not host:port"
    )


def test_relation_broken_falls_back_to_the_config_secret(
    ctx: testing.Context, fake_workload: FakeWorkload
):
    password = testing.Secret(tracked_content={"password": "from-the-relation"})
    relation = provider_relation(password)
    state = leader_state(relations=[peer_relation(), relation], secrets=[password])

    ctx.run(ctx.on.relation_broken(relation), state)

    assert fake_workload.settings is not None
    assert fake_workload.settings.controller.password == PASSWORD


def test_relation_broken_without_fallback_stops_the_agent(
    ctx: testing.Context, fake_workload: FakeWorkload
):
    password = testing.Secret(tracked_content={"password": PASSWORD})
    relation = provider_relation(password)
    state = testing.State(leader=True, relations=[peer_relation(), relation], secrets=[password])
    fake_workload.running = True
    fake_workload.credentials_present = True

    out = ctx.run(ctx.on.relation_broken(relation), state)

    assert out.unit_status == testing.BlockedStatus(MISSING)
    assert not fake_workload.running
    assert not fake_workload.credentials_present


def test_secret_changed_renders_the_new_password(
    ctx: testing.Context, fake_workload: FakeWorkload
):
    secret = testing.Secret(
        tracked_content={"username": "whirlwind", "password": "old"},
        latest_content={"username": "whirlwind", "password": PASSWORD},
    )
    fake_workload.running = True
    fake_workload.changed = workload.Changed(settings=True)

    ctx.run(ctx.on.secret_changed(secret), leader_state(secret=secret))

    assert fake_workload.settings is not None
    assert fake_workload.settings.controller.password == PASSWORD
    assert fake_workload.restarts == [False]


def test_non_leader_stands_by(ctx: testing.Context, fake_workload: FakeWorkload):
    fake_workload.running = True
    fake_workload.credentials_present = True

    out = ctx.run(ctx.on.config_changed(), leader_state(leader=False))

    assert out.unit_status == testing.ActiveStatus("Standby: the leader's agent is active")
    assert fake_workload.calls == ["stop_and_disable", "remove_credentials"]
    assert not fake_workload.running
    assert not fake_workload.credentials_present


def test_leader_records_itself_in_the_peer_databag(ctx: testing.Context):
    out = ctx.run(ctx.on.leader_elected(), leader_state(relations=[peer_relation(leader="x/9")]))

    assert out.get_relations("whirlwind-peers")[0].local_app_data["leader"] == "whirlwind/0"


def test_losing_leadership_stops_the_agent_when_the_new_leader_speaks(
    ctx: testing.Context, fake_workload: FakeWorkload
):
    fake_workload.running = True
    peer = peer_relation(leader="whirlwind/1")

    state = leader_state(leader=False, relations=[peer])

    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)

    assert not fake_workload.running
    assert out.unit_status == testing.ActiveStatus(
        "Standby: the agent runs on the leader (whirlwind/1)"
    )


def test_pause_state_from_the_peer_databag_is_rendered(
    ctx: testing.Context, fake_workload: FakeWorkload, fake_client: FakeControlClient
):
    peer = peer_relation(paused="true", **{"paused-since": "2026-11-22T10:00:00+00:00"})
    fake_client.status_reply = agent_status(paused=True, **{"paused-since": None})

    out = ctx.run(ctx.on.leader_elected(), leader_state(relations=[peer]))

    assert fake_workload.settings is not None
    assert fake_workload.settings.paused is True
    assert out.unit_status == testing.ActiveStatus("Paused since 2026-11-22 10:00 UTC")


def test_upgrade_restarts_the_agent(ctx: testing.Context, fake_workload: FakeWorkload):
    fake_workload.running = True
    fake_workload.changed = workload.Changed()

    ctx.run(ctx.on.upgrade_charm(), leader_state())

    assert fake_workload.restarts == [True]


def test_other_hooks_do_not_restart(ctx: testing.Context, fake_workload: FakeWorkload):
    fake_workload.running = True
    fake_workload.changed = workload.Changed()

    ctx.run(ctx.on.update_status(), leader_state())

    assert fake_workload.restarts == [False]


def test_remove_cleans_up(ctx: testing.Context, fake_workload: FakeWorkload):
    fake_workload.running = True

    ctx.run(ctx.on.remove(), leader_state())

    assert fake_workload.calls == ["remove"]
    assert not fake_workload.running


def test_a_failed_start_is_maintenance_not_a_hook_error(
    ctx: testing.Context, fake_workload: FakeWorkload, caplog: pytest.LogCaptureFixture
):
    fake_workload.start_error = "cannot start whirlwind-agent: start-limit-hit"

    out = ctx.run(ctx.on.config_changed(), leader_state())

    assert out.unit_status == testing.MaintenanceStatus(
        "Agent not running yet (see journalctl -u whirlwind-agent)"
    )
    assert "start-limit-hit" in caplog.text


def test_status_degrades_when_the_agent_does_not_answer(
    ctx: testing.Context, fake_client: FakeControlClient
):
    fake_client.errors["status"] = control.AgentUnavailableError("the agent did not answer")

    out = ctx.run(ctx.on.update_status(), leader_state())

    assert out.unit_status == testing.ActiveStatus(
        "Watching wsgi-example; every 10m; agent not answering"
    )
    assert fake_client.timeouts[-1] == charm.STATUS_TIMEOUT
    assert [c for c, _ in fake_client.calls] == ["status"]


def test_status_while_the_agent_connects(ctx: testing.Context, fake_client: FakeControlClient):
    fake_client.status_reply = agent_status(connected=False)

    out = ctx.run(ctx.on.update_status(), leader_state())

    assert out.unit_status == testing.WaitingStatus("Agent connecting to the controller")


def config_of(**options: Any) -> charm.WhirlwindConfig:
    return charm.WhirlwindConfig(**options)


NOW = datetime.datetime(2026, 11, 22, 10, 0, 30, tzinfo=datetime.timezone.utc)
IN_FLIGHT = {
    "id": "op-1",
    "service": "wsgi-example",
    "old-unit": "wsgi-example/3",
    "new-unit": "wsgi-example/7",
    "step": "settle",
    "started": "2026-11-22T09:59:00Z",
}
LAST_OK = {
    "id": "op-0",
    "trigger": "interval",
    "service": "wsgi-example",
    "old-unit": "wsgi-example/3",
    "new-unit": "wsgi-example/7",
    "result": "ok",
}
BLOCKED = "Blocked on repeated failures of x: run resume or replace-now"


@pytest.mark.parametrize(
    ("config", "pause", "agent", "expected"),
    [
        pytest.param(config_of(services="wsgi-example"), charm.PauseState(), agent_status(),
                     ops.ActiveStatus("Watching wsgi-example; every 10m"), id="watching"),
        pytest.param(config_of(services="a, b", interval=90), charm.PauseState(), agent_status(),
                     ops.ActiveStatus("Watching a, b; every 1m30s"), id="two-services"),
        pytest.param(config_of(services="wsgi-example"), charm.PauseState(),
                     agent_status(**{"next-due": "2026-11-22T10:04:00+00:00",
                                     "next-service": "wsgi-example", "last": LAST_OK}),
                     ops.ActiveStatus("Watching wsgi-example; every 10m; next wsgi-example at "
                                      "10:04 UTC; last wsgi-example/3 -> wsgi-example/7 ok"),
                     id="next-and-last"),
        pytest.param(config_of(services="a b"), charm.PauseState(),
                     agent_status(**{"next-due": "2026-11-22T10:59:00+01:00",
                                     "next-service": "b"}),
                     ops.ActiveStatus("Watching a, b; every 10m; next b due now"),
                     id="overdue-in-another-zone"),
        pytest.param(config_of(services="a", interval=86400 * 2), charm.PauseState(),
                     agent_status(**{"next-due": "2026-11-24T09:00:00Z", "next-service": "a"}),
                     ops.ActiveStatus("Watching a; every 48h; next a at 2026-11-24 09:00 UTC"),
                     id="next-another-day"),
        pytest.param(config_of(services="wsgi-example", interval=3600), charm.PauseState(),
                     agent_status(**{"dry-run": True, "last": {**LAST_OK, "new-unit": None,
                                                               "result": "dry-run"}}),
                     ops.ActiveStatus("Dry-run: watching wsgi-example; every 1h; "
                                      "last wsgi-example/3 dry-run"), id="dry-run"),
        pytest.param(config_of(services="wsgi-example"), charm.PauseState(),
                     agent_status(paused=True, **{"paused-since": "2026-11-22T11:00:00+01:00",
                                                  "last": LAST_OK}),
                     ops.ActiveStatus("Paused since 2026-11-22 10:00 UTC; "
                                      "last wsgi-example/3 -> wsgi-example/7 ok"),
                     id="paused-by-the-agent"),
        pytest.param(config_of(services="wsgi-example"),
                     charm.PauseState(True, "2026-11-22T09:00:00+00:00"),
                     agent_status(paused=True, **{"paused-since": "2026-11-22T09:30:00Z"}),
                     ops.ActiveStatus("Paused since 2026-11-22 09:00 UTC"),
                     id="paused-since-the-action-not-the-agent-start"),
        pytest.param(config_of(services="wsgi-example"), charm.PauseState(True, None),
                     agent_status(paused=True), ops.ActiveStatus("Paused"), id="paused"),
        pytest.param(config_of(services="wsgi-example"),
                     charm.PauseState(True, "2026-11-22T09:00:00Z", "2026-11-22T14:00:00Z",
                                      "release freeze"),
                     agent_status(paused=True),
                     ops.ActiveStatus("Paused until 14:00 UTC (release freeze)"),
                     id="timed-pause-with-reason"),
        pytest.param(config_of(services="wsgi-example"), charm.PauseState(),
                     agent_status(paused=True, **{"paused-until": "2026-11-24T14:00:00Z",
                                                  "paused-since": "2026-11-22T09:00:00Z"}),
                     ops.ActiveStatus("Paused until 2026-11-24 14:00 UTC"),
                     id="timed-pause-by-the-agent"),
        pytest.param(config_of(services="wsgi-example"), charm.PauseState(),
                     agent_status(**{"window": {"open": False, "windows": "mon-fri 09:00-17:00",
                                                "detail": "window closed; opens Mon 09:00 UTC"},
                                     "next-due": "2026-11-23T09:00:00Z",
                                     "next-trigger": "interval",
                                     "next-service": "wsgi-example"}),
                     ops.ActiveStatus("Watching wsgi-example; every 10m; next wsgi-example at "
                                      "2026-11-23 09:00 UTC; window closed; opens Mon 09:00 UTC"),
                     id="window-closed"),
        pytest.param(config_of(services="wsgi-example"), charm.PauseState(),
                     agent_status(**{"window": {"open": True, "windows": "",
                                                "detail": "no windows"}}),
                     ops.ActiveStatus("Watching wsgi-example; every 10m"), id="no-windows"),
        pytest.param(config_of(services="wsgi-example"), charm.PauseState(),
                     agent_status(**{"next-due": "2026-11-22T10:04:00Z", "next-trigger": "heal",
                                     "next-service": "wsgi-example"}),
                     ops.ActiveStatus("Watching wsgi-example; every 10m; "
                                      "next heal wsgi-example at 10:04 UTC"), id="next-heal"),
        pytest.param(config_of(services="wsgi-example"), charm.PauseState(True, None),
                     agent_status(paused=True, **{"next-due": "2026-11-22T10:04:00Z",
                                                  "next-trigger": "heal",
                                                  "next-service": "wsgi-example"}),
                     ops.ActiveStatus("Paused; next heal wsgi-example at 10:04 UTC"),
                     id="healing-while-paused"),
        pytest.param(config_of(services="a b"), charm.PauseState(),
                     agent_status(**{"notes": {"a": ["mass failure: 3 of 4 units broken (more "
                                                     "than 50%): not healing",
                                                     "rotate: skipped a/0 has storage"],
                                               "b": ["4 live units, more than units: 3 "
                                                     "(nothing automatic)"]}}),
                     ops.ActiveStatus("Watching a, b; every 10m; a: mass failure: 3 of 4 units "
                                      "broken (more than 50%): not healing; b: 4 live units, "
                                      "more than units: 3 (nothing automatic)"),
                     id="planner-notes"),
        pytest.param(config_of(services="wsgi-example"), charm.PauseState(),
                     agent_status(**{"in-flight": IN_FLIGHT, "last": LAST_OK,
                                     "next-due": "2026-11-22T10:04:00Z",
                                     "next-service": "wsgi-example"}),
                     ops.ActiveStatus("Replacing wsgi-example/3 -> wsgi-example/7 (settle); "
                                      "last wsgi-example/3 -> wsgi-example/7 ok"),
                     id="replacing"),
        pytest.param(config_of(services="wsgi-example"), charm.PauseState(),
                     agent_status(**{"in-flight": {**IN_FLIGHT, "new-unit": None,
                                                   "step": "add"}}),
                     ops.ActiveStatus("Replacing wsgi-example/3 (add)"), id="adding"),
        pytest.param(config_of(services="wsgi-example"), charm.PauseState(True, None),
                     agent_status(paused=True, **{"in-flight": IN_FLIGHT}),
                     ops.ActiveStatus("Paused; finishing wsgi-example/3 -> wsgi-example/7 "
                                      "(settle)"), id="paused-while-in-flight"),
        pytest.param(config_of(), charm.PauseState(), agent_status(services=[]),
                     ops.ActiveStatus("No services configured (set services=...)"),
                     id="no-services"),
        pytest.param(config_of(services="wsgi-example foo"), charm.PauseState(),
                     agent_status(**{"unknown-services": ["foo"]}),
                     ops.ActiveStatus("Watching wsgi-example; every 10m; not in the model: foo"),
                     id="unknown-service"),
        pytest.param(config_of(services="foo"), charm.PauseState(),
                     agent_status(**{"unknown-services": ["foo"]}),
                     ops.ActiveStatus("Not in the model: foo"), id="only-unknown"),
        pytest.param(config_of(services="x"), charm.PauseState(),
                     agent_status(**{"blocked-services": {"x": "3 consecutive failures; last: "
                                                               "hook failed"},
                                     "last": {**LAST_OK, "service": "x", "old-unit": "x/1",
                                              "new-unit": "x/4", "result": "rolled-back"}}),
                     ops.BlockedStatus(f"{BLOCKED}; last x/1 -> x/4 rolled-back"),
                     id="blocked"),
        pytest.param(config_of(services="x y"), charm.PauseState(),
                     agent_status(**{"blocked-services": {"x": "3 consecutive failures"},
                                     "next-due": "2026-11-22T10:04:00Z", "next-service": "y"}),
                     ops.BlockedStatus(f"{BLOCKED}; watching y; every 10m; next y at 10:04 UTC"),
                     id="blocked-one-of-two"),
        pytest.param(config_of(services="x", dry_run=True),
                     charm.PauseState(True, "2026-01-02T03:04:05Z"), None,
                     ops.ActiveStatus("Dry-run: paused since 2026-01-02 03:04 UTC; "
                                      "agent not answering"), id="agent-not-answering"),
        pytest.param(config_of(services="x"), charm.PauseState(), agent_status(connected=False),
                     ops.WaitingStatus("Agent connecting to the controller"), id="connecting"),
    ],
)  # fmt: skip
def test_describe_status(
    config: charm.WhirlwindConfig,
    pause: charm.PauseState,
    agent: dict[str, Any] | None,
    expected: ops.StatusBase,
):
    assert charm.describe_status(config, pause, agent, NOW) == expected


def test_the_everyday_status_stays_one_short_line():
    agent = agent_status(**{"next-due": "2026-11-22T10:04:00Z", "next-service": "wsgi-example",
                            "last": LAST_OK})  # fmt: skip

    status = charm.describe_status(config_of(services="wsgi-example"), charm.PauseState(), agent)

    assert "\n" not in status.message
    assert len(status.message) <= 120, status.message


def test_standby_without_a_known_leader(ctx: testing.Context):
    out = ctx.run(ctx.on.update_status(), leader_state(leader=False))

    assert out.unit_status == testing.ActiveStatus(charm.STANDBY_MESSAGE)


def test_status_log_tells_the_story(ctx: testing.Context, fake_client: FakeControlClient):
    # Each hook records one status; Juju keeps the changes as `juju show-status-log`.
    replies = [
        agent_status(**{"next-due": "2099-01-01T10:04:00Z", "next-service": "wsgi-example"}),
        agent_status(**{"in-flight": IN_FLIGHT}),
        agent_status(**{"next-due": "2099-01-01T10:14:00Z", "next-service": "wsgi-example",
                        "last": LAST_OK}),
        agent_status(paused=True, **{"paused-since": "2099-01-01T10:06:00Z", "last": LAST_OK}),
    ]  # fmt: skip
    state = leader_state()
    messages = []

    for reply in replies:
        fake_client.status_reply = reply
        state = ctx.run(ctx.on.update_status(), state)
        messages.append(state.unit_status.message)

    assert messages == [
        "Watching wsgi-example; every 10m; next wsgi-example at 2099-01-01 10:04 UTC",
        "Replacing wsgi-example/3 -> wsgi-example/7 (settle)",
        "Watching wsgi-example; every 10m; next wsgi-example at 2099-01-01 10:14 UTC; "
        "last wsgi-example/3 -> wsgi-example/7 ok",
        "Paused since 2099-01-01 10:06 UTC; last wsgi-example/3 -> wsgi-example/7 ok",
    ]


def test_status_reports_unknown_services_from_the_agent(
    ctx: testing.Context, fake_client: FakeControlClient
):
    fake_client.status_reply = agent_status(**{"unknown-services": ["nope"]})

    out = ctx.run(ctx.on.config_changed(), leader_state(config={"services": "wsgi-example nope"}))

    assert out.unit_status == testing.ActiveStatus(
        "Watching wsgi-example; every 10m; not in the model: nope"
    )


class TestSecretsNeverLeak:
    """The password never reaches logs, status, juju-log or the settings file."""

    @pytest.mark.parametrize(
        "event",
        ["install", "config_changed", "upgrade_charm", "update_status", "leader_elected"],
    )
    def test_hooks(
        self,
        ctx: testing.Context,
        fake_workload: FakeWorkload,
        caplog: pytest.LogCaptureFixture,
        event: str,
    ):
        caplog.set_level(logging.DEBUG)

        out = ctx.run(getattr(ctx.on, event)(), leader_state())

        assert fake_workload.settings is not None
        rendered = settings.dump_settings(
            fake_workload.settings, password_file=workload.WorkloadPaths().credentials_file
        )
        assert PASSWORD not in rendered
        assert PASSWORD not in repr(fake_workload.settings)
        assert PASSWORD not in caplog.text
        assert all(PASSWORD not in line.message for line in ctx.juju_log)
        assert PASSWORD not in out.unit_status.message
        assert all(PASSWORD not in str(s) for s in ctx.unit_status_history)

    @pytest.mark.parametrize(
        "content",
        [{"endpoints": "bad"}, {"ca-cert": "bad"}, {"username": ""}],
    )
    def test_invalid_credentials(
        self, ctx: testing.Context, caplog: pytest.LogCaptureFixture, content: dict[str, str]
    ):
        caplog.set_level(logging.DEBUG)

        out = ctx.run(ctx.on.config_changed(), leader_state(secret=credentials_secret(**content)))

        assert out.unit_status.name == "blocked"
        assert PASSWORD not in out.unit_status.message
        assert PASSWORD not in caplog.text
        assert all(PASSWORD not in line.message for line in ctx.juju_log)


def test_no_agent_before_the_peer_relation_exists(
    ctx: testing.Context, fake_workload: FakeWorkload
):
    out = ctx.run(ctx.on.install(), leader_state(relations=[]))

    assert out.unit_status == testing.WaitingStatus("Waiting for the peer relation (pause state)")
    assert "configure" not in fake_workload.calls


def test_paths_are_injectable(
    ctx: testing.Context, fake_workload: FakeWorkload, monkeypatch: pytest.MonkeyPatch
):
    paths = workload.WorkloadPaths(
        lib_dir=pathlib.Path("/tmp/x/lib"), control_socket=pathlib.Path("/tmp/x/c.sock")
    )
    monkeypatch.setattr(charm.WhirlwindCharm, "_get_paths", lambda self: paths)

    ctx.run(ctx.on.config_changed(), leader_state())

    assert fake_workload.settings is not None
    assert fake_workload.settings.state_dir == paths.state_dir
    assert fake_workload.settings.control_socket == paths.control_socket

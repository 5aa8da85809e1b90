"""Bounded, checked inputs: what the charm and the agent accept from config and relations.

Each test failed before its fix: a provider could name the operator's secret and receive
its password at the provider's endpoints (confused deputy); `interval=10**12` and
`settle-timeout=10**10` were accepted (then OverflowError in the agent, a hook error in
replace-now); `services` could name Whirlwind itself; a ca-cert that TLS cannot load was
accepted (the agent then stayed "connecting" for ever); the password was silently stripped;
`replace-now dry-run=false` overrode the operator's `dry-run` option.
"""

from __future__ import annotations

import pathlib

import ops
import pytest
import yaml
from ops import testing

from charms.whirlwind.v0 import controller_credentials
from tests.unit import inmemory_backend as imb
from tests.unit.conftest import (
    MODEL_UUID,
    FakeControlClient,
    FakeWorkload,
    credentials_secret,
    leader_state,
    provider_relation,
)
from whirlwind import cli, control, settings

NOT_LOADABLE = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"


def _run(ctx: testing.Context, state: testing.State) -> testing.State:
    return ctx.run(ctx.on.config_changed(), state)


@pytest.mark.parametrize(
    "form", ["same", "bare", "model-qualified"], ids=["same-uri", "bare-id", "secret://model/id"]
)
def test_relation_cannot_name_the_operators_credentials_secret(
    ctx: testing.Context, fake_workload: FakeWorkload, form: str
) -> None:
    # The operator's secret (credentials option) and a provider that names it as its own.
    operator_secret = credentials_secret(password="operators-own-password")
    unique = controller_credentials.secret_unique_id(operator_secret.id)
    secret_id = {
        "same": operator_secret.id,
        "bare": unique,
        "model-qualified": f"secret://{MODEL_UUID}/{unique}",
    }[form]
    relation = provider_relation(
        None, **{"secret-id": secret_id, "endpoints": "203.0.113.9:17070"}
    )
    state = leader_state(secret=operator_secret, relations=[*leader_state().relations, relation])

    out = _run(ctx, state)

    assert out.unit_status == ops.BlockedStatus(
        "Invalid controller credentials: credentials-provider: secret-id names a secret that "
        "is not its own (the secret of the credentials option)"
    )
    assert fake_workload.settings is None  # nothing rendered, no password sent anywhere


def test_relation_cannot_name_a_secret_of_whirlwind_itself(
    ctx: testing.Context, fake_workload: FakeWorkload
) -> None:
    own = testing.Secret(tracked_content={"password": "whirlwinds-own"}, owner="app")
    relation = provider_relation(own)
    state = leader_state(relations=[*leader_state().relations, relation], secrets=[own])

    out = _run(ctx, state)

    assert out.unit_status == ops.BlockedStatus(
        "Invalid controller credentials: credentials-provider: secret-id names a secret of "
        "this charm, not the provider's"
    )
    assert fake_workload.settings is None


def test_the_providers_own_secret_goes_with_its_endpoints(
    ctx: testing.Context, fake_workload: FakeWorkload
) -> None:
    providers = testing.Secret(tracked_content={"password": "providers-password"})
    relation = provider_relation(providers)
    state = leader_state(relations=[*leader_state().relations, relation], secrets=[providers])

    _run(ctx, state)

    assert fake_workload.settings is not None
    assert fake_workload.settings.controller.password == "providers-password"
    assert fake_workload.settings.controller.endpoints == ("10.1.1.1:17070",)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"interval": 10**12}, "interval must be at most 2592000 (30 days), got 1000000000000"),
        (
            {"settle-timeout": 10**10},
            "settle-timeout must be at most 604800 (7 days), got 10000000000",
        ),
        ({"remove-timeout": 604801}, "remove-timeout must be at most 604800 (7 days), got 604801"),
        (
            {"services": "wsgi-example,whirlwind"},
            "services: whirlwind is this application; Whirlwind never replaces its own units",
        ),
    ],
)
def test_bad_config_blocks_with_a_message_naming_the_option(
    ctx: testing.Context, fake_workload: FakeWorkload, config: dict[str, object], message: str
) -> None:
    out = _run(ctx, leader_state(config=config))

    assert out.unit_status == ops.BlockedStatus(f"Invalid config: {message}")
    assert fake_workload.settings is None


def test_a_ca_cert_tls_cannot_load_blocks(
    ctx: testing.Context, fake_workload: FakeWorkload
) -> None:
    providers = testing.Secret(tracked_content={"password": "providers-password"})
    relation = provider_relation(providers, **{"ca-cert": NOT_LOADABLE})
    state = leader_state(relations=[*leader_state().relations, relation], secrets=[providers])

    out = _run(ctx, state)

    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert out.unit_status.message.startswith(
        "Invalid controller credentials: ca-cert: not a loadable certificate ("
    )
    assert fake_workload.settings is None


def test_the_password_is_kept_exactly(
    ctx: testing.Context, fake_workload: FakeWorkload, tmp_path: pathlib.Path
) -> None:
    password = "  with spaces around  "
    _run(ctx, leader_state(secret=credentials_secret(password=password)))

    assert fake_workload.settings is not None
    assert fake_workload.settings.controller.password == password
    # Through the agent's password file too.
    path = tmp_path / "credentials"
    path.write_text(password + "\n")
    assert settings.read_password_file(path) == password


def test_huge_timings_in_the_agents_settings_exit_2_with_one_line(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent_settings = imb.make_settings(tmp_path)
    data = agent_settings.to_dict()
    data["interval"] = 10**12
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump(data))

    code = cli.main(["run", "--config", str(config)])

    assert code == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "interval must be at most 2592000 (30 days)" in err[0]


def test_dry_run_in_the_settings_is_a_lock(tmp_path: pathlib.Path) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 2)

    async def scenario() -> tuple[str, str]:
        agent = await imb.start_agent(backend, tmp_path, dry_run=True)
        with pytest.raises(control.ControlError) as refused:
            await agent.engine.replace_now(control.ReplaceNowRequest("app", dry_run=False))
        dry = await agent.engine.replace_now(control.ReplaceNowRequest("app"))
        await agent.stop()
        return refused.value.code, dry["result"]

    code, result = imb.run_virtual(scenario())

    assert code == control.REFUSED
    assert result == "dry-run"
    assert backend.get_calls("add_unit") == []


def test_replace_now_dry_run_false_fails_the_action_when_dry_run_is_set(
    ctx: testing.Context, fake_client: FakeControlClient
) -> None:
    fake_client.errors["replace-now"] = control.ControlError(
        control.REFUSED, "dry-run is on in the settings, and it is a lock: turn it off first"
    )

    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(
            ctx.on.action("replace-now", params={"service": "wsgi-example", "dry-run": False}),
            leader_state(config={"dry-run": True}),
        )

    assert failed.value.message == (
        "Refused: dry-run is on in the settings, and it is a lock: turn it off first"
    )

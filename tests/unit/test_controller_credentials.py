"""The controller-credentials charm library on its own: both sides, with ops.testing."""

from __future__ import annotations

from typing import Any

import ops
import pytest
from ops import testing

from charms.whirlwind.v0 import controller_credentials as cc

CA = "-----BEGIN CERTIFICATE-----\nMIIBlibrarytest\n-----END CERTIFICATE-----\n"
PASSWORD = "lib-test-password-9f8e"

REQUIRER_META: dict[str, Any] = {
    "name": "requirer",
    "requires": {"controller": {"interface": "juju_controller_credentials", "limit": 1}},
}
PROVIDER_META: dict[str, Any] = {
    "name": "provider",
    "provides": {"credentials": {"interface": "juju_controller_credentials"}},
}


class RequirerCharm(ops.CharmBase):
    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.requirer = cc.ControllerCredentialsRequirer(self, "controller")


class ProviderCharm(ops.CharmBase):
    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.provider = cc.ControllerCredentialsProvider(self, "credentials")


def read_credentials(state: testing.State) -> cc.CredentialsResult | None:
    ctx = testing.Context(RequirerCharm, meta=REQUIRER_META)
    with ctx(ctx.on.update_status(), state) as manager:
        result = manager.charm.requirer.get_credentials()
        manager.run()
    return result


def password_secret(password: str = PASSWORD) -> testing.Secret:
    return testing.Secret(tracked_content={"password": password})


def relation_with(data: dict[str, str]) -> testing.Relation:
    return testing.Relation("controller", remote_app_name="provider", remote_app_data=data)


def full_data(secret: testing.Secret) -> dict[str, str]:
    return {
        "endpoints": "10.0.0.1:17070,10.0.0.2:17070",
        "ca-cert": CA,
        "username": "whirlwind",
        "secret-id": secret.id,
    }


def test_no_relation_gives_none():
    assert read_credentials(testing.State()) is None


def test_empty_databag_is_waiting():
    result = read_credentials(testing.State(relations=[relation_with({})]))

    assert result == cc.CredentialsWaiting("waiting for credentials from provider")


@pytest.mark.parametrize("missing", ["username", "secret-id"])
def test_missing_username_or_secret_id_is_waiting(missing: str):
    secret = password_secret()
    data = full_data(secret)
    del data[missing]

    result = read_credentials(testing.State(relations=[relation_with(data)], secrets=[secret]))

    assert isinstance(result, cc.CredentialsWaiting)


@pytest.mark.parametrize("missing", ["endpoints", "ca-cert"])
def test_missing_endpoints_or_ca_means_use_your_own(missing: str):
    secret = password_secret()
    data = full_data(secret)
    del data[missing]

    result = read_credentials(testing.State(relations=[relation_with(data)], secrets=[secret]))

    assert isinstance(result, cc.ControllerCredentials)
    assert result.username == "whirlwind"
    assert result.password == PASSWORD
    if missing == "endpoints":
        assert result.endpoints == ()
        assert result.ca_cert == CA
    else:
        assert result.endpoints == ("10.0.0.1:17070", "10.0.0.2:17070")
        assert result.ca_cert is None


def test_complete_databag_and_secret_give_credentials():
    secret = password_secret()

    result = read_credentials(
        testing.State(relations=[relation_with(full_data(secret))], secrets=[secret])
    )

    assert result == cc.ControllerCredentials(
        username="whirlwind",
        password=PASSWORD,
        endpoints=("10.0.0.1:17070", "10.0.0.2:17070"),
        ca_cert=CA,
    )
    assert PASSWORD not in repr(result)


@pytest.mark.parametrize("endpoint", ["10.0.0.1", "10.0.0.1:0", "host:99999", "a b:c", "x:y:z"])
def test_malformed_endpoint_is_invalid(endpoint: str):
    secret = password_secret()
    data = full_data(secret) | {"endpoints": endpoint}

    result = read_credentials(testing.State(relations=[relation_with(data)], secrets=[secret]))

    assert isinstance(result, cc.CredentialsInvalid)
    assert result.reason.startswith("provider: endpoints:")


def test_malformed_ca_is_invalid():
    secret = password_secret()
    data = full_data(secret) | {"ca-cert": "not a certificate"}

    result = read_credentials(testing.State(relations=[relation_with(data)], secrets=[secret]))

    assert result == cc.CredentialsInvalid("provider: ca-cert: not a PEM certificate")


def test_secret_not_found_or_not_granted_is_waiting():
    # The secret is not in the state: Juju says "not found" until it is granted to us.
    data = full_data(password_secret()) | {"secret-id": "secret:cv0aaaaaaaaaaaaaaaaa"}

    result = read_credentials(testing.State(relations=[relation_with(data)]))

    assert result == cc.CredentialsWaiting("waiting for provider to grant the credentials secret")


def test_secret_without_password_is_invalid():
    secret = testing.Secret(tracked_content={"token": "x"})

    result = read_credentials(
        testing.State(relations=[relation_with(full_data(secret))], secrets=[secret])
    )

    assert result == cc.CredentialsInvalid("secret from provider has no 'password'")


def test_requirer_reads_the_latest_secret_revision():
    secret = testing.Secret(
        tracked_content={"password": "old"}, latest_content={"password": PASSWORD}
    )

    result = read_credentials(
        testing.State(relations=[relation_with(full_data(secret))], secrets=[secret])
    )

    assert isinstance(result, cc.ControllerCredentials)
    assert result.password == PASSWORD


def publish(state: testing.State, relation: testing.RelationBase, **kwargs: Any) -> testing.State:
    ctx = testing.Context(ProviderCharm, meta=PROVIDER_META)
    args: dict[str, Any] = {
        "endpoints": ["10.0.0.1:17070"],
        "ca_cert": CA,
        "username": "whirlwind",
        "password": PASSWORD,
    }
    args.update(kwargs)
    with ctx(ctx.on.update_status(), state) as manager:
        rel = manager.charm.model.get_relation("credentials", relation.id)
        assert rel is not None
        manager.charm.provider.publish(rel, **args)
        return manager.run()


def test_provider_publishes_databag_and_grants_secret():
    relation = testing.Relation("credentials", remote_app_name="whirlwind")

    out = publish(testing.State(leader=True, relations=[relation]), relation)

    data = out.get_relation(relation.id).local_app_data
    assert data["endpoints"] == "10.0.0.1:17070"
    assert data["ca-cert"] == CA
    assert data["username"] == "whirlwind"
    assert PASSWORD not in str(data)
    secret = out.get_secret(id=data["secret-id"])
    assert secret.latest_content == {"password": PASSWORD}
    assert secret.owner == "app"
    assert "whirlwind" in secret.remote_grants[relation.id]


def test_provider_updates_the_password_in_place():
    relation = testing.Relation("credentials", remote_app_name="whirlwind")
    first = publish(testing.State(leader=True, relations=[relation]), relation)
    secret_id = first.get_relation(relation.id).local_app_data["secret-id"]

    out = publish(first, first.get_relation(relation.id), password="new-password", ca_cert=None)

    data = out.get_relation(relation.id).local_app_data
    assert data["secret-id"] == secret_id
    assert "ca-cert" not in data
    assert out.get_secret(id=secret_id).latest_content == {"password": "new-password"}
    assert len(out.secrets) == 1


def test_provider_refuses_what_a_requirer_would_reject():
    relation = testing.Relation("credentials", remote_app_name="whirlwind")
    ctx = testing.Context(ProviderCharm, meta=PROVIDER_META)
    state = testing.State(leader=True, relations=[relation])
    with ctx(ctx.on.update_status(), state) as m:
        rel = m.charm.model.get_relation("credentials")
        assert rel is not None
        with pytest.raises(cc.CredentialsFormatError, match="endpoints"):
            m.charm.provider.publish(rel, ["nope"], CA, "whirlwind", PASSWORD)


def test_provider_to_requirer_round_trip():
    provided = testing.Relation("credentials", remote_app_name="whirlwind")
    out = publish(testing.State(leader=True, relations=[provided]), provided)
    published = out.get_relation(provided.id).local_app_data
    owned = out.get_secret(id=published["secret-id"])
    # The same secret as the requirer sees it: owned by someone else, granted to it.
    granted = testing.Secret(tracked_content=dict(owned.latest_content), id=owned.id)

    result = read_credentials(
        testing.State(relations=[relation_with(dict(published))], secrets=[granted])
    )

    assert result == cc.ControllerCredentials(
        username="whirlwind", password=PASSWORD, endpoints=("10.0.0.1:17070",), ca_cert=CA
    )


def test_unpublish_removes_the_secret():
    relation = testing.Relation("credentials", remote_app_name="whirlwind")
    first = publish(testing.State(leader=True, relations=[relation]), relation)
    ctx = testing.Context(ProviderCharm, meta=PROVIDER_META)

    with ctx(ctx.on.update_status(), first) as manager:
        rel = manager.charm.model.get_relation("credentials")
        assert rel is not None
        manager.charm.provider.unpublish(rel)
        out = manager.run()

    assert not out.secrets


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"username": "u", "password": "p"}, cc.ControllerCredentials("u", "p")),
        (
            {"username": "u", "password": "p", "endpoints": "[::1]:17070 10.0.0.1:17070"},
            cc.ControllerCredentials("u", "p", ("[::1]:17070", "10.0.0.1:17070")),
        ),
        ({"password": "p"}, cc.CredentialsInvalid("secret has no 'username'")),
        ({"username": "u"}, cc.CredentialsInvalid("secret has no 'password'")),
        ({}, cc.CredentialsInvalid("secret has no 'username' or 'password'")),
        (
            {"username": "u", "password": "p", "endpoints": "bad"},
            cc.CredentialsInvalid("endpoints: 'bad' is not host:port"),
        ),
    ],
)
def test_user_secret_content(content: dict[str, str], expected: cc.CredentialsResult):
    assert cc.credentials_from_secret_content(content) == expected

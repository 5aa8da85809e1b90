"""Juju controller credentials over a relation: both sides and the secret schema.

Interface `juju_controller_credentials`. The provider's application databag carries:

- `endpoints`: controller API addresses, comma-separated `host:port` (optional)
- `ca-cert`: the controller's CA certificate, PEM (optional)
- `username`: the Juju user to log in as
- `secret-id`: the ID of a Juju secret, granted to the relation, with the content key
  `password`

Every field is optional on the wire (a provider may publish in steps); nothing secret is
ever written to the databag. A requirer that lacks `endpoints` or `ca-cert` uses its own
controller connection. The same keys (`endpoints`, `ca-cert`, `username`, `password`)
form the content of a user secret an operator can give instead of a relation.

Provider (call on the leader)::

    provider = ControllerCredentialsProvider(self, "credentials")
    provider.publish(relation, endpoints, ca_cert, username, password)

Requirer::

    requirer = ControllerCredentialsRequirer(self, "controller")
    result = requirer.get_credentials()  # None, ControllerCredentials, Waiting or Invalid
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Iterable, Mapping

import ops

# The unique Charmhub library identifier, never change it
LIBID = "982b5cfcf17f415db9e4fb884819d21d"

# Increment this major API version when introducing breaking changes
LIBAPI = 0

# Increment this PATCH version before using `charmcraft publish-lib` or reset
# to 0 if you are raising the major API version
LIBPATCH = 2

INTERFACE = "juju_controller_credentials"
ENDPOINTS_KEY = "endpoints"
CA_CERT_KEY = "ca-cert"
USERNAME_KEY = "username"
SECRET_ID_KEY = "secret-id"
PASSWORD_KEY = "password"

_ENDPOINT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"


@dataclasses.dataclass(frozen=True)
class ControllerCredentials:
    """Validated credentials; empty `endpoints` or `ca_cert` mean "use your own"."""

    username: str
    password: str = dataclasses.field(repr=False)
    endpoints: tuple[str, ...] = ()
    ca_cert: str | None = None


@dataclasses.dataclass(frozen=True)
class CredentialsWaiting:
    """The credentials are not there yet; `reason` says what is missing."""

    reason: str


@dataclasses.dataclass(frozen=True)
class CredentialsInvalid:
    """The credentials are there but wrong; `reason` names the field and the problem."""

    reason: str


CredentialsResult = ControllerCredentials | CredentialsWaiting | CredentialsInvalid


class CredentialsFormatError(ValueError):
    """A credentials field is malformed; the message names the field."""


def parse_endpoints(value: str) -> tuple[str, ...]:
    """`host:port` addresses from a comma or space separated string (may be empty)."""
    endpoints: list[str] = []
    for item in re.split(r"[,\s]+", value):
        if not item:
            continue
        match = _ENDPOINT.match(item)
        if match is None or not 0 < int(match.group(2)) < 65536:
            raise CredentialsFormatError(f"{ENDPOINTS_KEY}: {item!r} is not host:port")
        endpoints.append(item)
    return tuple(endpoints)


def parse_ca_cert(value: str) -> str:
    """The PEM text, normalised to end with one newline, if it looks like a certificate."""
    text = value.strip()
    if _PEM_BEGIN not in text or _PEM_END not in text:
        raise CredentialsFormatError(f"{CA_CERT_KEY}: not a PEM certificate")
    return text + "\n"


def secret_unique_id(uri: str) -> str:
    """The unique part of a secret URI, whatever its form.

    `secret:csgdeh3ufa16r4f5eqd0`, `secret://<model-uuid>/csgdeh3ufa16r4f5eqd0` and the bare
    `csgdeh3ufa16r4f5eqd0` all name the same secret.
    """
    text = uri.strip().split("?", 1)[0].rstrip("/")
    if text.startswith("secret:"):
        text = text[len("secret:") :]
    return text.rsplit("/", 1)[-1]


def credentials_from_fields(fields: Mapping[str, str], password: str) -> ControllerCredentials:
    """Validate the non-secret fields plus a password; raise CredentialsFormatError."""
    username = fields.get(USERNAME_KEY, "").strip()
    if not username:
        raise CredentialsFormatError(f"{USERNAME_KEY} is missing")
    if not password.strip():
        raise CredentialsFormatError(f"{PASSWORD_KEY} is empty")
    ca_text = fields.get(CA_CERT_KEY, "")
    return ControllerCredentials(
        username=username,
        # Exactly as given: a password may begin or end with a space.
        password=password,
        endpoints=parse_endpoints(fields.get(ENDPOINTS_KEY, "")),
        ca_cert=parse_ca_cert(ca_text) if ca_text.strip() else None,
    )


def credentials_from_secret_content(content: Mapping[str, str]) -> CredentialsResult:
    """Read a user secret with `username`, `password` and optional `endpoints`, `ca-cert`."""
    missing = [key for key in (USERNAME_KEY, PASSWORD_KEY) if not content.get(key, "").strip()]
    if missing:
        return CredentialsInvalid(f"secret has no {' or '.join(repr(k) for k in missing)}")
    try:
        return credentials_from_fields(content, content[PASSWORD_KEY])
    except CredentialsFormatError as exc:
        return CredentialsInvalid(str(exc))


class ControllerCredentialsRequirer(ops.Object):
    """Reads and validates the credentials a provider publishes on the relation."""

    def __init__(self, charm: ops.CharmBase, relation_name: str = "controller") -> None:
        super().__init__(charm, f"{relation_name}-credentials-requirer")
        self._charm = charm
        self._relation_name = relation_name

    @property
    def relation(self) -> ops.Relation | None:
        """The (single) credentials relation, if there is one."""
        return self._charm.model.get_relation(self._relation_name)

    def get_credentials(
        self, refused_secret_ids: Collection[str] = ()
    ) -> CredentialsResult | None:
        """None without a relation; otherwise the credentials, or why there are none yet.

        The relation's `secret-id` is read with this charm's own grants, so a provider could
        name a secret that is not its own (the operator's, or this charm's) and have its
        content sent to the provider's endpoints: `refused_secret_ids` (any URI form) and the
        charm's own secrets are refused.
        """
        relation = self.relation
        if relation is None:
            return None
        if relation.app is None:
            return CredentialsWaiting("waiting for the credentials provider to join")
        data = relation.data[relation.app]
        provider = relation.app.name
        if not data.get(USERNAME_KEY) or not data.get(SECRET_ID_KEY):
            return CredentialsWaiting(f"waiting for credentials from {provider}")
        secret_id = data[SECRET_ID_KEY]
        refused = {secret_unique_id(s) for s in refused_secret_ids if s}
        if secret_unique_id(secret_id) in refused:
            return CredentialsInvalid(
                f"{provider}: {SECRET_ID_KEY} names a secret that is not its own "
                "(the secret of the credentials option)"
            )
        try:
            secret = self._charm.model.get_secret(id=secret_id)
            content = secret.get_content(refresh=True)
        except ops.ModelError:
            # Not found or not (yet) granted to us: the provider grants it in its own time.
            return CredentialsWaiting(f"waiting for {provider} to grant the credentials secret")
        if _is_owned(secret):
            return CredentialsInvalid(
                f"{provider}: {SECRET_ID_KEY} names a secret of this charm, not the provider's"
            )
        password = content.get(PASSWORD_KEY, "")
        if not password.strip():
            return CredentialsInvalid(f"secret from {provider} has no {PASSWORD_KEY!r}")
        try:
            return credentials_from_fields(data, password)
        except CredentialsFormatError as exc:
            return CredentialsInvalid(f"{provider}: {exc}")


def _is_owned(secret: ops.Secret) -> bool:
    """Whether this charm owns `secret` (only an owner may read its metadata)."""
    try:
        secret.get_info()
    except ops.ModelError:  # SecretNotFoundError too: not ours
        return False
    return True


class ControllerCredentialsProvider(ops.Object):
    """Publishes credentials: plain fields in the app databag, the password in a secret."""

    def __init__(self, charm: ops.CharmBase, relation_name: str) -> None:
        super().__init__(charm, f"{relation_name}-credentials-provider")
        self._charm = charm
        self._relation_name = relation_name

    def publish(
        self,
        relation: ops.Relation,
        endpoints: Iterable[str],
        ca_cert: str | None,
        username: str,
        password: str,
    ) -> None:
        """Create or update the relation's password secret, grant it, write the databag."""
        endpoint_text = ",".join(endpoints)
        fields = {ENDPOINTS_KEY: endpoint_text, CA_CERT_KEY: ca_cert or "", USERNAME_KEY: username}
        credentials_from_fields(fields, password)  # refuse to publish what a requirer rejects
        label = self._secret_label(relation)
        content = {PASSWORD_KEY: password}
        try:
            secret = self._charm.model.get_secret(label=label)
        except ops.SecretNotFoundError:
            secret = self._charm.app.add_secret(
                content, label=label, description=f"controller password for {relation.name}"
            )
        else:
            if secret.peek_content() != content:
                secret.set_content(content)
        # A secret looked up by label has no ID yet; secret-info-get knows it.
        secret_id = secret.id or secret.get_info().id
        secret.grant(relation)
        data = relation.data[self._charm.app]
        for key, value in fields.items():
            if value:
                data[key] = value
            else:
                data.pop(key, None)
        data[SECRET_ID_KEY] = secret_id

    def unpublish(self, relation: ops.Relation) -> None:
        """Remove the relation's password secret (for example on relation-broken)."""
        try:
            secret = self._charm.model.get_secret(label=self._secret_label(relation))
        except ops.SecretNotFoundError:
            return
        secret.remove_all_revisions()

    def _secret_label(self, relation: ops.Relation) -> str:
        return f"{self._relation_name}-{relation.id}-password"

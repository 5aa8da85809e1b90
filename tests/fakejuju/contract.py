"""Contract checks: requests and responses against libjuju's generated facade types.

libjuju 3.6.1.3 generates one class per Juju schema type (juju.client._definitions) and one
method per facade call (juju.client._clientN); both carry their field types in docstrings
("name : typing.Sequence[~Entity]") and the methods map Python names to wire names
(_params["wire-name"] = python_name). This module reads those to check every message:
unknown fields, wrong JSON types, fields Juju always sends (non-omitempty in Juju's Go
structs, listed in REQUIRED) missing, and finally that libjuju's own from_json accepts it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Mapping
from typing import Any

# `client` must be imported: it patches libjuju's overrides (Delta among them) into the
# generated types, as every libjuju user gets them. Without it the checker would judge
# replies against types libjuju never uses (seen in the CLI fake, which imports nothing else).
from juju.client import _client, _definitions, client, overrides

# Fields Juju always sends (no omitempty in apiserver/params) for the types the fake emits.
REQUIRED: dict[str, tuple[str, ...]] = {
    "LoginResult": ("servers", "controller-tag", "user-info", "facades", "server-version"),
    "AuthUserInfo": ("display-name", "identity", "controller-access", "model-access"),
    "FacadeVersions": ("name", "versions"),
    "HostPort": ("value", "type", "scope", "port"),
    "ModelConfigResults": ("config",),
    "ConfigValue": ("value", "source"),
    "AllWatcherId": ("watcher-id",),
    "AllWatcherNextResults": ("deltas",),
    "FullStatus": (
        "model", "machines", "applications", "remote-applications", "offers", "relations",
        "controller-timestamp", "branches",
    ),
    "ModelStatusInfo": (
        "name", "type", "cloud-tag", "version", "available-version", "model-status",
        "meter-status", "sla",
    ),
    "ApplicationStatus": (
        "charm", "charm-version", "charm-profile", "base", "exposed", "life", "relations",
        "can-upgrade-to", "subordinate-to", "units", "meter-statuses", "status",
        "workload-version", "endpoint-bindings", "public-address",
    ),
    "UnitStatus": (
        "agent-status", "workload-status", "workload-version", "machine", "opened-ports",
        "public-address", "charm", "subordinates",
    ),
    "MachineStatus": (
        "agent-status", "instance-status", "modification-status", "dns-name", "ip-addresses",
        "instance-id", "display-name", "base", "id", "containers", "constraints", "hardware",
        "jobs", "has-vote", "wants-vote",
    ),
    "DetailedStatus": ("status", "info", "data", "since", "kind", "version", "life"),
    "Base": ("name", "channel"),
    "MeterStatus": ("color", "message"),
    "StatusHistoryResults": ("results",),
    "StatusHistoryResult": ("history",),
    "History": ("statuses",),
    "ModelInfoResults": ("results",),
    "ModelInfo": (
        "name", "type", "uuid", "controller-uuid", "is-controller", "cloud-tag", "owner-tag",
        "life", "users", "machines", "secret-backends", "sla", "agent-version",
    ),
    "EntityStatus": ("status", "info", "since"),
    "ModelUserInfo": ("model-tag", "user", "display-name", "last-connection", "access"),
    "ModelMachineInfo": ("id",),
    "ModelSLAInfo": ("level", "owner"),
    "ErrorResults": ("results",),
    "Error": ("message", "code"),
    "AddApplicationUnitsResults": ("units",),
    "DestroyUnitResults": ("results",),
    "DestroyMachineResults": ("results",),
    "DestroyMachineInfo": ("machine-id",),
    "AnnotationsGetResults": ("results",),
    "AnnotationsGetResult": ("entity", "annotations"),
    "StorageDetails": ("storage-tag", "owner-tag", "kind", "status", "persistent"),
    "StorageAttachmentDetails": ("storage-tag", "unit-tag", "machine-tag"),
    "FilesystemDetails": ("filesystem-tag", "info", "status"),
    "FilesystemInfo": ("filesystem-id", "pool", "size"),
    # rpc/params/actions.go: time.Time fields are sent even when zero (omitempty or not).
    "EnqueuedActions": ("operation",),
    "ActionResult": ("enqueued", "started", "completed"),
    "Action": ("tag", "receiver", "name"),
}  # fmt: skip

# Types the schema names but libjuju does not generate.
EXTRA_TYPES: dict[str, dict[str, str]] = {
    "FacadeVersions": {"name": "str", "versions": "typing.Sequence[int]"},
}

# Where libjuju's generated docstring type differs from what Juju sends and libjuju reads.
FIELD_OVERRIDES: dict[tuple[str, str], str] = {
    # Juju sends [][]HostPort; the generated type flattens it. libjuju reads it raw.
    ("LoginResult", "servers"): "typing.Sequence[typing.Sequence[~HostPort]]",
}
# Calls whose reply libjuju reads as raw JSON (Connection.login), never via from_json: the
# generated LoginResult cannot even parse (it names an undefined FacadeVersions type).
RAW_RESULTS = frozenset({("Admin", "Login")})

_STATUS_INFO = ("current", "message", "since", "version")
# Juju 3.6 multiwatcher structs (core/multiwatcher, apiserver/params): every key, all sent.
DELTA_KEYS: dict[str, tuple[str, ...]] = {
    "model": (
        "model-uuid", "name", "life", "owner", "controller-uuid", "is-controller", "config",
        "status", "constraints", "sla", "type",
    ),
    "application": (
        "model-uuid", "name", "exposed", "charm-url", "owner-tag", "life", "min-units",
        "constraints", "subordinate", "status", "workload-version",
    ),
    "unit": (
        "model-uuid", "name", "application", "base", "charm-url", "life", "public-address",
        "private-address", "machine-id", "ports", "port-ranges", "principal", "subordinate",
        "workload-status", "agent-status",
    ),
    "machine": (
        "model-uuid", "id", "instance-id", "container-type", "agent-status", "instance-status",
        "life", "base", "supported-containers", "supported-containers-known",
        "hardware-characteristics", "jobs", "addresses", "has-vote", "wants-vote", "hostname",
    ),
    "annotation": ("model-uuid", "tag", "annotations"),
    # rpc/params/multiwatcher.go ActionInfo as apiserver/watcher.go TranslateAction fills it
    # (parameters and results omitempty and never copied).
    "action": (
        "model-uuid", "id", "receiver", "name", "status", "message", "enqueued", "started",
        "completed",
    ),
}  # fmt: skip
_DELTA_STATUS_FIELDS = {
    "model": ("status",),
    "application": ("status",),
    "unit": ("workload-status", "agent-status"),
    "machine": ("agent-status", "instance-status"),
}
_FIELD_RE = re.compile(r"^\s*(\w+) : (.+?)\s*$")
_PARAM_RE = re.compile(r'_params\["([^"]+)"\] = (\w+)')
_RETURNS_RE = re.compile(r"Returns -> (\w+)")


class ContractViolationError(AssertionError):
    """A message did not match libjuju's generated types."""


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """Wire shape of one facade method: param wire name -> type, result type name."""

    params: Mapping[str, str]
    result: str | None


@functools.cache
def type_fields(type_name: str) -> Mapping[str, str] | None:
    """Return wire field name -> type expression for a generated type, or None."""
    if type_name in EXTRA_TYPES:
        return EXTRA_TYPES[type_name]
    cls = getattr(_definitions, type_name, None)
    if cls is None or not hasattr(cls, "_toSchema"):
        return None
    by_lower = {py.lower(): wire for py, wire in cls._toSchema.items()}
    fields: dict[str, str] = {}
    for line in (cls.__init__.__doc__ or "").splitlines():
        match = _FIELD_RE.match(line)
        if match and match.group(1).lower() in by_lower:
            wire = by_lower[match.group(1).lower()]
            fields[wire] = FIELD_OVERRIDES.get((type_name, wire), match.group(2))
    return fields


@functools.cache
def method_spec(facade: str, version: int, method: str) -> MethodSpec | None:
    """Return the wire shape of facade.method at version from libjuju's generated client."""
    module = _client.CLIENTS.get(str(version))
    cls = getattr(module, f"{facade}Facade", None) if module else None
    func = getattr(cls, method, None) if cls else None
    if func is None:
        return None
    doc = inspect.getdoc(func) or ""
    py_types: dict[str, str] = {}
    for line in doc.splitlines():
        match = _FIELD_RE.match(line)
        if match:
            py_types[match.group(1)] = match.group(2)
    source = inspect.getsource(func)
    params = {wire: py_types.get(py, "typing.Any") for wire, py in _PARAM_RE.findall(source)}
    returns = _RETURNS_RE.search(doc)
    result = returns.group(1) if returns else None
    return MethodSpec(params, None if result == "None" else result)


def _check_value(expr: str, value: Any, path: str, errors: list[str]) -> None:
    if value is None:
        return  # Go sends null for nil slices, maps and pointers.
    expr = expr.strip().lstrip("~")
    if expr in ("typing.Any", "Any", "object"):
        return
    scalar = {"str": str, "int": int, "float": (int, float), "bool": bool}
    if expr in scalar:
        ok = isinstance(value, scalar[expr]) and not (
            expr in ("int", "float") and isinstance(value, bool)
        )
        if not ok:
            errors.append(f"{path}: expected {expr}, got {type(value).__name__}")
        return
    if expr.startswith("typing.Sequence[") and expr.endswith("]"):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for index, item in enumerate(value):
            _check_value(expr[len("typing.Sequence[") : -1], item, f"{path}[{index}]", errors)
        return
    if expr.startswith("typing.Mapping[str, ") and expr.endswith("]"):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        for key, item in value.items():
            _check_value(expr[len("typing.Mapping[str, ") : -1], item, f"{path}.{key}", errors)
        return
    check_type(expr, value, path, errors)


def check_type(type_name: str, value: Any, path: str, errors: list[str]) -> None:
    """Check value against a generated type, appending violations to errors."""
    if type_name == "Number":
        if not (isinstance(value, str) and overrides.Number.numberPat.match(value)):
            errors.append(f"{path}: expected a version string, got {value!r}")
        return
    if type_name == "Delta":
        check_delta(value, path, errors)
        return
    fields = type_fields(type_name)
    if fields is None:
        return  # a type libjuju does not know: nothing to compare with
    if not isinstance(value, dict):
        errors.append(f"{path}: expected {type_name} object, got {type(value).__name__}")
        return
    for key in value:
        if key not in fields:
            errors.append(f"{path}: unknown field {key!r} for {type_name}")
    for key in REQUIRED.get(type_name, ()):
        if key not in value:
            errors.append(f"{path}: missing field {key!r} of {type_name}")
    for key, expr in fields.items():
        if key in value:
            _check_value(expr, value[key], f"{path}.{key}", errors)


_LIBJUJU_PATCHED = client  # keep the import: it has side effects


def check_delta(value: Any, path: str, errors: list[str]) -> None:
    """Check one watcher delta [kind, change|remove, info] against Juju's multiwatcher."""
    if not (isinstance(value, list) and len(value) == 3):
        errors.append(f"{path}: a delta must be [kind, change, info]")
        return
    kind, change, info = value
    if change not in ("change", "remove"):
        errors.append(f"{path}: bad delta change type {change!r}")
    if not isinstance(info, dict):
        errors.append(f"{path}: delta info must be an object")
        return
    keys = DELTA_KEYS.get(kind)
    if keys is None:
        errors.append(f"{path}: unexpected delta kind {kind!r}")
        return
    for key in info:
        if key not in keys:
            errors.append(f"{path}: unknown {kind} delta field {key!r}")
    for key in keys:
        if key not in info:
            errors.append(f"{path}: missing {kind} delta field {key!r}")
    for field in _DELTA_STATUS_FIELDS.get(kind, ()):
        status = info.get(field)
        if isinstance(status, dict) and sorted(status) != sorted(_STATUS_INFO):
            errors.append(f"{path}.{field}: status keys {sorted(status)}")


def _parse_with_libjuju(type_name: str, value: Any, path: str, errors: list[str]) -> None:
    cls = getattr(_client, type_name, None)
    if cls is None:
        return
    try:
        cls.from_json(value)
    # libjuju's generated validators raise bare Exception on a type mismatch.
    except Exception as exc:  # noqa: BLE001
        errors.append(f"{path}: libjuju {type_name}.from_json failed: {exc}")


def check_request(facade: str, version: int, method: str, params: Any) -> list[str]:
    """Return violations of a request's params against the generated facade method."""
    spec = method_spec(facade, version, method)
    path = f"{facade}({version}).{method} params"
    if spec is None:
        return [f"{path}: libjuju has no such method"]
    errors: list[str] = []
    if not isinstance(params, dict):
        return [f"{path}: params must be an object"]
    for key, value in params.items():
        if key not in spec.params:
            errors.append(f"{path}: unknown field {key!r}")
        else:
            _check_value(spec.params[key], value, f"{path}.{key}", errors)
    return errors


def check_response(facade: str, version: int, method: str, response: Any) -> list[str]:
    """Return violations of a response against the generated result type of the method."""
    spec = method_spec(facade, version, method)
    path = f"{facade}({version}).{method} response"
    if spec is None:
        return [f"{path}: libjuju has no such method"]
    if spec.result is None:
        return [] if response in ({}, None) else [f"{path}: expected an empty response"]
    errors: list[str] = []
    check_type(spec.result, response, path, errors)
    if (facade, method) not in RAW_RESULTS:
        _parse_with_libjuju(spec.result, response, path, errors)
    return errors


def check_error_envelope(message: Mapping[str, Any]) -> list[str]:
    """Return violations of Juju's error envelope (libjuju needs request-id, error, response).

    `error-code` is omitempty in Juju (rpc/jsoncodec outMsgV1): absent when there is no code.
    """
    errors = [
        f"error envelope: missing {key!r}"
        for key in ("request-id", "error", "response")
        if key not in message
    ]
    if not isinstance(message.get("error"), str):
        errors.append("error envelope: 'error' must be a string")
    if "error-code" in message and not (
        isinstance(message["error-code"], str) and message["error-code"]
    ):
        errors.append("error envelope: 'error-code' is left out when there is no code")
    return errors

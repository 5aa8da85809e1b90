"""Juju API facades served by the fake: the advertised list, routing and the call handlers.

Each behaviour names the Juju 3.6 source (commit 6761e481) it follows.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tests.fakejuju import execs as execs_mod
from tests.fakejuju import lifecycle as lifecycle_mod
from tests.fakejuju import model as model_mod

if TYPE_CHECKING:
    from tests.fakejuju import server as server_mod

SERVER_VERSION = "3.6.1"
# apiserver/admin.go adminAPIFactories: the only Login version; Admin is not in the registry, so
# Login never lists it.
LOGIN_VERSION = 3

# apiserver/allfacades.go AllFacades() and registerWatchers(): the facade registry. Login lists
# the part of it the connection may use (admin.go filterFacades), sorted by name.
FACADES: dict[str, tuple[int, ...]] = {
    "Action": (7,), "ActionPruner": (1,), "Agent": (3,), "AgentLifeFlag": (1,), "AgentTools": (1,),
    "AllModelWatcher": (4,), "AllWatcher": (3,), "Annotations": (2,),
    "Application": (15, 16, 17, 18, 19, 20), "ApplicationOffers": (4, 5),
    "ApplicationScaler": (1,), "Backups": (3,), "Block": (2,), "Bundle": (6,),
    "CAASAdmission": (1,), "CAASAgent": (2,), "CAASApplication": (1,),
    "CAASApplicationProvisioner": (1,), "CAASFirewaller": (1,), "CAASFirewallerSidecar": (1,),
    "CAASModelConfigManager": (1,), "CAASModelOperator": (1,), "CAASOperator": (1,),
    "CAASOperatorProvisioner": (1,), "CAASOperatorUpgrader": (1,), "CAASUnitProvisioner": (2,),
    "CharmDownloader": (1,), "CharmRevisionUpdater": (2,), "Charms": (5, 6, 7), "Cleaner": (2,),
    "Client": (6, 7, 8), "Cloud": (7,), "Controller": (11, 12), "CredentialManager": (1,),
    "CredentialValidator": (2,), "CrossController": (1,), "CrossModelRelations": (2, 3),
    "CrossModelSecrets": (1,), "Deployer": (1,), "DiskManager": (2,), "EntityWatcher": (2,),
    "EnvironUpgrader": (1,), "ExternalControllerUpdater": (1,), "FanConfigurer": (1,),
    "FilesystemAttachmentsWatcher": (2,), "Firewaller": (7,), "HighAvailability": (2,),
    "HostKeyReporter": (1,), "ImageMetadata": (3,), "ImageMetadataManager": (1,),
    "InstanceMutater": (3,), "InstancePoller": (4,), "KeyManager": (1,), "KeyUpdater": (1,),
    "LeadershipService": (2,), "LifeFlag": (1,), "LogForwarding": (1,), "Logger": (1,),
    "MachineActions": (1,), "MachineManager": (9, 10), "MachineUndertaker": (1,), "Machiner": (5,),
    "MeterStatus": (2,), "MetricsAdder": (2,), "MetricsDebug": (2,), "MetricsManager": (1,),
    "MigrationFlag": (1,), "MigrationMaster": (3,), "MigrationMinion": (1,),
    "MigrationStatusWatcher": (1,), "MigrationTarget": (1, 2, 3), "ModelConfig": (3,),
    "ModelGeneration": (4,), "ModelManager": (9, 10), "ModelSummaryWatcher": (1,),
    "ModelUpgrader": (1,), "NotifyWatcher": (1,), "OfferStatusWatcher": (1,), "Payloads": (1,),
    "PayloadsHookContext": (1,), "Pinger": (1,), "Provisioner": (11,), "ProxyUpdater": (2,),
    "Reboot": (2,), "RelationStatusWatcher": (1,), "RelationUnitsWatcher": (1,),
    "RemoteRelationWatcher": (1,), "RemoteRelations": (2,), "Resources": (3,),
    "ResourcesHookContext": (1,), "RetryStrategy": (1,), "SSHClient": (4,), "SecretBackends": (1,),
    "SecretBackendsManager": (1,), "SecretBackendsRotateWatcher": (1,), "Secrets": (1, 2),
    "SecretsDrain": (1,), "SecretsManager": (1, 2), "SecretsRevisionWatcher": (1,),
    "SecretsTriggerWatcher": (1,), "Singular": (2,), "Spaces": (6,), "StatusHistory": (2,),
    "Storage": (6,), "StorageProvisioner": (4,), "StringsWatcher": (1,), "Subnets": (5,),
    "Undertaker": (1,), "UnitAssigner": (1,), "Uniter": (18, 19), "UpgradeSeries": (3, 4),
    "UpgradeSteps": (2,), "Upgrader": (1,), "UserManager": (3,), "UserSecretsDrain": (1,),
    "UserSecretsManager": (1,), "VolumeAttachmentPlansWatcher": (1,),
    "VolumeAttachmentsWatcher": (2,),
}  # fmt: skip
# apiserver/restrict_controller.go controllerFacadeNames: only on a controller connection (/api).
CONTROLLER_FACADES = frozenset({
    "AllModelWatcher", "ApplicationOffers", "Cloud", "Controller", "CrossController",
    "MigrationTarget", "ModelManager", "ModelUpgrader", "ModelSummaryWatcher", "SecretBackends",
    "UserManager",
})  # fmt: skip
# restrict_controller.go commonFacadeNames: also served on a controller connection.
COMMON_FACADES = frozenset(
    {"Pinger", "Bundle", "HighAvailability", "NotifyWatcher", "ModelConfig"}
)

# names/v5 tag.go validKinds, and the id syntax of the kinds the fake has.
_TAG_KINDS = frozenset({
    "unit", "machine", "application", "applicationoffer", "environment", "user", "relation",
    "action", "volume", "storage", "operation", "filesystem", "ipaddress", "space", "subnet",
    "payload", "model", "controller", "cloud", "cloudcred", "caasmodel",
})  # fmt: skip
_NUMBER = r"(?:0|[1-9][0-9]*)"
_APPLICATION = r"(?:[a-z][a-z0-9]*(?:-[a-z0-9]*[a-z][a-z0-9]*)*)"
_APPLICATION_RE = re.compile(rf"^{_APPLICATION}$")
_UNIT_RE = re.compile(rf"^{_APPLICATION}/{_NUMBER}$")
_MACHINE_RE = re.compile(rf"^{_NUMBER}(?:/[a-z]+/{_NUMBER})*$")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_RFC3339_RE = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d\d):(\d\d))$"
)


class RpcError(Exception):
    """An error reply: message plus Juju error code ("" when Juju sends none)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class TagError(Exception):
    """A string names/v5 ParseTag refuses; the message is Juju's."""


@dataclasses.dataclass(frozen=True)
class Call:
    """What the handler needs to know about one request."""

    facade: str
    version: int
    method: str
    params: Mapping[str, Any]
    watcher_id: str | None


Handler = Callable[
    ["server_mod.FakeJujuController", "server_mod.Session", Call], Awaitable[dict[str, Any]]
]
HANDLERS: dict[tuple[str, str], Handler] = {}


def handles(facade: str, method: str) -> Callable[[Handler], Handler]:
    """Register a handler for facade.method."""

    def register(func: Handler) -> Handler:
        HANDLERS[(facade, method)] = func
        return func

    return register


def error_json(message: str, code: str) -> dict[str, Any]:
    """Return an error as it appears inside bulk results (params.Error)."""
    return {"message": message, "code": code}


def go_quote(text: str) -> str:
    """Quote a string as Go's %q does for the plain strings Juju quotes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_tag(tag: str) -> tuple[str, str]:
    """Return (kind, id) of a tag as names.ParseTag does, or raise TagError with its message."""
    kind, dash, rest = tag.partition("-")
    if not dash or kind not in _TAG_KINDS:
        raise TagError(f"{go_quote(tag)} is not a valid tag")
    ident = rest
    if kind == "unit":
        # unitTagSuffixToId: the last "-" separates the unit number.
        app, sep, number = rest.rpartition("-")
        ident = f"{app}/{number}" if sep and app else rest
        valid = bool(_UNIT_RE.match(ident))
    elif kind == "machine":
        ident = rest.replace("-", "/")
        valid = bool(_MACHINE_RE.match(ident))
    elif kind == "application":
        valid = bool(_APPLICATION_RE.match(rest))
    elif kind == "model":
        valid = bool(_UUID_RE.match(rest))
    else:
        valid = bool(rest)
    if not valid:
        raise TagError(f"{go_quote(tag)} is not a valid {kind} tag")
    return kind, ident


def parse_tag_of_kind(tag: str, kind: str) -> str:
    """Return the id of a tag of one kind (names.ParseUnitTag & co), or raise TagError."""
    parsed_kind, ident = parse_tag(tag)
    if parsed_kind != kind:
        raise TagError(f"{go_quote(tag)} is not a valid {kind} tag")
    return ident


def _entity_exists(ctl: server_mod.FakeJujuController, kind: str, ident: str) -> bool:
    """Return whether state.FindEntity finds the entity (the kinds the fake has)."""
    model = ctl.model
    if kind == "unit":
        return ident in model.units
    if kind == "machine":
        return ident in model.machines
    if kind == "application":
        return ident in model.applications
    if kind == "model":
        return ident == model.uuid
    return False


# -- routing --------------------------------------------------------------------


def facade_allowed(facade: str, controller: bool) -> bool:
    """Return whether Juju serves (and lists at Login) a facade on this kind of connection.

    apiserver/restrict_controller.go IsControllerFacade, restrict_model.go IsModelFacade.
    """
    if controller:
        return facade in CONTROLLER_FACADES or facade in COMMON_FACADES
    return facade not in CONTROLLER_FACADES


def login_facades(controller: bool) -> list[dict[str, Any]]:
    """Return the Login "facades" list for a controller or a model connection."""
    return [
        {"name": name, "versions": list(versions)}
        for name, versions in sorted(FACADES.items())
        if facade_allowed(name, controller)
    ]


def _unknown_facade(facade: str, version: int) -> RpcError:
    # rpcreflect CallNotImplementedError without a method: the registry looks name and version
    # up together (apiserver/root.go lookupMethod), so an unknown facade reads like a bad version.
    if version:
        message = f"unknown version ({version}) of interface {go_quote(facade)}"
    else:
        message = f"unknown object type {go_quote(facade)}"
    return RpcError(message, "not implemented")


def not_implemented(call: Call) -> RpcError:
    """Return Juju's error for a call the fake does not serve (rpc/server.go serverError)."""
    versions = FACADES.get(call.facade)
    if versions is None or call.version not in versions:
        return _unknown_facade(call.facade, call.version)
    method = f"{call.facade}({call.version})" if call.version else call.facade
    return RpcError(
        f"no such request - method {method}.{call.method} is not implemented", "not implemented"
    )


def check_model(ctl: server_mod.FakeJujuController, session: server_mod.Session) -> None:
    """Refuse every call on a connection to an unknown model.

    apiserver/apiserver.go serveConn: the connection gets an errRoot answering every request,
    Login included and before any credential check, with UnknownModelError.
    """
    if session.model_uuid is not None and session.model_uuid != ctl.model_uuid:
        raise RpcError(f"unknown model: {go_quote(session.model_uuid)}", "model not found")


def check_route(
    session: server_mod.Session,
    call: Call,
    ctl: server_mod.FakeJujuController | None = None,
) -> None:
    """Refuse calls Juju would refuse on this connection before dispatching.

    Pass `ctl` to refuse calls on a connection to an unknown model too (Login does it anyway).
    """
    if ctl is not None:
        check_model(ctl, session)
    if not session.logged_in:
        # apiserver/root.go adminRoot.FindMethod: only Admin (version 3) before Login.
        if call.facade != "Admin":
            raise _unknown_facade(call.facade, call.version)
        if call.version != LOGIN_VERSION:
            raise RpcError(
                "this version of Juju does not support login from old clients", "not supported"
            )
        if (call.facade, call.method) not in HANDLERS:
            raise RpcError(
                f"no such request - method Admin.{call.method} is not implemented",
                "not implemented",
            )
        return
    # After Login the API root replaces the admin root (admin.go login), behind the facade
    # restriction of the connection (root.go restrictAPIRoot), which is checked first.
    if session.is_controller and not facade_allowed(call.facade, True):
        raise RpcError(
            f"facade {go_quote(call.facade)} not supported for controller API connection",
            "not supported",
        )
    if not session.is_controller and not facade_allowed(call.facade, False):
        raise RpcError(
            f"facade {go_quote(call.facade)} not supported for model API connection",
            "not supported",
        )
    versions = FACADES.get(call.facade)
    if versions is None or call.version not in versions:
        raise _unknown_facade(call.facade, call.version)


def _single(params: Mapping[str, Any], key: str) -> list[Any]:
    value = params.get(key)
    return list(value) if isinstance(value, list) else []


# -- Admin / Pinger / ModelConfig -------------------------------------------


@handles("Admin", "Login")
async def _login(ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call):
    check_model(ctl, session)
    user_tag = f"user-{ctl.username}"
    auth_tag = str(call.params.get("auth-tag") or "")
    if auth_tag:
        try:
            parse_tag(auth_tag)
        except TagError as exc:
            # admin.go authenticate: names.ParseTag's error, traced, no code.
            raise RpcError(str(exc), "") from None
    if auth_tag != user_tag or call.params.get("credentials") != ctl.password:
        # authentication/agent.go Authenticate: ErrBadCreds, code from errors.go
        # singletonErrorCodes. The " (unauthorized access)" suffix the Juju CLI prints is added
        # by its client (rpc/client.go RequestError.Error), not sent.
        raise RpcError("invalid entity name or password", "unauthorized access")
    session.logged_in = True
    result: dict[str, Any] = {
        "servers": [
            [
                {
                    "value": ctl.host,
                    "type": "ipv4",
                    "scope": "local-cloud",
                    "port": ctl.port,
                    "space-id": "0",
                }
            ]
        ],
        "controller-tag": f"controller-{model_mod.CONTROLLER_UUID}",
        # admin.go checkUserPermissions: no display name, no last connection.
        "user-info": {
            "display-name": "",
            "identity": user_tag,
            "controller-access": "superuser",
            "model-access": "" if session.is_controller else "admin",
        },
        "facades": login_facades(session.is_controller),
        "server-version": SERVER_VERSION,
    }
    if not session.is_controller:
        result["model-tag"] = f"model-{ctl.model_uuid}"
    return result


@handles("Admin", "RedirectInfo")
async def _redirect_info(
    ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call
):
    check_model(ctl, session)
    # admin.go RedirectInfo: a Juju controller never redirects.
    raise RpcError("not redirected", "")


@handles("Pinger", "Ping")
async def _ping(ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call):
    return {}


@handles("ModelConfig", "ModelGet")
async def _model_get(ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call):
    config = ctl.model.config()
    sources = {"name": "model", "uuid": "model", "type": "model"}
    return {
        "config": {
            key: {"value": value, "source": sources.get(key, "default")}
            for key, value in config.items()
        }
    }


# -- Client / AllWatcher ----------------------------------------------------


@handles("Client", "WatchAll")
async def _watch_all(ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call):
    watcher = ctl.model.new_watcher()
    session.watchers.add(watcher.id)
    return {"watcher-id": watcher.id}


def _watcher(ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call):
    # apiserver/watcher.go newAllWatcher: the connection's resources hold no such id (never
    # created, another connection's, or stopped): ErrUnknownWatcher, code "not found".
    watcher_id = call.watcher_id or ""
    watcher = ctl.model.watchers.get(watcher_id)
    if watcher is None or watcher_id not in session.watchers:
        raise RpcError("unknown watcher id", "not found")
    return watcher


@handles("AllWatcher", "Next")
async def _next(ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call):
    watcher = _watcher(ctl, session, call)
    try:
        deltas = await watcher.next()
    except model_mod.WatcherStoppedError:
        # worker/multiwatcher/watcher.go Next: core/multiwatcher NewErrStopped, which no
        # ServerError case gives a code.
        raise RpcError("watcher was stopped", "") from None
    return {"deltas": deltas}


@handles("AllWatcher", "Stop")
async def _stop(ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call):
    watcher = _watcher(ctl, session, call)
    # watcher.go watcherCommon.Stop: dispose the facade object and drop the resource.
    session.watchers.discard(watcher.id)
    ctl.model.stop_watcher(watcher.id)
    return {}


def _life(life: str) -> str:
    # FullStatus leaves life empty for alive entities (processLife in Juju).
    return "" if life == "alive" else life


def _detailed(status: model_mod.Status, kind: str = "", life: str = "") -> dict[str, Any]:
    # params.DetailedStatus: err is omitempty.
    value = status.detailed_json(kind=kind, life=life)
    if value.get("err") is None:
        value.pop("err", None)
    return value


def _unit_status(
    ctl: server_mod.FakeJujuController, unit: model_mod.Unit, leader: bool
) -> dict[str, Any]:
    # apiserver/common/unitstatus.go: lost only where canBeLost allows it.
    workload, agent = ctl.model.presented_unit_status(unit)
    app = ctl.model.applications.get(unit.application)
    status: dict[str, Any] = {
        "agent-status": _detailed(agent, life=_life(unit.life)),
        "workload-status": _detailed(workload, life=_life(unit.life)),
        "workload-version": "",
        "machine": unit.machine_id,
        "opened-ports": [],
        "public-address": unit.public_address,
        "charm": app.charm_url if app else "",
        "subordinates": {},
    }
    if leader:
        status["leader"] = True
    if unit.private_address:
        status["address"] = unit.private_address
    return status


def _machine_status(machine: model_mod.Machine) -> dict[str, Any]:
    # apiserver/common/machinestatus.go: never down while pending or stopped.
    agent = model_mod.ModelState.presented_machine_agent(machine)
    running = bool(machine.instance_id)
    status: dict[str, Any] = {
        "agent-status": _detailed(agent, life=_life(machine.life)),
        "instance-status": _detailed(machine.instance),
        "modification-status": _detailed(model_mod.Status("idle", "", machine.instance.since)),
        "dns-name": machine.address,
        "ip-addresses": [machine.address] if machine.address else [],
        "instance-id": machine.instance_id or "pending",
        "display-name": "",
        "base": {"name": "ubuntu", "channel": "22.04"},
        "id": machine.id,
        "containers": {},
        "constraints": "",
        "hardware": "arch=amd64 cores=2 mem=4096M" if running else "",
        "jobs": list(machine.jobs),
        "has-vote": False,
        "wants-vote": False,
    }
    if running:
        status["hostname"] = machine.instance_id
    return status


# -- FullStatus patterns (apiserver/facades/client/client/status.go, filtering.go) ---------

# core/status/status.go KnownAgentStatus / KnownWorkloadStatus.
_KNOWN_AGENT = frozenset({"allocating", "error", "failed", "rebooting", "executing", "idle"})
_KNOWN_WORKLOAD = frozenset(
    {"blocked", "maintenance", "waiting", "active", "unknown", "terminated", "error"}
)
# filtering.go validPattern: each side of a unit pattern's "/".
_UNIT_PATTERN_PART = re.compile(r"^[a-z0-9-*]+$")
# filtering.go InvalidFormatErr, annotated twice by FullStatus and UnitChainPredicateFn.
_INVALID_FORMAT = (
    "could not filter units: could not filter units: "
    "the given filter did not match any known patterns."
)

# One matcher: (matches, format understood).
_Shim = Callable[[], tuple[bool, bool]]


def _unit_name_matcher(patterns: list[str]) -> list[re.Pattern[str]] | None:
    """Return NewUnitMatcher's patterns as regexes, or None if any pattern is invalid."""
    compiled = []
    for pattern in patterns:
        fields = pattern.split("/")
        if len(fields) > 2 or not all(_UNIT_PATTERN_PART.match(f) for f in fields):
            return None
        if len(fields) == 1:
            pattern += "/*"
        # path.Match: "*" is any run of non-"/" characters; nothing else is special here.
        regex = "".join("[^/]*" if ch == "*" else re.escape(ch) for ch in pattern)
        compiled.append(re.compile(f"^{regex}$"))
    return compiled


def _any_ok(shims: Iterable[_Shim]) -> tuple[bool, bool]:
    """filtering.go BuildPredicateFor `or`: (matched, some shim understood the format)."""
    understood = False
    for shim in shims:
        matches, ok = shim()
        if ok:
            understood = True
            if matches:
                return True, True
    return False, understood


class _StatusFilter:
    """FullStatus patterns for the entities the fake has (no subordinates, ports, containers)."""

    def __init__(self, ctl: server_mod.FakeJujuController, patterns: list[str]) -> None:
        self.model = ctl.model
        self.patterns = patterns
        self.unit_names = _unit_name_matcher(patterns)
        # Units the predicate matched (not those kept for their machine): status.go
        # matchedUnits, which decides what storage is shown.
        self.matched_units: set[str] = set()

    def _exposure(self, app: model_mod.Application | None) -> tuple[bool, bool]:
        # filtering.go matchExposure.
        exposed = bool(app and app.exposed)
        if self.patterns[:1] == ["exposed"]:
            return exposed, True
        if self.patterns[:2] == ["not", "exposed"]:
            return not exposed, True
        return False, False

    def _agent_status(self, current: str) -> tuple[bool, bool]:
        known = [p for p in self.patterns if p in _KNOWN_AGENT]
        return current in known, bool(known)

    def _unit_shims(self, unit: model_mod.Unit) -> list[_Shim]:
        # filtering.go buildUnitMatcherShims.
        def name() -> tuple[bool, bool]:
            if self.unit_names is None:
                return False, False
            return any(r.match(unit.name) for r in self.unit_names), True

        def workload() -> tuple[bool, bool]:
            known = [p for p in self.patterns if p in _KNOWN_WORKLOAD]
            matched = unit.agent.current != "error" and unit.workload.current in known
            return matched, bool(known)

        def ports() -> tuple[bool, bool]:
            # No unit opens ports here; an unassigned unit has no port ranges to look at.
            return False, bool(unit.machine_id)

        return [
            name,
            lambda: self._agent_status(unit.agent.current),
            workload,
            lambda: self._exposure(self.model.applications.get(unit.application)),
            ports,
        ]

    def machine_matches(self, machine: model_mod.Machine) -> bool:
        """Return whether a machine matches (buildMachineMatcherShims)."""

        def machine_id() -> tuple[bool, bool]:
            valid = [p for p in self.patterns if _MACHINE_RE.match(p)]
            matched = any(machine.id == p or machine.id.startswith(p + "/") for p in valid)
            return matched, bool(valid)

        def subnet() -> tuple[bool, bool]:
            addresses = [machine.address] if machine.address else []
            understood = False
            for pattern in self.patterns:
                if pattern in addresses:
                    return True, True
                if "/" not in pattern:
                    continue
                try:
                    network = ipaddress.ip_network(pattern, strict=False)
                except ValueError:
                    continue
                understood = True
                if any(ipaddress.ip_address(a) in network for a in addresses):
                    return True, True
            return False, understood

        matched, _ = _any_ok(
            [
                machine_id,
                lambda: self._agent_status(machine.agent.current),
                subnet,
                lambda: (False, True),
            ]
        )
        return matched

    def unit_matches(self, unit: model_mod.Unit) -> bool:
        """Return whether a principal unit matches (UnitChainPredicateFn without subordinates)."""
        matched, understood = _any_ok(self._unit_shims(unit))
        if not understood:
            raise RpcError(_INVALID_FORMAT, "")
        return matched

    def application_matches(self, name: str) -> bool:
        """Return whether an application matches (buildApplicationMatcherShims)."""
        app = self.model.applications.get(name)
        shims: list[_Shim] = [
            lambda: (any(p.casefold() == name.casefold() for p in self.patterns), True),
            lambda: self._exposure(app),
        ]
        for unit in self.model.units.values():
            if unit.application == name:
                shims.extend(self._unit_shims(unit))
        return _any_ok(shims)[0]

    def select(self) -> tuple[set[str], set[str], set[str]]:
        """Return the applications, units and machines FullStatus keeps (Client.FullStatus)."""
        machines = {m.id for m in self.model.machines.values() if self.machine_matches(m)}
        apps: set[str] = set()
        units: set[str] = set()
        apps_on_machine: dict[str, list[str]] = {}
        for unit in sorted(self.model.units.values(), key=lambda u: (u.application, u.number)):
            if unit.machine_id and unit.machine_id in machines:
                # A unit on a matching machine is kept as it is.
                apps.add(unit.application)
                units.add(unit.name)
                continue
            if unit.machine_id:
                apps_on_machine.setdefault(unit.machine_id, []).append(unit.application)
            if not self.unit_matches(unit):
                continue
            apps.add(unit.application)
            units.add(unit.name)
            self.matched_units.add(unit.name)
            if unit.machine_id:
                machines.add(unit.machine_id)
        for machine_id in machines:
            apps.update(apps_on_machine.get(machine_id, []))
        kept = {n for n in self.model.applications if n in apps or self.application_matches(n)}
        return kept, units, machines


def _resolve_leaders(patterns: list[str], leaders: Mapping[str, str]) -> list[str]:
    # status.go resolveLeaderUnits: "app/leader" (any pattern containing "leader") -> its unit.
    resolved = []
    for pattern in patterns:
        application = pattern.split("/")[0]
        if "leader" in pattern and application in leaders:
            pattern = leaders[application]
        resolved.append(pattern)
    return resolved


def _unit_tag(name: str) -> str:
    return "unit-" + name.replace("/", "-")


def _entity_status(status: model_mod.Status) -> dict[str, Any]:
    # params.EntityStatus: data is omitempty, since is not.
    return {
        "status": status.current,
        "info": status.message,
        "since": model_mod.format_time(status.since),
    }


def _storage_details(
    ctl: server_mod.FakeJujuController, storage: model_mod.StorageInstance
) -> dict[str, Any]:
    """apiserver/common/storagecommon/storagedetails.go StorageDetails (params.StorageDetails)."""
    details: dict[str, Any] = {
        "storage-tag": storage.tag,
        "owner-tag": _unit_tag(storage.owner) if storage.owner else "",
        "kind": model_mod.STORAGE_KIND_FILESYSTEM,
        # The filesystem's status; persistent is only read from volumes.
        "status": _entity_status(storage.status),
        "life": storage.life,
        "persistent": False,
    }
    if storage.attached_unit:
        unit = ctl.model.units.get(storage.attached_unit)
        machine_id = unit.machine_id if unit is not None else ""
        attachment: dict[str, Any] = {
            "storage-tag": storage.tag,
            "unit-tag": _unit_tag(storage.attached_unit),
            "machine-tag": f"machine-{machine_id}" if machine_id else "",
            "life": storage.attachment_life,
        }
        # storageAttachmentInfo: the mount point once the filesystem attachment is provisioned.
        if storage.location:
            attachment["location"] = storage.location
        details["attachments"] = {_unit_tag(storage.attached_unit): attachment}
    return details


def _filesystem_details(
    ctl: server_mod.FakeJujuController, storage: model_mod.StorageInstance
) -> dict[str, Any]:
    """storagecommon/filesystemdetails.go FilesystemDetails (params.FilesystemDetails)."""
    created = bool(storage.provider_id)
    details: dict[str, Any] = {
        "filesystem-tag": f"filesystem-{storage.filesystem_id}",
        # Filesystem.Info() fails until the provisioner created it: the zero FilesystemInfo.
        "info": {
            "filesystem-id": storage.provider_id,
            "pool": storage.pool if created else "",
            "size": storage.size if created else 0,
        },
        "life": storage.life,
        "status": _entity_status(storage.status),
        "storage": _storage_details(ctl, storage),
    }
    if storage.machine_id:
        # FilesystemAttachmentDetails embeds FilesystemAttachmentInfo without a json tag:
        # mount-point (omitempty) is sent flat. IAAS attachments are all machine ones, so
        # unit-attachments is an empty map, which omitempty leaves out.
        attachment: dict[str, Any] = {"life": storage.machine_attachment_life}
        if storage.location:
            attachment["mount-point"] = storage.location
        details["machine-attachments"] = {f"machine-{storage.machine_id}": attachment}
    return details


def _storage_status(
    ctl: server_mod.FakeJujuController, selection: _StatusFilter | None
) -> dict[str, Any]:
    """FullStatus with include-storage: storage and filesystems (no volumes on LXD's pool).

    status.go FullStatus: with patterns only storage owned by a matched unit is kept (storage
    without an owner never); the three lists are omitempty, so empty ones are left out.
    """
    instances = sorted(ctl.model.storage.values(), key=lambda s: s.number)
    if selection is not None:
        instances = [s for s in instances if s.owner and s.owner in selection.matched_units]
    if not instances:
        return {}
    return {
        "storage": [_storage_details(ctl, s) for s in instances],
        "filesystems": [
            _filesystem_details(ctl, s)
            for s in sorted(instances, key=lambda s: int(s.filesystem_id))
        ],
    }


@handles("Client", "FullStatus")
async def _full_status(
    ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call
):
    model = ctl.model
    # The lease holders (worker/lease): FullStatus flags the unit that holds one.
    leaders = dict(model.leaders)
    patterns = [str(p) for p in _single(call.params, "patterns")]
    keep_apps = set(model.applications)
    keep_units = set(model.units)
    keep_machines = set(model.machines)
    selection = None
    if patterns:
        selection = _StatusFilter(ctl, _resolve_leaders(patterns, leaders))
        keep_apps, keep_units, keep_machines = selection.select()
    # client.go ClientV6.FullStatus drops include-storage; v7 and v8 honour it.
    include_storage = call.version >= 7 and call.params.get("include-storage") is True
    applications: dict[str, Any] = {}
    for name, app in model.applications.items():
        if name not in keep_apps:
            continue
        units = sorted(
            (u for u in model.units.values() if u.application == name and u.name in keep_units),
            key=lambda u: u.number,
        )
        applications[name] = {
            "charm": app.charm_url,
            "charm-version": "",
            "charm-profile": "",
            "charm-channel": "latest/stable",
            "charm-rev": app.charm_rev,
            "base": {"name": "ubuntu", "channel": "22.04"},
            "exposed": app.exposed,
            "life": _life(app.life),
            "relations": {},
            "can-upgrade-to": "",
            "subordinate-to": [],
            "units": {u.name: _unit_status(ctl, u, leaders.get(name) == u.name) for u in units},
            "meter-statuses": {},
            # processApplication: the application's own status, whatever the filter kept.
            "status": _detailed(model.application_status(name)),
            "workload-version": "",
            "endpoint-bindings": {"": "alpha"},
            "public-address": "",
        }
    return {
        "model": {
            "name": model.name,
            "type": "iaas",
            "cloud-tag": "cloud-localhost",
            "region": "localhost",
            "version": SERVER_VERSION,
            "available-version": "",
            "model-status": _detailed(model.model_status),
            "meter-status": {"color": "", "message": ""},
            "sla": "unsupported",
        },
        "machines": {
            m.id: _machine_status(m) for m in model.machines.values() if m.id in keep_machines
        },
        "applications": applications,
        "remote-applications": {},
        "offers": {},
        "relations": [],
        "controller-timestamp": model_mod.format_time(ctl.clock.now()),
        "branches": {},
        **(_storage_status(ctl, selection) if include_storage else {}),
    }


# -- StatusHistory (apiserver/facades/client/client/status.go, state/status.go) ------------


def _filter_problem(filt: Mapping[str, Any]) -> str | None:
    # core/status/status_history.go StatusHistoryFilter.Validate: exactly one of the three.
    size = filt.get("size")
    by_size = isinstance(size, int) and size > 0
    by_date = filt.get("date") is not None
    by_delta = filt.get("delta") is not None
    if not (by_size or by_date or by_delta):
        return "missing filter parameters"
    if by_size and by_date:
        return "Size and Date together"
    if by_size and by_delta:
        return "Size and Delta together"
    if by_date and by_delta:
        return "Date and Delta together"
    return None


def parse_rfc3339(value: str) -> float:
    """Return epoch seconds of an RFC 3339 time as Go's time.Time decodes it, or raise."""
    match = _RFC3339_RE.match(value)
    if match is None:
        raise ValueError(value)
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zulu, sign, off_hours, off_minutes = match.groups()[6:]
    offset = datetime.timedelta(0)
    if not zulu:
        offset = datetime.timedelta(hours=int(off_hours), minutes=int(off_minutes))
        if sign == "-":
            offset = -offset
    stamp = datetime.datetime(
        year, month, day, hour, minute, second, tzinfo=datetime.timezone(offset)
    )
    return stamp.timestamp() + (int(fraction.ljust(9, "0")) / 1e9 if fraction else 0.0)


class _HistoryLookupError(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _fetch_history(
    ctl: server_mod.FakeJujuController, tag: str, stored_kind: str, filt: Mapping[str, Any]
) -> list[model_mod.HistoryEntry]:
    """state/status.go fetchNStatusResults: the newest `size` records after the cut-off."""
    entries = [e for e in ctl.model.history.get(tag, []) if e.kind == stored_kind]
    if filt.get("delta") is not None:
        cutoff = ctl.clock.now() - int(filt["delta"]) / 1e9
        entries = [e for e in entries if e.status.since > cutoff]
    if filt.get("date") is not None:
        cutoff = parse_rfc3339(str(filt["date"]))
        entries = [e for e in entries if e.status.since > cutoff]
    exclude = set(filt.get("exclude") or ())
    entries = [e for e in entries if e.status.message not in exclude]
    # Sort("-updated").Limit(size)
    entries.sort(key=lambda e: e.status.since, reverse=True)
    size = filt.get("size") or 0
    return entries[:size] if size > 0 else entries


def _history_statuses(
    ctl: server_mod.FakeJujuController, kind: str, tag: str, filt: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Client.StatusHistory for one request: oldest first, or raise _HistoryLookupError."""
    model = ctl.model
    picked: list[tuple[model_mod.HistoryEntry, str]] = []
    try:
        if kind in ("unit", "workload", "juju-unit"):
            name = parse_tag_of_kind(tag, "unit")
            if name not in model.units:
                raise _HistoryLookupError(f"unit {go_quote(name)} not found", "not found")
            for stored in ("workload", "juju-unit"):
                if kind in ("unit", stored):
                    picked += [(e, stored) for e in _fetch_history(ctl, tag, stored, filt)]
        elif kind in ("application", "saas"):
            name = parse_tag_of_kind(tag, "application")
            if kind == "saas" or name not in model.applications:
                what = "remote application" if kind == "saas" else "application"
                raise _HistoryLookupError(f"{what} {go_quote(name)} not found", "not found")
            picked = [(e, kind) for e in _fetch_history(ctl, tag, kind, filt)]
        elif kind == "model":
            model_tag = f"model-{model.uuid}"
            picked = [(e, kind) for e in _fetch_history(ctl, model_tag, kind, filt)]
        else:
            # Any other kind names machine history: instance for machine/container, else agent.
            machine_id = parse_tag_of_kind(tag, "machine")
            if machine_id not in model.machines:
                raise _HistoryLookupError(f"machine {machine_id} not found", "not found")
            stored = "machine" if kind in ("machine", "container") else "juju-machine"
            picked = [(e, kind) for e in _fetch_history(ctl, tag, stored, filt)]
    except TagError as exc:
        raise _HistoryLookupError(str(exc), "") from None
    # sort.Sort(byTime(...)): oldest first; a "unit" request then keeps the newest `size`.
    picked.sort(key=lambda item: item[0].status.since)
    size = filt.get("size") or 0
    if kind == "unit" and size > 0:
        picked = picked[-size:]
    # agentStatusFromStatusInfo: status, info, data, since and kind; no version, no life.
    return [
        _detailed(model_mod.Status(e.status.current, e.status.message, e.status.since), kind=k)
        for e, k in picked
    ]


@handles("Client", "StatusHistory")
async def _status_history(
    ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call
):
    results: list[dict[str, Any]] = []
    for request in _single(call.params, "requests"):
        kind = str(request.get("historyKind") or "")
        tag = str(request.get("tag") or "")
        filt = request.get("filter") or {}
        if filt.get("date") is not None:
            try:
                parse_rfc3339(str(filt["date"]))
            except ValueError:
                # The params do not decode: the whole call fails (rpc/server.go readBody).
                raise RpcError(
                    f"parsing time {go_quote(go_quote(str(filt['date'])))} as "
                    '"\\"2006-01-02T15:04:05Z07:00\\"": cannot parse',
                    "",
                ) from None
        problem = _filter_problem(filt)
        if problem is not None:
            message = f"cannot validate status history filter: {problem} not valid"
            results.append({"history": {"statuses": None},
                            "error": error_json(message, "not valid")})  # fmt: skip
            continue
        try:
            statuses = _history_statuses(ctl, kind, tag, filt)
        except _HistoryLookupError as exc:
            message = f"fetching status history for {go_quote(tag)}: {exc.message}"
            results.append({"history": {"statuses": None},
                            "error": error_json(message, exc.code)})  # fmt: skip
            continue
        results.append({"history": {"statuses": statuses}})
    return {"results": results}


# -- ModelManager -----------------------------------------------------------


@handles("ModelManager", "ModelInfo")
async def _model_info(ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call):
    model = ctl.model
    results = []
    for entity in _single(call.params, "entities"):
        if entity.get("tag") != f"model-{model.uuid}":
            results.append({"error": error_json(f'model "{entity.get("tag")}" not found',
                                                "not found")})  # fmt: skip
            continue
        info = {
            "name": model.name,
            "type": "iaas",
            "uuid": model.uuid,
            "controller-uuid": model_mod.CONTROLLER_UUID,
            "is-controller": model.is_controller,
            "provider-type": "lxd",
            "default-base": "ubuntu@22.04",
            "cloud-tag": "cloud-localhost",
            "cloud-region": "localhost",
            "cloud-credential-tag": f"cloudcred-localhost_{ctl.username}_localhost",
            "cloud-credential-validity": True,
            "owner-tag": f"user-{model.owner}",
            "life": "alive",
            "status": {
                "status": model.model_status.current,
                "info": model.model_status.message,
                "since": model_mod.format_time(model.model_status.since),
            },
            "users": [
                {
                    "model-tag": f"model-{model.uuid}",
                    "user": ctl.username,
                    "display-name": ctl.username,
                    "last-connection": model_mod.format_time(ctl.clock.now()),
                    "access": "admin",
                }
            ],
            "machines": [
                {"id": m.id, "instance-id": m.instance_id, "status": m.agent.current}
                for m in model.machines.values()
            ],
            "secret-backends": [],
            "sla": {"level": "unsupported", "owner": model.owner},
            "agent-version": SERVER_VERSION,
        }
        results.append({"result": info})
    return {"results": results}


# -- Application / MachineManager ------------------------------------------


@handles("Application", "AddUnits")
async def _add_units(ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call):
    count = call.params.get("num-units") or 0
    if count < 1:
        raise RpcError("must add at least one unit", "not valid")
    if call.params.get("placement"):
        raise RpcError("placement directives are not supported by the fake", "not supported")
    try:
        units = ctl.lifecycle.add_units(str(call.params.get("application")), int(count))
    except lifecycle_mod.LifecycleError as exc:
        raise RpcError(exc.message, exc.code) from None
    return {"units": units}


def _tag_to_unit(tag: str) -> str | None:
    if not tag.startswith("unit-") or "-" not in tag[5:]:
        return None
    app, _, number = tag[5:].rpartition("-")
    return f"{app}/{number}" if number.isdigit() else None


@handles("Application", "DestroyUnit")
async def _destroy_unit(
    ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call
):
    results = []
    for request in _single(call.params, "units"):
        name = _tag_to_unit(str(request.get("unit-tag", "")))
        if name is None:
            results.append({"error": error_json(f'"{request.get("unit-tag")}" is not a valid '
                                                "unit tag", "")})  # fmt: skip
            continue
        max_wait = request.get("max-wait")
        destroy_storage = request.get("destroy-storage") is True
        # application.go DestroyUnit: the unit's storage, classified before it is destroyed
        # (the lxd pool's filesystems are detachable: detached unless destroy-storage).
        storage = [{"tag": s.tag} for s in ctl.model.storage_of(name)]
        info = {("destroyed-storage" if destroy_storage else "detached-storage"): storage}
        try:
            if not request.get("dry-run"):
                ctl.lifecycle.destroy_unit(
                    name,
                    force=bool(request.get("force")),
                    max_wait=None if max_wait is None else max_wait / 1e9,
                    destroy_storage=destroy_storage,
                )
            elif name not in ctl.model.units:
                raise lifecycle_mod.LifecycleError(f'unit "{name}" not found', "not found")
        except lifecycle_mod.LifecycleError as exc:
            results.append({"error": error_json(exc.message, exc.code)})
            continue
        # DestroyUnitInfo: both lists are omitempty.
        results.append({"info": info if storage else {}})
    return {"results": results}


@handles("MachineManager", "DestroyMachineWithParams")
async def _destroy_machine(
    ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call
):
    results = []
    for tag in _single(call.params, "machine-tags"):
        machine_id = str(tag).removeprefix("machine-")
        try:
            max_wait = call.params.get("max-wait")
            units = ctl.lifecycle.destroy_machine(
                machine_id,
                force=bool(call.params.get("force")),
                max_wait=None if max_wait is None else max_wait / 1e9,
            )
        except lifecycle_mod.LifecycleError as exc:
            results.append({"error": error_json(exc.message, exc.code)})
            continue
        info: dict[str, Any] = {"machine-id": machine_id}
        if units:
            info["destroyed-units"] = [{"tag": "unit-" + u.replace("/", "-")} for u in units]
        results.append({"info": info})
    return {"results": results}


# -- Action (apiserver/facades/client/action/run.go, action.go, operation.go) -------------


def _strings(params: Mapping[str, Any], key: str) -> list[str]:
    return [str(item) for item in _single(params, key)]


@handles("Action", "Run")
async def _action_run(ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call):
    timeout = call.params.get("timeout")
    try:
        operation, actions = ctl.execs.run(
            _strings(call.params, "units"),
            _strings(call.params, "applications"),
            _strings(call.params, "machines"),
            str(call.params.get("commands") or ""),
            timeout if isinstance(timeout, int) and not isinstance(timeout, bool) else 0,
        )
    except execs_mod.ExecError as exc:
        raise RpcError(exc.message, exc.code) from None
    # params.EnqueuedActions: actions omitempty.
    return {"operation": operation, **({"actions": actions} if actions else {})}


@handles("Action", "Actions")
async def _action_actions(
    ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call
):
    results: list[dict[str, Any]] = []
    zero = model_mod.GO_ZERO_TIME
    for entity in _single(call.params, "entities"):
        tag = str(entity.get("tag", "")) if isinstance(entity, dict) else ""
        try:
            action_id = parse_tag_of_kind(tag, "action")
        except TagError:
            action_id = ""
        action = ctl.model.actions.get(action_id)
        if action is None:
            # action.go Actions: a bad tag or a missing action are both ErrBadId.
            results.append({"enqueued": zero, "started": zero, "completed": zero,
                            "error": error_json("id not found", "not found")})  # fmt: skip
            continue
        results.append(ctl.execs.action_result(action))
    return {"results": results} if results else {}


@handles("Action", "Cancel")
async def _action_cancel(
    ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call
):
    results: list[dict[str, Any]] = []
    zero = model_mod.GO_ZERO_TIME
    for entity in _single(call.params, "entities"):
        tag = str(entity.get("tag", "")) if isinstance(entity, dict) else ""
        # action.go Cancel: every result names the tag asked for, errors included.
        failed: dict[str, Any] = {
            "action": {"tag": tag, "receiver": "", "name": ""},
            "enqueued": zero, "started": zero, "completed": zero,
        }  # fmt: skip
        try:
            action_id = parse_tag_of_kind(tag, "action")
        except TagError:
            results.append({**failed, "error": error_json("id not found", "not found")})
            continue
        try:
            action = ctl.execs.cancel(action_id)
        except KeyError:
            # state/action.go Model.Action: errors.NotFoundf("action %q", id).
            message = f"action {go_quote(action_id)} not found"
            results.append({**failed, "error": error_json(message, "not found")})
            continue
        results.append(ctl.execs.action_result(action))
    return {"results": results} if results else {}


# -- Annotations (apiserver/facades/client/annotations/client.go, state/annotations.go) ----


def _annotation_entity_error(
    ctl: server_mod.FakeJujuController, tag: str, operation: str
) -> dict[str, Any] | None:
    """Return the error for a tag findEntity refuses, or None if the entity exists."""
    prefix = f"while {operation} annotations to {go_quote(tag)}"
    try:
        kind, ident = parse_tag(tag)
    except TagError as exc:
        return error_json(f"{prefix}: {exc}", "")
    if not _entity_exists(ctl, kind, ident):
        # findEntity turns not-found into ErrPerm: code "unauthorized access".
        return error_json(f"{prefix}: permission denied", "unauthorized access")
    return None


@handles("Annotations", "Set")
async def _annotations_set(
    ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call
):
    errors = []
    for item in _single(call.params, "annotations"):
        tag = str(item.get("entity", ""))
        error = _annotation_entity_error(ctl, tag, "setting")
        if error is not None:
            errors.append({"error": error})
            continue
        values = {str(k): str(v) for k, v in dict(item.get("annotations") or {}).items()}
        if not values:
            continue  # state.Model.SetAnnotations: nothing to write, no transaction
        bad = next((key for key in values if "." in key), None)
        if bad is not None:
            message = (
                f"while setting annotations to {go_quote(tag)}: "
                f"cannot update annotations on {tag}: invalid key {go_quote(bad)}"
            )
            errors.append({"error": error_json(message, "")})
            continue
        ctl.model.set_annotations(tag, values)
    # Juju only lists the failures.
    return {"results": errors}


@handles("Annotations", "Get")
async def _annotations_get(
    ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call
):
    results = []
    for entity in _single(call.params, "entities"):
        tag = str(entity.get("tag", ""))
        # params.AnnotationsGetResult.Error is a non-pointer ErrorResult: always an object.
        error = _annotation_entity_error(ctl, tag, "getting")
        if error is not None:
            results.append({"entity": tag, "annotations": None, "error": {"error": error}})
            continue
        annotations = dict(ctl.model.annotations.get(tag, {}))
        results.append({"entity": tag, "annotations": annotations, "error": {}})
    return {"results": results}

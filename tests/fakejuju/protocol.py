"""Juju API facades served by the fake: the advertised list and the call handlers."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from tests.fakejuju import lifecycle as lifecycle_mod
from tests.fakejuju import model as model_mod

if TYPE_CHECKING:
    from tests.fakejuju import server as server_mod

SERVER_VERSION = "3.6.1"

# What a Juju 3.6 controller lists at Login (client-facing and agent facades alike).
FACADES: dict[str, tuple[int, ...]] = {
    "Action": (7,), "ActionPruner": (1,), "Admin": (3,), "Agent": (3,), "AgentLifeFlag": (1,),
    "AgentTools": (1,), "AllModelWatcher": (4,), "AllWatcher": (3,), "Annotations": (2,),
    "Application": (19, 20), "ApplicationOffers": (4, 5), "ApplicationScaler": (1,),
    "Backups": (3,), "Block": (2,), "Bundle": (6,), "CharmDownloader": (1,),
    "CharmRevisionUpdater": (2,), "Charms": (5, 6, 7), "Cleaner": (2,), "Client": (6, 7, 8),
    "Cloud": (7,), "Controller": (11, 12), "CredentialManager": (1,),
    "CredentialValidator": (2,), "CrossController": (1,), "CrossModelRelations": (3,),
    "CrossModelSecrets": (1,), "Deployer": (1,), "DiskManager": (2,), "EntityWatcher": (2,),
    "EnvironUpgrader": (1,), "ExternalControllerUpdater": (1,), "FanConfigurer": (1,),
    "FilesystemAttachmentsWatcher": (2,), "Firewaller": (7,), "FirewallRules": (1,),
    "HighAvailability": (2,), "HostKeyReporter": (1,), "ImageMetadata": (3,),
    "ImageMetadataManager": (1,), "InstanceMutater": (3,), "InstancePoller": (4,),
    "KeyManager": (1,), "KeyUpdater": (1,), "LeadershipService": (2,), "LifeFlag": (1,),
    "LogForwarding": (1,), "Logger": (1,), "MachineActions": (1,), "MachineManager": (10,),
    "MachineUndertaker": (1,), "Machiner": (5,), "MeterStatus": (2,), "MetricsAdder": (2,),
    "MetricsDebug": (2,), "MetricsManager": (1,), "MigrationFlag": (1,),
    "MigrationMaster": (4,), "MigrationMinion": (1,), "MigrationStatusWatcher": (1,),
    "MigrationTarget": (1, 2, 3), "ModelConfig": (3,), "ModelGeneration": (4,),
    "ModelManager": (9, 10), "ModelSummaryWatcher": (1,), "ModelUpgrader": (1,),
    "NotifyWatcher": (1,), "OfferStatusWatcher": (1,), "Payloads": (1,),
    "PayloadsHookContext": (1,), "Pinger": (1,), "Provisioner": (11,), "ProxyUpdater": (2,),
    "Reboot": (2,), "RelationStatusWatcher": (1,), "RelationUnitsWatcher": (1,),
    "RemoteRelationWatcher": (1,), "RemoteRelations": (2,), "Resources": (3,),
    "ResourcesHookContext": (1,), "RetryStrategy": (1,), "SSHClient": (4,),
    "SecretBackends": (1,), "SecretBackendsManager": (1,), "SecretBackendsRotateWatcher": (1,),
    "Secrets": (1, 2), "SecretsDrain": (1,), "SecretsManager": (1, 2),
    "SecretsRevisionWatcher": (1,), "SecretsTriggerWatcher": (1,), "Singular": (2,),
    "Spaces": (6,), "StatusHistory": (2,), "Storage": (6,), "StorageProvisioner": (4,),
    "StringsWatcher": (1,), "Subnets": (5,), "Undertaker": (1,), "UnitAssigner": (1,),
    "Uniter": (19,), "UpgradeSteps": (2,), "Upgrader": (1,), "UserManager": (3,),
    "UserSecretsDrain": (1,), "UserSecretsManager": (1,), "VolumeAttachmentPlansWatcher": (1,),
    "VolumeAttachmentsWatcher": (2,),
}  # fmt: skip
# Facades only served on a controller connection (/api), as Juju restricts them.
CONTROLLER_ONLY = frozenset({
    "AllModelWatcher", "Cloud", "Controller", "MigrationTarget", "ModelManager",
    "ModelSummaryWatcher", "UserManager", "CredentialManager", "HighAvailability",
})  # fmt: skip
ALWAYS = frozenset({"Admin", "Pinger", "Bundle"})


class RpcError(Exception):
    """An error reply: message plus Juju error code."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


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
    """Return an error as it appears inside bulk results."""
    return {"message": message, "code": code}


def not_implemented(call: Call) -> RpcError:
    """Return Juju's error for a method the fake does not serve."""
    if call.facade not in FACADES:
        return RpcError(f'unknown object type "{call.facade}"', "not implemented")
    return RpcError(
        f"no such request - method {call.facade}({call.version}).{call.method} is not implemented",
        "not implemented",
    )


def check_route(session: server_mod.Session, call: Call) -> None:
    """Refuse calls Juju would refuse on this connection before dispatching."""
    if not session.logged_in and call.facade != "Admin":
        raise RpcError(f'unknown object type "{call.facade}"', "not implemented")
    versions = FACADES.get(call.facade)
    if versions is None:
        raise not_implemented(call)
    if call.version not in versions:
        raise RpcError(
            f'unknown version ({call.version}) of interface "{call.facade}"', "not implemented"
        )
    if call.facade in ALWAYS or not session.logged_in:
        return
    if session.is_controller and call.facade not in CONTROLLER_ONLY:
        raise RpcError(
            f'facade "{call.facade}" not supported for controller API connection',
            "not supported",
        )
    if not session.is_controller and call.facade in CONTROLLER_ONLY:
        raise RpcError(
            f'facade "{call.facade}" not supported for model API connection', "not supported"
        )


def _single(params: Mapping[str, Any], key: str) -> list[Any]:
    value = params.get(key)
    return list(value) if isinstance(value, list) else []


# -- Admin / Pinger / ModelConfig -------------------------------------------


@handles("Admin", "Login")
async def _login(ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call):
    user_tag = f"user-{ctl.username}"
    if call.params.get("auth-tag") != user_tag or call.params.get("credentials") != ctl.password:
        raise RpcError(
            "invalid entity name or password (unauthorized access)", "unauthorized access"
        )
    if session.model_uuid is not None and session.model_uuid != ctl.model_uuid:
        raise RpcError(f'unknown model: "{session.model_uuid}"', "model not found")
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
        "user-info": {
            "display-name": ctl.username,
            "identity": user_tag,
            "controller-access": "superuser",
            "model-access": "" if session.is_controller else "admin",
        },
        "facades": [{"name": name, "versions": list(v)} for name, v in sorted(FACADES.items())],
        "server-version": SERVER_VERSION,
    }
    if not session.is_controller:
        result["model-tag"] = f"model-{ctl.model_uuid}"
    return result


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
    watcher = ctl.model.watchers.get(call.watcher_id or "")
    if watcher is None or call.watcher_id not in session.watchers:
        raise RpcError(f'unknown watcher id "{call.watcher_id}"', "not found")
    return watcher


@handles("AllWatcher", "Next")
async def _next(ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call):
    watcher = _watcher(ctl, session, call)
    try:
        deltas = await watcher.next()
    except model_mod.WatcherStoppedError:
        raise RpcError("watcher was stopped", "stopped") from None
    return {"deltas": deltas}


@handles("AllWatcher", "Stop")
async def _stop(ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call):
    watcher = _watcher(ctl, session, call)
    session.watchers.discard(watcher.id)
    ctl.model.stop_watcher(watcher.id)
    return {}


def _life(life: str) -> str:
    # FullStatus leaves life empty for alive entities (processLife in Juju).
    return "" if life == "alive" else life


def _unit_status(
    ctl: server_mod.FakeJujuController, unit: model_mod.Unit, leader: bool
) -> dict[str, Any]:
    workload, agent = unit.workload, unit.agent
    if unit.agent_lost:
        agent = model_mod.Status(
            "lost", "agent is not communicating with the server", agent.since, agent.version
        )
        workload = model_mod.Status(
            "unknown", f"agent lost, see 'juju show-status-log {unit.name}'", workload.since
        )
    app = ctl.model.applications.get(unit.application)
    status: dict[str, Any] = {
        "agent-status": agent.detailed_json(life=_life(unit.life)),
        "workload-status": workload.detailed_json(life=_life(unit.life)),
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
    agent = machine.agent
    if machine.agent_down:
        agent = model_mod.Status(
            "down", "agent is not communicating with the server", agent.since, agent.version
        )
    running = bool(machine.instance_id)
    status: dict[str, Any] = {
        "agent-status": agent.detailed_json(life=_life(machine.life)),
        "instance-status": machine.instance.detailed_json(),
        "modification-status": model_mod.Status(
            "idle", "", machine.instance.since
        ).detailed_json(),
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


@handles("Client", "FullStatus")
async def _full_status(
    ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call
):
    model = ctl.model
    applications: dict[str, Any] = {}
    for name, app in model.applications.items():
        units = sorted(
            (u for u in model.units.values() if u.application == name), key=lambda u: u.number
        )
        leader = next((u.name for u in units if u.life == "alive"), None)
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
            "units": {u.name: _unit_status(ctl, u, u.name == leader) for u in units},
            "meter-statuses": {},
            "status": model.application_status(name).detailed_json(),
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
            "model-status": model.model_status.detailed_json(),
            "meter-status": {"color": "", "message": ""},
            "sla": "unsupported",
        },
        "machines": {m.id: _machine_status(m) for m in model.machines.values()},
        "applications": applications,
        "remote-applications": {},
        "offers": {},
        "relations": [],
        "controller-timestamp": model_mod.format_time(ctl.clock.now()),
        "branches": {},
    }


@handles("Client", "StatusHistory")
async def _status_history(
    ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call
):
    results = []
    for request in _single(call.params, "requests"):
        kind = request.get("historyKind", "")
        tag = request.get("tag", "")
        if not ctl.model.entity_exists(tag) and tag not in ctl.model.history:
            results.append({"history": {"statuses": None, "error": None},
                            "error": error_json(f'"{tag}" not found', "not found")})  # fmt: skip
            continue
        filt = request.get("filter") or {}
        entries = list(reversed(ctl.model.history_for(kind, tag)))
        if filt.get("date"):
            # Juju's filter date is an RFC 3339 instant; compare formatted strings (same shape).
            entries = [e for e in entries if model_mod.format_time(e.status.since) >= filt["date"]]
        if filt.get("delta"):
            cutoff = ctl.clock.now() - filt["delta"] / 1e9
            entries = [e for e in entries if e.status.since >= cutoff]
        if filt.get("size"):
            entries = entries[: filt["size"]]
        statuses = [e.status.detailed_json(kind=e.kind, life=_life(e.life)) for e in entries]
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
            "is-controller": False,
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
        try:
            if not request.get("dry-run"):
                ctl.lifecycle.destroy_unit(
                    name,
                    force=bool(request.get("force")),
                    max_wait=None if max_wait is None else max_wait / 1e9,
                )
            elif name not in ctl.model.units:
                raise lifecycle_mod.LifecycleError(f'unit "{name}" not found', "not found")
        except lifecycle_mod.LifecycleError as exc:
            results.append({"error": error_json(exc.message, exc.code)})
            continue
        results.append({"info": {}})
    return {"results": results}


@handles("MachineManager", "DestroyMachineWithParams")
async def _destroy_machine(
    ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call
):
    results = []
    for tag in _single(call.params, "machine-tags"):
        machine_id = str(tag).removeprefix("machine-")
        try:
            units = ctl.lifecycle.destroy_machine(machine_id, force=bool(call.params.get("force")))
        except lifecycle_mod.LifecycleError as exc:
            results.append({"error": error_json(exc.message, exc.code)})
            continue
        info: dict[str, Any] = {"machine-id": machine_id}
        if units:
            info["destroyed-units"] = [{"tag": "unit-" + u.replace("/", "-")} for u in units]
        results.append({"info": info})
    return {"results": results}


# -- Annotations ------------------------------------------------------------


@handles("Annotations", "Set")
async def _annotations_set(
    ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call
):
    errors = []
    for item in _single(call.params, "annotations"):
        tag = str(item.get("entity", ""))
        if not ctl.model.entity_exists(tag):
            errors.append({"error": error_json(f'"{tag}" not found', "not found")})
            continue
        ctl.model.set_annotations(tag, dict(item.get("annotations") or {}))
    # Juju only lists the failures.
    return {"results": errors}


@handles("Annotations", "Get")
async def _annotations_get(
    ctl: server_mod.FakeJujuController, session: server_mod.Session, call: Call
):
    results = []
    for entity in _single(call.params, "entities"):
        tag = str(entity.get("tag", ""))
        if not ctl.model.entity_exists(tag):
            results.append({"entity": tag, "annotations": {},
                            "error": {"error": error_json(f'"{tag}" not found',
                                                          "not found")}})  # fmt: skip
            continue
        results.append({"entity": tag, "annotations": dict(ctl.model.annotations.get(tag, {}))})
    return {"results": results}

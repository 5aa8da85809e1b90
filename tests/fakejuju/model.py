"""The fake model: applications, units, machines, annotations, status history, watchers."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

CONTROLLER_UUID = "f0e1d2c3-b4a5-4697-8899-aabbccddeeff"
SERIES_BASE = {"name": "ubuntu", "channel": "22.04/stable"}
# Juju derives an application's status from its units: the most severe wins.
_SEVERITY = ["error", "blocked", "maintenance", "waiting", "active", "terminated", "unknown"]


def format_time(epoch: float) -> str:
    """Format epoch seconds as Juju does (RFC 3339 with nanoseconds, UTC)."""
    whole = int(epoch)
    nanos = round((epoch - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    stamp = datetime.datetime.fromtimestamp(whole, datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


@dataclasses.dataclass(frozen=True)
class Status:
    """One status value (workload, agent or instance) with the time it was set."""

    current: str
    message: str
    since: float
    version: str = ""

    def delta_json(self) -> dict[str, Any]:
        """Return the watcher form: current/message/since/version."""
        return {
            "current": self.current,
            "message": self.message,
            "since": format_time(self.since),
            "version": self.version,
        }

    def detailed_json(self, kind: str = "", life: str = "") -> dict[str, Any]:
        """Return the FullStatus/StatusHistory form: status/info/since/...."""
        return {
            "status": self.current,
            "info": self.message,
            "data": {},
            "since": format_time(self.since),
            "kind": kind,
            "version": self.version,
            "life": life,
            "err": None,
        }


@dataclasses.dataclass(frozen=True)
class Application:
    """An application: its charm and its own life."""

    name: str
    charm_name: str
    charm_rev: int = 1
    life: str = "alive"
    exposed: bool = False

    @property
    def charm_url(self) -> str:
        """Return the charm URL as Juju 3.6 reports it."""
        return f"ch:amd64/{self.charm_name}-{self.charm_rev}"


@dataclasses.dataclass(frozen=True)
class Unit:
    """A unit of an application, placed on one machine."""

    name: str
    application: str
    machine_id: str
    workload: Status
    agent: Status
    life: str = "alive"
    agent_lost: bool = False
    private_address: str = ""
    public_address: str = ""

    @property
    def number(self) -> int:
        """Return N from app/N."""
        return int(self.name.rsplit("/", 1)[1])

    @property
    def tag(self) -> str:
        """Return the unit tag (unit-app-N)."""
        return "unit-" + self.name.replace("/", "-")


@dataclasses.dataclass(frozen=True)
class Machine:
    """A machine (no containers in this fake)."""

    id: str
    agent: Status
    instance: Status
    life: str = "alive"
    instance_id: str = ""
    agent_down: bool = False
    address: str = ""
    jobs: tuple[str, ...] = ("JobHostUnits",)

    @property
    def tag(self) -> str:
        """Return the machine tag (machine-N)."""
        return f"machine-{self.id}"


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    """One status history record."""

    kind: str
    status: Status
    life: str


_EntityKey = tuple[str, str]


class AllWatcher:
    """One AllWatcher: snapshot first, then coalesced latest state per entity."""

    def __init__(self, watcher_id: str, model: ModelState) -> None:
        self.id = watcher_id
        self._model = model
        self._started = False
        self._seen: set[_EntityKey] = set()
        self._pending: dict[_EntityKey, tuple[str, dict[str, Any]]] = {}
        self._wakeup = asyncio.Event()
        self.stopped = False

    def notify(self, kind: str, key: str, change: str, info: dict[str, Any]) -> None:
        """Record the latest state of one entity (coalescing earlier ones)."""
        if not self._started or self.stopped:
            return
        entity = (kind, key)
        if change == "remove" and entity not in self._seen and entity not in self._pending:
            return
        self._pending.pop(entity, None)
        self._pending[entity] = (change, info)
        self._wakeup.set()

    def stop(self) -> None:
        """Stop the watcher; a pending Next fails with code "stopped"."""
        self.stopped = True
        self._wakeup.set()

    async def next(self) -> list[list[Any]]:
        """Return the next batch of deltas, waiting if there is none."""
        if self.stopped:
            raise WatcherStoppedError
        if not self._started:
            self._started = True
            snapshot = self._model.snapshot_deltas()
            for kind, _change, info in snapshot:
                self._seen.add((kind, ModelState.delta_key(kind, info)))
            return [[kind, change, info] for kind, change, info in snapshot]
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
            if self.stopped:
                raise WatcherStoppedError
        batch = self._pending
        self._pending = {}
        deltas: list[list[Any]] = []
        for (kind, key), (change, info) in batch.items():
            if change == "remove":
                self._seen.discard((kind, key))
            else:
                self._seen.add((kind, key))
            deltas.append([kind, change, info])
        return deltas


class WatcherStoppedError(Exception):
    """Raised by AllWatcher.next() once the watcher is stopped."""


class ModelState:
    """The whole model and the change notifications that feed the watchers."""

    def __init__(self, uuid: str, name: str, owner: str, now: float) -> None:
        self.uuid = uuid
        self.name = name
        self.owner = owner
        self.created = now
        self.model_status = Status("available", "", now)
        self.applications: dict[str, Application] = {}
        self.units: dict[str, Unit] = {}
        self.machines: dict[str, Machine] = {}
        self.annotations: dict[str, dict[str, str]] = {}
        self.history: dict[str, list[HistoryEntry]] = {}
        self.next_unit_number: dict[str, int] = {}
        self.next_machine_number = 0
        self.watchers: dict[str, AllWatcher] = {}
        self._next_watcher_id = 1
        self._app_status: dict[str, Status] = {}

    # -- watchers ---------------------------------------------------------

    def new_watcher(self) -> AllWatcher:
        """Create an AllWatcher (Client.WatchAll)."""
        watcher = AllWatcher(str(self._next_watcher_id), self)
        self._next_watcher_id += 1
        self.watchers[watcher.id] = watcher
        return watcher

    def stop_watcher(self, watcher_id: str) -> None:
        """Stop and forget one watcher."""
        watcher = self.watchers.pop(watcher_id, None)
        if watcher is not None:
            watcher.stop()

    def _notify(self, kind: str, key: str, change: str, info: dict[str, Any]) -> None:
        for watcher in list(self.watchers.values()):
            watcher.notify(kind, key, change, info)

    @staticmethod
    def delta_key(kind: str, info: Mapping[str, Any]) -> str:
        """Return the identity of a delta's entity, as libjuju keys it."""
        if kind in ("application", "unit"):
            return str(info["name"])
        if kind == "annotation":
            return str(info["tag"])
        if kind == "model":
            return str(info["model-uuid"])
        return str(info["id"])

    def snapshot_deltas(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Return the first AllWatcher.Next batch: every live entity."""
        deltas: list[tuple[str, str, dict[str, Any]]] = [("model", "change", self.model_info())]
        deltas += [("application", "change", self.application_info(a)) for a in self.applications]
        deltas += [("machine", "change", self.machine_info(m)) for m in self.machines.values()]
        deltas += [("unit", "change", self.unit_info(u)) for u in self.units.values()]
        deltas += [
            ("annotation", "change", self.annotation_info(tag))
            for tag, values in self.annotations.items()
            if values
        ]
        return deltas

    # -- delta info builders (Juju's multiwatcher JSON) ---------------------

    def model_info(self) -> dict[str, Any]:
        """Return the "model" delta info."""
        return {
            "model-uuid": self.uuid,
            "name": self.name,
            "life": "alive",
            "owner": self.owner,
            "controller-uuid": CONTROLLER_UUID,
            "is-controller": False,
            "config": self.config(),
            "status": self.model_status.delta_json(),
            "constraints": {},
            "sla": {"level": "unsupported", "owner": ""},
            "type": "iaas",
        }

    def config(self) -> dict[str, Any]:
        """Return the model config as plain values."""
        return {
            "name": self.name,
            "uuid": self.uuid,
            "type": "lxd",
            "default-base": "ubuntu@22.04",
            "agent-version": "3.6.1",
            "logging-config": "<root>=INFO",
            "mode": "requires-prompts",
            "automatically-retry-hooks": True,
        }

    def application_status(self, name: str) -> Status:
        """Return the derived application status (most severe unit workload)."""
        units = [u for u in self.units.values() if u.application == name]
        if not units:
            return self._app_status.get(name) or Status("unknown", "", self.created)
        worst = min(units, key=lambda u: _rank(u.workload.current))
        previous = self._app_status.get(name)
        status = Status(worst.workload.current, worst.workload.message, worst.workload.since)
        if previous is not None and (previous.current, previous.message) == (
            status.current,
            status.message,
        ):
            return previous
        return status

    def application_info(self, name: str) -> dict[str, Any]:
        """Return the "application" delta info."""
        app = self.applications[name]
        return {
            "model-uuid": self.uuid,
            "name": app.name,
            "exposed": app.exposed,
            "charm-url": app.charm_url,
            "owner-tag": "",
            "life": app.life,
            "min-units": 0,
            "constraints": {},
            "subordinate": False,
            "status": self.application_status(name).delta_json(),
            "workload-version": "",
        }

    def unit_info(self, unit: Unit) -> dict[str, Any]:
        """Return the "unit" delta info (never shows lost: Juju computes that in FullStatus)."""
        app = self.applications.get(unit.application)
        return {
            "model-uuid": self.uuid,
            "name": unit.name,
            "application": unit.application,
            "base": "ubuntu@22.04",
            "charm-url": app.charm_url if app else "",
            "life": unit.life,
            "public-address": unit.public_address,
            "private-address": unit.private_address,
            "machine-id": unit.machine_id,
            "ports": [],
            "port-ranges": [],
            "principal": "",
            "subordinate": False,
            "workload-status": unit.workload.delta_json(),
            "agent-status": unit.agent.delta_json(),
        }

    def machine_info(self, machine: Machine) -> dict[str, Any]:
        """Return the "machine" delta info (never shows down: FullStatus only)."""
        addresses = (
            [{"value": machine.address, "type": "ipv4", "scope": "local-cloud"}]
            if machine.address
            else []
        )
        return {
            "model-uuid": self.uuid,
            "id": machine.id,
            "instance-id": machine.instance_id,
            "container-type": "",
            "agent-status": machine.agent.delta_json(),
            "instance-status": machine.instance.delta_json(),
            "life": machine.life,
            "base": "ubuntu@22.04",
            "supported-containers": ["lxd"],
            "supported-containers-known": True,
            "hardware-characteristics": {"arch": "amd64", "cores": 2, "mem": 4096},
            "jobs": list(machine.jobs),
            "addresses": addresses,
            "has-vote": False,
            "wants-vote": False,
            "hostname": f"juju-{self.uuid[-6:]}-{machine.id}" if machine.instance_id else "",
        }

    def annotation_info(self, tag: str) -> dict[str, Any]:
        """Return the "annotation" delta info."""
        return {
            "model-uuid": self.uuid,
            "tag": tag,
            "annotations": dict(self.annotations.get(tag, {})),
        }

    # -- mutations (each one notifies the watchers) -------------------------

    def add_application(self, app: Application) -> None:
        """Add an application."""
        self.applications[app.name] = app
        self.next_unit_number.setdefault(app.name, 0)
        self._notify_application(app.name, force=True)

    def _notify_application(self, name: str, force: bool = False) -> None:
        if name not in self.applications:
            return
        status = self.application_status(name)
        if not force and self._app_status.get(name) == status:
            return
        self._app_status[name] = status
        self._notify("application", name, "change", self.application_info(name))

    def allocate_unit_name(self, application: str) -> str:
        """Return the next never-used unit name of an application."""
        number = self.next_unit_number.get(application, 0)
        self.next_unit_number[application] = number + 1
        return f"{application}/{number}"

    def allocate_machine_id(self) -> str:
        """Return the next never-used machine id."""
        number = self.next_machine_number
        self.next_machine_number += 1
        return str(number)

    def put_machine(self, machine: Machine, history: bool = True) -> None:
        """Insert or update a machine, recording status history when statuses change."""
        old = self.machines.get(machine.id)
        self.machines[machine.id] = machine
        if history:
            if old is None or _changed(old.instance, machine.instance):
                self._record(machine.tag, "machine", machine.instance, machine.life)
            if old is None or _changed(old.agent, machine.agent):
                self._record(machine.tag, "juju-machine", machine.agent, machine.life)
        self._notify("machine", machine.id, "change", self.machine_info(machine))

    def remove_machine(self, machine_id: str) -> None:
        """Remove a machine; the remove delta carries its last info."""
        machine = self.machines.pop(machine_id)
        self.annotations.pop(machine.tag, None)
        self._notify("machine", machine_id, "remove", self.machine_info(machine))

    def put_unit(self, unit: Unit, history: bool = True) -> None:
        """Insert or update a unit, recording status history when statuses change."""
        old = self.units.get(unit.name)
        self.units[unit.name] = unit
        if history:
            if old is None or _changed(old.workload, unit.workload):
                self._record(unit.tag, "workload", unit.workload, unit.life)
            if old is None or _changed(old.agent, unit.agent):
                self._record(unit.tag, "juju-unit", unit.agent, unit.life)
        self._notify("unit", unit.name, "change", self.unit_info(unit))
        self._notify_application(unit.application)

    def remove_unit(self, name: str) -> None:
        """Remove a unit; the remove delta carries its last info."""
        unit = self.units.pop(name)
        tag = unit.tag
        if self.annotations.pop(tag, None):
            self._notify("annotation", tag, "remove", {"model-uuid": self.uuid, "tag": tag})
        self._notify("unit", name, "remove", self.unit_info(unit))
        self._notify_application(unit.application)

    def set_annotations(self, tag: str, values: Mapping[str, str]) -> None:
        """Set annotations on an entity; empty values delete keys (as in Juju)."""
        current = self.annotations.setdefault(tag, {})
        for key, value in values.items():
            if value == "":
                current.pop(key, None)
            else:
                current[key] = value
        self._notify("annotation", tag, "change", self.annotation_info(tag))

    def _record(self, tag: str, kind: str, status: Status, life: str) -> None:
        self.history.setdefault(tag, []).append(HistoryEntry(kind, status, life))

    # -- queries ------------------------------------------------------------

    def entity_exists(self, tag: str) -> bool:
        """Return whether a unit/machine/application/model tag names a live entity."""
        if tag.startswith("unit-"):
            return any(u.tag == tag for u in self.units.values())
        if tag.startswith("machine-"):
            return tag[len("machine-") :] in self.machines
        if tag.startswith("application-"):
            return tag[len("application-") :] in self.applications
        return tag == f"model-{self.uuid}"

    def history_for(self, kind: str, tag: str) -> list[HistoryEntry]:
        """Return history entries of a kind for a tag, oldest first."""
        entries = self.history.get(tag, [])
        if kind == "unit":
            return [e for e in entries if e.kind in ("workload", "juju-unit")]
        return [e for e in entries if e.kind == kind]

    def units_on(self, machine_id: str) -> list[Unit]:
        """Return the units placed on a machine."""
        return [u for u in self.units.values() if u.machine_id == machine_id]


def _changed(old: Status, new: Status) -> bool:
    return (old.current, old.message) != (new.current, new.message)


def _rank(status: str) -> int:
    return _SEVERITY.index(status) if status in _SEVERITY else len(_SEVERITY)

"""In-memory view of the model, fed by watcher deltas and full-status polls; bounded."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import Callable, Iterable, KeysView, Mapping
from typing import Any

ALIVE = "alive"
DYING = "dying"
DEAD = "dead"
# Workload statuses of a healthy unit: `active`, or `unknown`, which is what Juju shows after
# the start hook of a charm that never calls status-set (worker/uniter runhook.go afterHook).
# Never error, blocked, waiting or maintenance.
HEALTHY_WORKLOADS = frozenset({"active", "unknown"})


def parse_since(value: Any) -> datetime.datetime | None:
    """Parse Juju's RFC 3339 timestamps (nanoseconds allowed) into aware datetimes."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    # Python before 3.11 accepts at most 6 fractional digits: trim nanoseconds.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


@dataclasses.dataclass(frozen=True)
class UnitState:
    """What the agent knows of one unit."""

    name: str
    application: str
    machine_id: str | None = None
    life: str = ALIVE
    workload_status: str = "unknown"
    workload_message: str = ""
    agent_status: str = "allocating"
    agent_message: str = ""
    subordinate: bool = False
    principal: str = ""
    # Juju's `since` of the two statuses, as sent: it moves with every status change.
    workload_since: str = ""
    agent_since: str = ""

    @property
    def status_marker(self) -> tuple[str, str]:
        """When Juju last changed this unit's statuses (changes even when coalesced away)."""
        return (self.workload_since, self.agent_since)

    @property
    def number(self) -> int:
        """The unit number (app/7 -> 7)."""
        return int(self.name.rsplit("/", 1)[1])

    @property
    def tag(self) -> str:
        """Juju entity tag, e.g. unit-wsgi-example-3."""
        return unit_tag(self.name)


@dataclasses.dataclass(frozen=True)
class MachineState:
    """What the agent knows of one machine."""

    id: str
    life: str = ALIVE
    agent_status: str = "pending"
    instance_status: str = "pending"
    instance_message: str = ""
    instance_id: str = ""
    jobs: tuple[str, ...] = ()
    # When the instance status last changed (for a running machine: about when it started).
    instance_since: datetime.datetime | None = None

    @property
    def is_controller(self) -> bool:
        """Whether the machine runs a controller (never removed by us)."""
        return "JobManageModel" in self.jobs


@dataclasses.dataclass(frozen=True)
class ApplicationState:
    """What the agent knows of one application."""

    name: str
    life: str = ALIVE
    subordinate: bool = False
    charm_url: str = ""


def unit_tag(name: str) -> str:
    """Unit name to tag: app/3 -> unit-app-3."""
    return "unit-" + name.replace("/", "-")


def unit_name_from_tag(tag: str) -> str | None:
    """Tag to unit name: unit-app-3 -> app/3; None for other tags."""
    if not tag.startswith("unit-"):
        return None
    body, _, number = tag[len("unit-") :].rpartition("-")
    if not body or not number.isdigit():
        return None
    return f"{body}/{number}"


def _status(info: Mapping[str, Any], key: str) -> tuple[str, str]:
    value = info.get(key) or {}
    return str(value.get("current") or value.get("status") or ""), str(
        value.get("message") or value.get("info") or ""
    )


def _since(info: Mapping[str, Any], key: str) -> str:
    value = info.get(key) or {}
    return str(value.get("since") or "")


def _storage_units(status: Mapping[str, Any]) -> set[str]:
    """Units with storage attached, from FullStatus's `storage` (include-storage)."""
    units: set[str] = set()
    for storage in status.get("storage") or []:
        for tag in (storage.get("attachments") or {}) if isinstance(storage, Mapping) else ():
            name = unit_name_from_tag(str(tag))
            if name is not None:
                units.add(name)
    return units


def unit_from_delta(info: Mapping[str, Any]) -> UnitState:
    """Build a UnitState from an AllWatcher unit delta."""
    workload, workload_message = _status(info, "workload-status")
    agent, agent_message = _status(info, "agent-status")
    return UnitState(
        name=str(info["name"]),
        application=str(info.get("application", "")),
        machine_id=str(info["machine-id"]) if info.get("machine-id") else None,
        life=str(info.get("life") or ALIVE),
        workload_status=workload or "unknown",
        workload_message=workload_message,
        agent_status=agent or "allocating",
        agent_message=agent_message,
        subordinate=bool(info.get("subordinate", False)),
        principal=str(info.get("principal") or ""),
        workload_since=_since(info, "workload-status"),
        agent_since=_since(info, "agent-status"),
    )


def machine_from_delta(info: Mapping[str, Any]) -> MachineState:
    """Build a MachineState from an AllWatcher machine delta."""
    agent, _ = _status(info, "agent-status")
    instance, instance_message = _status(info, "instance-status")
    return MachineState(
        id=str(info["id"]),
        life=str(info.get("life") or ALIVE),
        agent_status=agent or "pending",
        instance_status=instance or "pending",
        instance_message=instance_message,
        instance_id=str(info.get("instance-id") or ""),
        jobs=tuple(info.get("jobs") or ()),
        instance_since=parse_since((info.get("instance-status") or {}).get("since")),
    )


def application_from_delta(info: Mapping[str, Any]) -> ApplicationState:
    """Build an ApplicationState from an AllWatcher application delta."""
    return ApplicationState(
        name=str(info["name"]),
        life=str(info.get("life") or ALIVE),
        subordinate=bool(info.get("subordinate", False)),
        charm_url=str(info.get("charm-url") or ""),
    )


class ModelView:
    """Current state of the model: only live entities, so memory follows the model's size."""

    def __init__(self) -> None:
        self.units: dict[str, UnitState] = {}
        self.machines: dict[str, MachineState] = {}
        self.applications: dict[str, ApplicationState] = {}
        self.annotations: dict[str, dict[str, str]] = {}
        # Computed by the controller at FullStatus time only (never in deltas).
        self.lost_units: frozenset[str] = frozenset()
        self.down_machines: frozenset[str] = frozenset()
        # Every unit the last FullStatus listed, with its (workload, agent) status there: the
        # database at that moment, while watcher deltas come late.
        self.status_of: dict[str, tuple[str, str]] = {}
        # Also only in FullStatus: each application's leader, and units with storage attached.
        self.leaders: frozenset[str] = frozenset()
        self.storage_units: frozenset[str] = frozenset()
        # FullStatus requests numbered in the order they are sent, and the number of the one
        # whose result was applied last: a poll sent after a call's answer sees its effect.
        self.status_requests = 0
        self.status_polls = 0
        self.model_name: str = ""
        # From the watcher's model info: until it came, nothing may act (it may be the
        # controller's own model).
        self.model_seen = False
        self.is_controller_model: bool = False
        self.synced = False
        self.version = 0
        self._changed = asyncio.Event()

    # -- feeding -----------------------------------------------------------------------------

    def apply_deltas(self, deltas: Iterable[Any], *, snapshot: bool = False) -> None:
        """Apply AllWatcher deltas; `snapshot` replaces everything (first Next after WatchAll)."""
        if snapshot:
            self.units.clear()
            self.machines.clear()
            self.applications.clear()
            self.annotations.clear()
        for delta in deltas:
            kind, change, info = delta[0], delta[1], delta[2]
            self._apply_one(str(kind), str(change), info)
        if snapshot:
            self.synced = True
        self._notify()

    def _apply_one(self, kind: str, change: str, info: Mapping[str, Any]) -> None:
        removed = change == "remove"
        if kind == "unit":
            name = str(info["name"])
            if removed:
                self.units.pop(name, None)
                self.annotations.pop(unit_tag(name), None)
            else:
                self.units[name] = unit_from_delta(info)
        elif kind == "machine":
            if removed:
                self.machines.pop(str(info["id"]), None)
            else:
                self.machines[str(info["id"])] = machine_from_delta(info)
        elif kind == "application":
            if removed:
                self.applications.pop(str(info["name"]), None)
            else:
                self.applications[str(info["name"])] = application_from_delta(info)
        elif kind == "annotation":
            tag = str(info.get("tag", ""))
            if removed:
                self.annotations.pop(tag, None)
            else:
                self.annotations[tag] = {
                    str(k): str(v) for k, v in (info.get("annotations") or {}).items()
                }
        elif kind == "model":
            self.model_name = str(info.get("name") or self.model_name)
            self.is_controller_model = bool(info.get("is-controller", False))
            self.model_seen = True
        # Relations, charms, actions, blocks, branches: not needed by the engine.

    def begin_status_poll(self) -> int:
        """Number a FullStatus request about to be sent (pass it to apply_full_status)."""
        self.status_requests += 1
        return self.status_requests

    def polled_since(self, request: int) -> bool:
        """Whether a FullStatus sent after request number `request` has been applied."""
        return self.status_polls > request

    def apply_full_status(self, status: Mapping[str, Any], request: int | None = None) -> None:
        """Record lost unit agents, down machine agents and the units a FullStatus lists."""
        listed: dict[str, tuple[str, str]] = {}
        for app in (status.get("applications") or {}).values():
            for name, unit in (app.get("units") or {}).items():
                listed[name] = (
                    _status(unit, "workload-status")[0],
                    _status(unit, "agent-status")[0],
                )
                for sub_name, sub in (unit.get("subordinates") or {}).items():
                    listed[sub_name] = (
                        _status(sub, "workload-status")[0],
                        _status(sub, "agent-status")[0],
                    )
        lost = {name for name, (_, agent) in listed.items() if agent == "lost"}
        self.leaders = frozenset(
            name
            for app in (status.get("applications") or {}).values()
            for name, unit in (app.get("units") or {}).items()
            if unit.get("leader")
        )
        self.storage_units = frozenset(_storage_units(status))
        down = {
            machine_id
            for machine_id, machine in (status.get("machines") or {}).items()
            if _status(machine, "agent-status")[0] == "down"
        }
        self.lost_units = frozenset(lost)
        self.down_machines = frozenset(down)
        self.status_of = listed
        self.status_polls = max(self.status_polls, request or self.begin_status_poll())
        self._notify()

    def forget_unit(self, name: str) -> None:
        """Drop a unit Juju says does not exist (its remove delta may still be on its way)."""
        if self.units.pop(name, None) is not None:
            self.annotations.pop(unit_tag(name), None)
            self._notify()

    def set_annotations(self, unit: str, annotations: Mapping[str, str]) -> None:
        """Record annotations we have just set (the watcher will confirm them).

        As in Juju, an empty value deletes the key.
        """
        current = self.annotations.setdefault(unit_tag(unit), {})
        for key, value in annotations.items():
            if value:
                current[key] = value
            else:
                current.pop(key, None)
        self._notify()

    def _notify(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    # -- queries -----------------------------------------------------------------------------

    def get_unit(self, name: str) -> UnitState | None:
        """The unit called `name`, if it exists."""
        return self.units.get(name)

    def get_units(self, application: str) -> list[UnitState]:
        """Units of `application`, in unit-number order."""
        units = [u for u in self.units.values() if u.application == application]
        return sorted(units, key=lambda u: u.number)

    def get_unit_annotations(self, name: str) -> Mapping[str, str]:
        """Annotations on unit `name` (empty if none)."""
        return self.annotations.get(unit_tag(name), {})

    def get_units_on_machine(self, machine_id: str) -> list[UnitState]:
        """Every unit (principal or subordinate) placed on `machine_id`."""
        return [u for u in self.units.values() if u.machine_id == machine_id]

    def is_lost(self, name: str) -> bool:
        """Whether the last status poll saw the unit's agent lost or its machine down."""
        unit = self.units.get(name)
        if unit is None:
            return False
        return name in self.lost_units or (
            unit.machine_id is not None and unit.machine_id in self.down_machines
        )

    def is_healthy(self, name: str) -> bool:
        """Healthy right now: alive, workload active (or unknown), agent idle, not lost."""
        unit = self.units.get(name)
        return (
            unit is not None
            and unit.life == ALIVE
            and unit.workload_status in HEALTHY_WORKLOADS
            and unit.agent_status == "idle"
            and not self.is_lost(name)
        )

    @property
    def status_units(self) -> KeysView[str]:
        """Every unit the last FullStatus listed."""
        return self.status_of.keys()

    def is_healthy_in_status(self, name: str) -> bool:
        """Healthy in the last FullStatus too: the database, not the (late) deltas."""
        workload, agent = self.status_of.get(name, ("", ""))
        return workload in HEALTHY_WORKLOADS and agent == "idle"

    def is_broken(self, name: str) -> bool:
        """Whether the unit's agent cannot run hooks: a hook failed, or it is lost."""
        unit = self.units.get(name)
        return unit is not None and (
            unit.workload_status == "error" or unit.agent_status == "error" or self.is_lost(name)
        )

    def count_healthy(self, application: str) -> int:
        """How many units of `application` are healthy right now."""
        return sum(1 for u in self.get_units(application) if self.is_healthy(u.name))

    # -- waiting -----------------------------------------------------------------------------

    async def wait_for_change(self, timeout: float) -> bool:
        """Wait until anything changes or `timeout` passes; return whether it changed."""
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def wait_until(self, predicate: Callable[[ModelView], bool], timeout: float) -> bool:
        """Wait at most `timeout` seconds until `predicate(self)` holds; return whether it did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await self.wait_for_change(remaining)
        return True

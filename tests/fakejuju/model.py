"""The fake model: applications, units, machines, annotations, status history, watchers."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
import datetime
import math
import random
from collections.abc import Callable, Iterable, Mapping
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


# Go's zero time.Time as encoding/json writes it (a struct field is never omitted, omitempty
# or not): an action's `started` / `completed` before they happen.
GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def format_second(epoch: float | None) -> str:
    """Format a time Juju truncated to the second (state nowToTheSecond), None as zero time."""
    if epoch is None:
        return GO_ZERO_TIME
    stamp = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


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
    # The charm's one filesystem store (every unit gets an instance of it), "" for none.
    storage: str = ""

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
    # Juju's machineDoc.Clean: no unit was ever assigned to it (AssignCleanEmpty may use it).
    clean: bool = True

    @property
    def tag(self) -> str:
        """Return the machine tag (machine-N)."""
        return f"machine-{self.id}"


# state/storage.go StorageKindFilesystem, as params.StorageKind sends it.
STORAGE_KIND_FILESYSTEM = 2


@dataclasses.dataclass(frozen=True)
class StorageInstance:
    """A filesystem storage instance with its filesystem and attachments (state/storage.go).

    The LXD provider's model-scoped `lxd` pool: one filesystem per instance, attached to the
    unit's machine; `owner` and `attached_unit` are "" once the unit let it go (detached).
    """

    id: str
    owner: str
    filesystem_id: str
    status: Status
    life: str = "alive"
    # The storage attachment (unit) and its life; "" when there is none.
    attached_unit: str = ""
    attachment_life: str = "alive"
    # The filesystem attachment (machine) and its life; "" when there is none.
    machine_id: str = ""
    machine_attachment_life: str = "alive"
    # Set once the storage provisioner attached the filesystem (FilesystemAttachmentInfo).
    location: str = ""
    # Set once the storage provisioner created the filesystem (FilesystemInfo).
    provider_id: str = ""
    pool: str = ""
    size: int = 0

    @property
    def name(self) -> str:
        """Return the charm's storage name (data from data/3)."""
        return self.id.split("/", 1)[0]

    @property
    def number(self) -> int:
        """Return N from name/N."""
        return int(self.id.rsplit("/", 1)[1])

    @property
    def tag(self) -> str:
        """Return the storage tag (storage-data-3)."""
        return "storage-" + self.id.replace("/", "-")


@dataclasses.dataclass(frozen=True)
class ActionRecord:
    """An action document (state/action.go actionDoc): here only juju-exec, on a unit."""

    id: str
    operation: str
    receiver: str  # the unit's name (actionDoc.Receiver is the receiver tag's id)
    name: str
    parameters: Mapping[str, Any]
    enqueued: float
    status: str = "pending"
    message: str = ""
    results: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    started: float | None = None
    completed: float | None = None

    @property
    def tag(self) -> str:
        """Return the action tag (action-N)."""
        return f"action-{self.id}"


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    """One status history record."""

    kind: str
    status: Status
    life: str


_EntityKey = tuple[str, str]
# Order of kinds in a watcher's first batch (Juju sends the store's whole list).
_KIND_ORDER = {
    "model": 0, "application": 1, "machine": 2, "unit": 3, "annotation": 4, "action": 5,
}  # fmt: skip
# Default lag between a change in the database and its delta in the multiwatcher store.
DEFAULT_DELTA_LAG = (0.02, 0.3)


@dataclasses.dataclass(frozen=True)
class Change:
    """One entity change as the transaction log reports it: the entity's info at that moment."""

    kind: str
    key: str
    change: str
    info: dict[str, Any]


class _Entry:
    """A change on its way to the store; `ready_at` is None while its call has not answered."""

    __slots__ = ("change", "ready_at")

    def __init__(self, change: Change) -> None:
        self.change = change
        self.ready_at: float | None = None


class Hold:
    """The changes one API call makes, kept back until the call's reply has been sent."""

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.open = True


# Set by the server around each call; timers scheduled inside a call inherit it, so a closed
# hold means "the call is over" and later changes flow normally.
CURRENT_HOLD: contextvars.ContextVar[Hold | None] = contextvars.ContextVar(
    "fakejuju_hold", default=None
)


class ChangeFeed:
    """Juju's path from the database to the watchers: in order, late, never before the reply.

    In Juju a call commits its transactions and answers; the transaction log watcher
    (state/watcher/txnwatcher.go) picks the changes up on its next poll and the multiwatcher
    worker applies them to its store, from which every AllWatcher.Next is served. Here every
    change waits `lag` seconds of real time (uniform in [min, max], drawn from the fake's
    seeded random source), changes made by a call wait for its reply first, and delivery is
    strictly in commit order (a held change holds back everything after it).
    """

    def __init__(
        self,
        deliver: Callable[[list[Change]], None],
        rng: random.Random,
        lag: tuple[float, float] = DEFAULT_DELTA_LAG,
    ) -> None:
        self._deliver = deliver
        self._rng = rng
        self._queue: collections.deque[_Entry] = collections.deque()
        self._last_ready = -math.inf
        self._timer: asyncio.TimerHandle | None = None
        self.lag = lag
        self.set_lag(*lag)

    def set_lag(self, low: float, high: float | None = None) -> None:
        """Deliver changes `low`..`high` seconds (real time) after they happen."""
        high = low if high is None else high
        if low < 0 or high < low:
            raise ValueError(f"delta lag needs 0 <= min <= max, got {low}..{high}")
        self.lag = (float(low), float(high))

    @property
    def pending(self) -> int:
        """How many changes have not reached the store yet."""
        return len(self._queue)

    def publish(self, change: Change) -> None:
        """Queue one change; inside a call it waits for the call's reply."""
        entry = _Entry(change)
        self._queue.append(entry)
        hold = CURRENT_HOLD.get()
        if hold is not None and hold.open:
            hold.entries.append(entry)
        else:
            self._release([entry])

    def release(self, hold: Hold) -> None:
        """The call's reply is sent: its changes start their lag now."""
        hold.open = False
        self._release(hold.entries)
        hold.entries = []

    def flush(self) -> None:
        """Deliver everything now, held changes included (seeding, shutdown)."""
        for entry in self._queue:
            entry.ready_at = -math.inf
        self._pump(force=True)

    def close(self) -> None:
        """Stop delivering (the controller stops)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _draw(self) -> float:
        low, high = self.lag
        return low if high == low else self._rng.uniform(low, high)

    def _release(self, entries: Iterable[_Entry]) -> None:
        loop = _running_loop()
        if loop is None:
            for entry in entries:
                entry.ready_at = -math.inf
            self._pump(force=True)
            return
        now = loop.time()
        for entry in entries:
            entry.ready_at = max(self._last_ready, now + self._draw())
            self._last_ready = entry.ready_at
        self._schedule(loop)

    def _pump(self, force: bool = False) -> None:
        self._timer = None
        loop = _running_loop()
        now = math.inf if force or loop is None else loop.time()
        batch: list[Change] = []
        while self._queue:
            head = self._queue[0]
            if head.ready_at is None or head.ready_at > now:
                break
            batch.append(self._queue.popleft().change)
        if batch:
            self._deliver(batch)
        if loop is not None:
            self._schedule(loop)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._queue and self._queue[0].ready_at is not None:
            # A fresh context: the pump must not inherit a call's hold.
            self._timer = loop.call_at(
                self._queue[0].ready_at, self._pump, context=contextvars.Context()
            )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Multiwatcher:
    """The multiwatcher's store (core/multiwatcher): what every AllWatcher is served from."""

    def __init__(self) -> None:
        self.entities: dict[_EntityKey, dict[str, Any]] = {}
        self.watchers: dict[str, AllWatcher] = {}
        self._next_watcher_id = 1
        self.applied = 0

    def apply(self, changes: list[Change]) -> None:
        """Apply changes to the store and hand them to every watcher."""
        for change in changes:
            entity = (change.kind, change.key)
            if change.change == "remove":
                self.entities.pop(entity, None)
            else:
                self.entities[entity] = change.info
            for watcher in list(self.watchers.values()):
                watcher.notify(change.kind, change.key, change.change, change.info)
        self.applied += len(changes)

    def snapshot(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Every entity in the store: a watcher's first batch."""
        ordered = sorted(self.entities.items(), key=lambda item: _KIND_ORDER.get(item[0][0], 9))
        return [(kind, "change", info) for (kind, _key), info in ordered]

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


class AllWatcher:
    """One AllWatcher: the store's snapshot first, then coalesced latest state per entity.

    As in Juju's store (core/multiwatcher ChangesSince), an entity created and removed
    between two Next calls produces no delta at all.
    """

    def __init__(self, watcher_id: str, store: Multiwatcher) -> None:
        self.id = watcher_id
        self._store = store
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
        self._pending.pop(entity, None)
        if change == "remove" and entity not in self._seen:
            return
        self._pending[entity] = (change, info)
        self._wakeup.set()

    def stop(self) -> None:
        """Stop the watcher; a pending Next fails."""
        self.stopped = True
        self._wakeup.set()

    async def next(self) -> list[list[Any]]:
        """Return the next batch of deltas, waiting if there is none."""
        if self.stopped:
            raise WatcherStoppedError
        if not self._started:
            self._started = True
            snapshot = self._store.snapshot()
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


Observer = Callable[[str, str, str, dict[str, Any]], None]


class ModelState:
    """The whole model (Juju's database) and the feed of its changes to the watchers."""

    def __init__(
        self,
        uuid: str,
        name: str,
        owner: str,
        now: float,
        rng: random.Random | None = None,
        delta_lag: tuple[float, float] = DEFAULT_DELTA_LAG,
        is_controller: bool = False,
    ) -> None:
        self.uuid = uuid
        # Whether this is the controller model (the multiwatcher's model info says so).
        self.is_controller = is_controller
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
        # The leadership lease holder per application (worker/lease): a unit name, possibly
        # of a unit already removed until its lease expires. Not in the multiwatcher.
        self.leaders: dict[str, str] = {}
        # Storage instances by id (data/3); the multiwatcher has no storage entities.
        self.storage: dict[str, StorageInstance] = {}
        # state/storage.go newStorageInstanceId ("stores") and state/filesystem.go
        # newFilesystemId ("filesystem"): model-wide sequences.
        self.next_storage_number = 0
        self.next_filesystem_number = 0
        # Actions by id, and state/sequence.go's "task" sequence shared by operations and
        # actions (state/operation.go newOperationDoc, state/action.go newActionDoc; from 1).
        self.actions: dict[str, ActionRecord] = {}
        self.next_task = 1
        self.store = Multiwatcher()
        self.feed = ChangeFeed(self.store.apply, rng or random.Random(), delta_lag)
        # Test probes that must see every change the moment it happens (no lag).
        self.observers: dict[str, Observer] = {}
        self._app_status: dict[str, Status] = {}
        # Per application: unit names by workload severity, so status updates stay O(1).
        self._by_rank: dict[str, dict[int, dict[str, None]]] = {}
        self._notify("model", uuid, "change", self.model_info())

    # -- watchers ---------------------------------------------------------

    @property
    def watchers(self) -> dict[str, AllWatcher]:
        """The live AllWatchers (of the store)."""
        return self.store.watchers

    def new_watcher(self) -> AllWatcher:
        """Create an AllWatcher (Client.WatchAll)."""
        return self.store.new_watcher()

    def stop_watcher(self, watcher_id: str) -> None:
        """Stop and forget one watcher."""
        self.store.stop_watcher(watcher_id)

    def _notify(self, kind: str, key: str, change: str, info: dict[str, Any]) -> None:
        for observer in list(self.observers.values()):
            observer(kind, key, change, info)
        self.feed.publish(Change(kind, key, change, info))

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

    # -- delta info builders (Juju's multiwatcher JSON) ---------------------

    def model_info(self) -> dict[str, Any]:
        """Return the "model" delta info."""
        return {
            "model-uuid": self.uuid,
            "name": self.name,
            "life": "alive",
            "owner": self.owner,
            "controller-uuid": CONTROLLER_UUID,
            "is-controller": self.is_controller,
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
        buckets = self._by_rank.get(name, {})
        worst_rank = min((rank for rank, names in buckets.items() if names), default=None)
        if worst_rank is None:
            return self._app_status.get(name) or Status("unknown", "", self.created)
        worst = self.units[next(iter(buckets[worst_rank]))]
        previous = self._app_status.get(name)
        status = Status(worst.workload.current, worst.workload.message, worst.workload.since)
        if previous is not None and (previous.current, previous.message) == (
            status.current,
            status.message,
        ):
            return previous
        return status

    def _index_unit(self, old: Unit | None, new: Unit | None) -> None:
        """Keep the per-application severity index current (O(1) per change)."""
        if old is not None:
            bucket = self._by_rank.get(old.application, {}).get(_rank(old.workload.current))
            if bucket is not None:
                bucket.pop(old.name, None)
        if new is not None:
            buckets = self._by_rank.setdefault(new.application, {})
            buckets.setdefault(_rank(new.workload.current), {})[new.name] = None

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

    def action_info(self, action: ActionRecord) -> dict[str, Any]:
        """Return the "action" delta info.

        apiserver/watcher.go TranslateAction copies neither parameters nor results (both
        omitempty in params.ActionInfo), so a delta never carries them.
        """
        return {
            "model-uuid": self.uuid,
            "id": action.id,
            "receiver": action.receiver,
            "name": action.name,
            "status": action.status,
            "message": action.message,
            "enqueued": format_second(action.enqueued),
            "started": format_second(action.started),
            "completed": format_second(action.completed),
        }

    # -- mutations (each one notifies the watchers) -------------------------

    def allocate_task_id(self) -> str:
        """Return the next id of the model's "task" sequence (operations and actions)."""
        number = self.next_task
        self.next_task += 1
        return str(number)

    def put_action(self, action: ActionRecord) -> None:
        """Insert or update an action (state/allwatcher.go backingAction.updated)."""
        self.actions[action.id] = action
        self._notify("action", action.id, "change", self.action_info(action))

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

    def allocate_storage_id(self, name: str) -> str:
        """Return the next never-used storage instance id (name/N, one sequence per model)."""
        number = self.next_storage_number
        self.next_storage_number += 1
        return f"{name}/{number}"

    def allocate_filesystem_id(self) -> str:
        """Return the next never-used (model-scoped) filesystem id."""
        number = self.next_filesystem_number
        self.next_filesystem_number += 1
        return str(number)

    def put_storage(self, storage: StorageInstance) -> None:
        """Insert or update a storage instance (FullStatus reads it; no watcher delta)."""
        self.storage[storage.id] = storage

    def remove_storage(self, storage_id: str) -> None:
        """Remove a storage instance and its filesystem."""
        self.storage.pop(storage_id, None)

    def storage_of(self, unit_name: str) -> list[StorageInstance]:
        """Return the storage instances attached to a unit."""
        return [s for s in self.storage.values() if s.attached_unit == unit_name]

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
        self._index_unit(old, unit)
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
        self._index_unit(unit, None)
        tag = unit.tag
        if tag in self.annotations:
            # Remove deltas carry the last info, annotations included.
            last = self.annotation_info(tag)
            del self.annotations[tag]
            self._notify("annotation", tag, "remove", last)
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
        # allwatcher.go backingAnnotation.updated rewrites the annotated entity too: a "change"
        # delta of the unit (or machine) with nothing visible changed.
        unit = self.units.get(_unit_name(tag))
        if unit is not None:
            self._notify("unit", unit.name, "change", self.unit_info(unit))
        machine = self.machines.get(tag.removeprefix("machine-"))
        if tag.startswith("machine-") and machine is not None:
            self._notify("machine", machine.id, "change", self.machine_info(machine))

    def _record(self, tag: str, kind: str, status: Status, life: str) -> None:
        self.history.setdefault(tag, []).append(HistoryEntry(kind, status, life))

    def touch_history(self, tag: str, kind: str, now: float) -> None:
        """The same status was set again: only the latest record of that kind gets the time.

        state/status.go setStatus, probablyUpdateStatusHistory: a status equal to the current
        one writes no status document (so no watcher delta) and no new history record.
        """
        entries = self.history.get(tag, [])
        for index in range(len(entries) - 1, -1, -1):
            if entries[index].kind == kind:
                entry = entries[index]
                status = dataclasses.replace(entry.status, since=now)
                entries[index] = dataclasses.replace(entry, status=status)
                return

    # -- queries ------------------------------------------------------------

    def entity_exists(self, tag: str) -> bool:
        """Return whether a unit/machine/application/model tag names a live entity."""
        if tag.startswith("unit-"):
            return _unit_name(tag) in self.units
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

    def presented_unit_status(self, unit: Unit) -> tuple[Status, Status]:
        """(workload, agent) as Client.FullStatus shows them: lost only where Juju allows it.

        apiserver/common/unitstatus.go UnitStatus: a unit that is not dead, whose agent is not
        alive (lost itself, or its machine's agent is down: IAAS unit agents run in the
        machine agent) and that canBeLost, shows agent lost; its workload becomes unknown
        unless it is in error or terminated.
        """
        workload, agent = unit.workload, unit.agent
        machine = self.machines.get(unit.machine_id)
        alive = not unit.agent_lost and not (machine is not None and machine.agent_down)
        if unit.life == "dead" or alive or not can_be_lost(unit):
            return workload, agent
        agent = Status("lost", NOT_COMMUNICATING, agent.since, agent.version)
        if workload.current not in ("error", "terminated"):
            workload = Status(
                "unknown", f"agent lost, see 'juju show-status-log {unit.name}'", workload.since
            )
        return workload, agent

    @staticmethod
    def presented_machine_agent(machine: Machine) -> Status:
        """The machine agent's status in FullStatus: down only where Juju allows it."""
        agent = machine.agent
        if machine.agent_down and machine.life != "dead" and can_machine_be_down(machine):
            return Status("down", NOT_COMMUNICATING, agent.since, agent.version)
        return agent

    def units_on(self, machine_id: str) -> list[Unit]:
        """Return the units placed on a machine."""
        return [u for u in self.units.values() if u.machine_id == machine_id]


NOT_COMMUNICATING = "agent is not communicating with the server"


def can_be_lost(unit: Unit) -> bool:
    """apiserver/common/unitstatus.go canBeLost: when presence is checked at all."""
    agent, workload = unit.agent, unit.workload
    if agent.current in ("allocating", "running"):
        return False
    if agent.current == "executing" and agent.message == "running install hook":
        return False
    # isWorkloadInstalled: not while the charm is being installed or the agent initialises.
    if workload.current == "maintenance" and workload.message == "installing charm software":
        return False
    return not (workload.current == "waiting" and workload.message == "agent initialising")


def can_machine_be_down(machine: Machine) -> bool:
    """apiserver/common/machinestatus.go canMachineBeDown: never while pending or stopped."""
    return machine.agent.current not in ("pending", "stopped")


def _changed(old: Status, new: Status) -> bool:
    return (old.current, old.message) != (new.current, new.message)


def _unit_name(tag: str) -> str:
    app, _, number = tag.removeprefix("unit-").rpartition("-")
    return f"{app}/{number}"


def _rank(status: str) -> int:
    return _SEVERITY.index(status) if status in _SEVERITY else len(_SEVERITY)

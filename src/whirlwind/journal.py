"""Durable operations, history and agent state in sqlite (WAL), written before acting.

A journal that fails its integrity check when it is opened is moved aside (with its -wal and
-shm files) as `journal.db.corrupt-<UTC time>` and a fresh one is started: the pause state
lives in the charm's peer data and work in flight is recovered from the model's annotations,
so only the history and the circuit breakers are lost. A journal that is merely locked, on a
full disk or unreadable is never moved aside. Every sqlite error of every method is raised as
JournalError (JournalCorruptError when sqlite reports damage).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import pathlib
import sqlite3
import struct
from collections.abc import Callable, Iterator
from typing import Any

from whirlwind import policy

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
JOURNAL_FILE = "journal.db"
# A damaged journal becomes `journal.db.corrupt-20260101T120000Z` (plus its -wal/-shm).
CORRUPT_INFIX = ".corrupt-"
# Files sqlite keeps next to the database: they belong to it and move with it.
SIBLING_SUFFIXES = ("-wal", "-shm", "-journal")
# Seconds a statement waits for another connection's lock before failing (sqlite's default).
BUSY_TIMEOUT = 5.0

# Primary result codes that mean damage (extended codes keep them in their low byte).
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
# Messages of those codes, for Python 3.10, whose exceptions carry no code.
_CORRUPT_MESSAGES = ("database disk image is malformed", "malformed database schema",
                     "file is not a database")  # fmt: skip
# The WAL header (https://sqlite.org/fileformat.html#the_write_ahead_log).
_WAL_HEADER = struct.Struct(">8I")
_WAL_MAGICS = (0x377F0682, 0x377F0683)  # checksums of little- / big-endian words
_WAL_VERSION = 3007000
# How much of the integrity check's answer goes into a message.
_MAX_REASON = 200

# Results of an operation; "running" until it finishes.
RUNNING = "running"
OK = "ok"
ROLLED_BACK = "rolled-back"
FAILED = "failed"
DRY_RUN = "dry-run"
RESULTS = (RUNNING, OK, ROLLED_BACK, FAILED, DRY_RUN)

# Steps of the replacement state machine (lower-case in history and status).
PLAN = "plan"
ADD = "add"
SETTLE = "settle"
REMOVE = "remove"
CLEANUP = "cleanup"
ROLLBACK = "rollback"
DONE = "done"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS operations (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    trigger TEXT NOT NULL,
    service TEXT NOT NULL,
    old_unit TEXT,
    new_unit TEXT,
    step TEXT NOT NULL,
    result TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    started TEXT NOT NULL,
    finished TEXT,
    deadline TEXT,
    dry_run INTEGER NOT NULL DEFAULT 0,
    max_unit_number INTEGER NOT NULL DEFAULT -1,
    healthy_at_start INTEGER NOT NULL DEFAULT 0,
    old_machine TEXT,
    old_machine_dedicated INTEGER NOT NULL DEFAULT 0,
    new_machine TEXT,
    forced INTEGER NOT NULL DEFAULT 0,
    born TEXT
);
CREATE INDEX IF NOT EXISTS operations_result ON operations (result);
CREATE INDEX IF NOT EXISTS operations_service ON operations (service, seq);
CREATE TABLE IF NOT EXISTS steps (
    op_seq INTEGER NOT NULL REFERENCES operations (seq),
    n INTEGER NOT NULL,
    step TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (op_seq, n)
);
CREATE TABLE IF NOT EXISTS agent_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS breakers (
    application TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chaos_injections (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    service TEXT NOT NULL,
    unit TEXT NOT NULL,
    machine TEXT,
    draw TEXT NOT NULL,
    params TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    planned TEXT NOT NULL,
    acted TEXT,
    result TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    revert_due TEXT,
    reverted TEXT,
    revert_result TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS chaos_injections_service ON chaos_injections (service, seq);
"""

# Columns an operation update may change.
_MUTABLE = frozenset(
    {"trigger", "new_unit", "step", "result", "reason", "finished", "deadline", "new_machine",
     "forced", "born"}
)  # fmt: skip


class JournalError(Exception):
    """The journal cannot be opened, read or written (disk, lock, permissions, newer schema)."""


class JournalCorruptError(JournalError):
    """sqlite reports the journal's file as damaged (reopening it moves it aside)."""


def is_corruption(exc: sqlite3.Error) -> bool:
    """Whether an sqlite error reports a damaged file (not a lock, a full disk or an I/O error)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11 and later
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    return isinstance(exc, sqlite3.DatabaseError) and any(
        message in str(exc) for message in _CORRUPT_MESSAGES
    )


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines()]
    line = "; ".join(ln for ln in lines if ln and not ln.startswith("***"))
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 3] + "..."


def _wal_checksum(data: bytes, big_endian: bool) -> tuple[int, int]:
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    s0 = s1 = 0
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def check_wal_header(wal: pathlib.Path) -> str | None:
    """What is wrong with the header of a WAL file, or None if it is sound (or absent)."""
    # sqlite itself silently ignores a WAL whose header is bad: the transactions committed in
    # it would be lost without a word, so the header is checked before sqlite opens the file.
    try:
        with open(wal, "rb") as file:
            header = file.read(_WAL_HEADER.size)
    except FileNotFoundError:
        return None
    if not header.strip(b"\0"):
        # Empty, or zeros: a WAL created just before a crash; nothing in it was committed.
        return None
    if len(header) < _WAL_HEADER.size:
        return f"WAL file {wal.name} is {len(header)} bytes, shorter than its header"
    magic, version, page_size, _, _, _, sum0, sum1 = _WAL_HEADER.unpack(header)
    if magic not in _WAL_MAGICS:
        return f"WAL file {wal.name} has a bad header (magic {magic:#010x})"
    if version != _WAL_VERSION or not 512 <= page_size <= 65536 or page_size & (page_size - 1):
        return f"WAL file {wal.name} has a bad header (version {version}, page size {page_size})"
    if _wal_checksum(header[:24], big_endian=bool(magic & 1)) != (sum0, sum1):
        return f"WAL file {wal.name} has a bad header checksum"
    return None


def to_iso(value: datetime.datetime | None) -> str | None:
    """ISO 8601 text of an aware datetime (None stays None)."""
    return None if value is None else value.isoformat()


def from_iso(value: str | None) -> datetime.datetime | None:
    """Parse what `to_iso` wrote."""
    return None if value is None else datetime.datetime.fromisoformat(value)


@dataclasses.dataclass(frozen=True)
class StepEntry:
    """One entry of an operation's per-step log."""

    step: str
    at: datetime.datetime


@dataclasses.dataclass(frozen=True)
class Operation:
    """One replacement as journaled: what it does, where it is, and the facts it relies on."""

    seq: int
    id: str
    trigger: str
    service: str
    old_unit: str | None
    step: str
    result: str
    started: datetime.datetime
    new_unit: str | None = None
    reason: str = ""
    finished: datetime.datetime | None = None
    # Deadline of the current step (wall clock, so a restarted agent keeps it).
    deadline: datetime.datetime | None = None
    dry_run: bool = False
    # Highest unit number of the application at PLAN: a unit above it can only be new.
    max_unit_number: int = -1
    healthy_at_start: int = 0
    old_machine: str | None = None
    old_machine_dedicated: bool = False
    new_machine: str | None = None
    # Whether the removal of the current step was escalated to force.
    forced: bool = False
    born: datetime.datetime | None = None
    steps: tuple[StepEntry, ...] = ()

    @property
    def is_finished(self) -> bool:
        """Whether the operation has a final result."""
        return self.result != RUNNING

    def to_dict(self) -> dict[str, Any]:
        """The history entry of the control API."""
        duration = None
        if self.finished is not None:
            duration = round((self.finished - self.started).total_seconds(), 3)
        return {
            "id": self.id,
            "trigger": self.trigger,
            "service": self.service,
            "old-unit": self.old_unit,
            "new-unit": self.new_unit,
            "result": self.result,
            "reason": self.reason,
            "started": to_iso(self.started),
            "finished": to_iso(self.finished),
            "duration": duration,
            "steps": [{"step": s.step, "at": to_iso(s.at)} for s in self.steps],
        }


@dataclasses.dataclass(frozen=True)
class ChaosInjection:
    """One failure injection as journaled (issue 12): written before the change is made.

    `result` is RUNNING until the controller answered, then OK, FAILED or DRY_RUN. An
    injection with a duration has `revert_due` (when the unit's own timer undoes it) and is
    pending until `reverted` is set; `revert_result` says how the last revert attempt went.
    """

    seq: int
    id: str
    kind: str
    service: str
    unit: str
    machine: str | None
    # What the chance or pattern drew for it (JSON), so a run can be replayed.
    draw: Any
    # Kind-specific values (JSON): duration, delay-ms, category, feature.
    params: dict[str, Any]
    dry_run: bool
    planned: datetime.datetime
    result: str
    acted: datetime.datetime | None = None
    reason: str = ""
    revert_due: datetime.datetime | None = None
    reverted: datetime.datetime | None = None
    revert_result: str = ""

    @property
    def is_revert_pending(self) -> bool:
        """Whether the injection still has to be undone (or marked undone by the unit)."""
        return self.revert_due is not None and self.reverted is None

    def to_dict(self) -> dict[str, Any]:
        """The history entry of the control API."""
        return {
            "id": self.id,
            "kind": self.kind,
            "service": self.service,
            "unit": self.unit,
            "machine": self.machine,
            "draw": self.draw,
            "params": dict(self.params),
            "dry-run": self.dry_run,
            "planned": to_iso(self.planned),
            "acted": to_iso(self.acted),
            "result": self.result,
            "reason": self.reason,
            "revert-due": to_iso(self.revert_due),
            "reverted": to_iso(self.reverted),
            "revert-result": self.revert_result,
        }


def _row_to_injection(row: sqlite3.Row) -> ChaosInjection:
    planned = from_iso(row["planned"])
    params = json.loads(row["params"])
    if planned is None or not isinstance(params, dict):
        raise ValueError(f"chaos injection {row['id']}: no planned time or bad params")
    return ChaosInjection(
        seq=row["seq"],
        id=row["id"],
        kind=row["kind"],
        service=row["service"],
        unit=row["unit"],
        machine=row["machine"],
        draw=json.loads(row["draw"]),
        params=params,
        dry_run=bool(row["dry_run"]),
        planned=planned,
        acted=from_iso(row["acted"]),
        result=row["result"],
        reason=row["reason"],
        revert_due=from_iso(row["revert_due"]),
        reverted=from_iso(row["reverted"]),
        revert_result=row["revert_result"],
    )


def _row_to_operation(row: sqlite3.Row, steps: tuple[StepEntry, ...]) -> Operation:
    started = from_iso(row["started"])
    assert started is not None
    return Operation(
        seq=row["seq"],
        id=row["id"],
        trigger=row["trigger"],
        service=row["service"],
        old_unit=row["old_unit"],
        new_unit=row["new_unit"],
        step=row["step"],
        result=row["result"],
        reason=row["reason"],
        started=started,
        finished=from_iso(row["finished"]),
        deadline=from_iso(row["deadline"]),
        dry_run=bool(row["dry_run"]),
        max_unit_number=row["max_unit_number"],
        healthy_at_start=row["healthy_at_start"],
        old_machine=row["old_machine"],
        old_machine_dedicated=bool(row["old_machine_dedicated"]),
        new_machine=row["new_machine"],
        forced=bool(row["forced"]),
        born=from_iso(row["born"]),
        steps=steps,
    )


def _to_column(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return to_iso(value)
    if isinstance(value, bool):
        return int(value)
    return value


# A record listener: (commit label, the operation or injection as written).
RecordListener = Callable[[str, Operation | ChaosInjection], None]


class Journal:
    """The agent's durable memory: one sqlite file (mode 0600) in the state folder."""

    def __init__(
        self,
        path: pathlib.Path,
        *,
        on_commit: Callable[[str], None] | None = None,
        durable: bool = True,
    ) -> None:
        self.path = path
        # Test seam: called after every commit with a label (e.g. "step:add").
        self.on_commit = on_commit
        # Also called after every commit, never raising: the engine's status notifier.
        self._listeners: list[Callable[[str], None]] = []
        # Called with the label and the record written, after commits of operations and
        # injections, never raising: the metrics (metrics.py).
        self._record_listeners: list[RecordListener] = []
        self._durable = durable
        try:
            self._db = self._open()
        except JournalCorruptError as exc:
            aside = self._move_aside(str(exc))
            logger.error(
                "journal %s is corrupt (%s): moved it to %s and started a fresh journal"
                " (history and circuit breakers are lost; pause and work in flight are"
                " recovered from the charm and the model)",
                path,
                exc,
                aside,
            )
            try:
                self._db = self._open()
            except JournalCorruptError as again:
                raise JournalError(f"cannot open journal {path}: {again}") from None

    def _open(self) -> sqlite3.Connection:
        """Connect, check the file and create the schema; JournalCorruptError if damaged."""
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Create the file 0600 before sqlite does; sqlite gives -wal/-shm the same mode.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(path, 0o600)
            # sqlite gives -wal/-shm the database's mode only when it creates them.
            for suffix in SIBLING_SUFFIXES:
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(f"{path}{suffix}", 0o600)
            wal_problem = check_wal_header(pathlib.Path(f"{path}-wal"))
        except OSError as exc:
            raise JournalError(f"cannot open journal {path}: {exc}") from None
        if wal_problem is not None:
            raise JournalCorruptError(wal_problem)
        try:
            db = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal {path}: {exc}") from None
        try:
            db.row_factory = sqlite3.Row
            # quick_check, not integrity_check: one linear pass over every page that checks
            # each b-tree's structure, records and free list, which is where torn, truncated
            # or overwritten files show (12 ms for 10,000 operations); integrity_check also
            # matches every index entry to its row, O(N log N) and 2.5 times the cost.
            problems = [row[0] for row in db.execute("PRAGMA quick_check(1)")]
            if problems != ["ok"]:
                raise JournalCorruptError(f"quick_check: {_one_line(' '.join(problems))}")
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit survives power loss before the action it announces is taken.
            # Tests pass durable=False (NORMAL: still safe against the process crashing).
            db.execute(f"PRAGMA synchronous={'FULL' if self._durable else 'NORMAL'}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JournalError(
                    f"journal {path} has schema {version}; this agent knows {SCHEMA_VERSION}"
                )
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            db.close()
            if is_corruption(exc):
                raise JournalCorruptError(_one_line(str(exc))) from None
            raise JournalError(f"cannot open journal {path}: {exc}") from None
        except JournalError:
            db.close()
            raise
        return db

    def _move_aside(self, reason: str) -> pathlib.Path:
        """Rename the damaged file and its siblings to `<name>.corrupt-<UTC time>`, 0600."""
        path = self.path
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = path.with_name(f"{path.name}{CORRUPT_INFIX}{stamp}")
        n = 1
        while any(os.path.lexists(f"{aside}{s}") for s in ("", *SIBLING_SUFFIXES)):
            n += 1
            aside = path.with_name(f"{path.name}{CORRUPT_INFIX}{stamp}.{n}")
        try:
            # The siblings first: a WAL left next to a fresh database would be replayed into it.
            for suffix in (*SIBLING_SUFFIXES, ""):
                source = pathlib.Path(f"{path}{suffix}")
                if not os.path.lexists(source):
                    continue
                target = pathlib.Path(f"{aside}{suffix}")
                os.rename(source, target)
                os.chmod(target, 0o600)
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            raise JournalError(
                f"journal {path} is corrupt ({reason}) and cannot be moved aside: {exc}"
            ) from None
        return aside

    @classmethod
    def open_in(cls, state_dir: pathlib.Path) -> Journal:
        """Open (or create) the journal in the agent's state folder."""
        return cls(state_dir / JOURNAL_FILE)

    def close(self) -> None:
        """Close the database."""
        with self._guard("close the journal"):
            self._db.close()

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Raise every sqlite error (and undecodable content) as a JournalError."""
        try:
            yield
        except sqlite3.Error as exc:
            error = JournalCorruptError if is_corruption(exc) else JournalError
            raise error(f"journal {self.path}: cannot {action}: {exc}") from exc
        except (ValueError, TypeError, IndexError) as exc:
            # Reads: a stored value that does not decode, a column that is not there.
            raise JournalCorruptError(
                f"journal {self.path}: cannot {action}: bad stored value: {exc}"
            ) from exc

    @contextlib.contextmanager
    def _transaction(self, label: str) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    # sqlite may have rolled back already (a full disk, damage): best effort.
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            error = JournalCorruptError if is_corruption(exc) else JournalError
            raise error(f"journal {self.path}: cannot write {label}: {exc}") from exc
        if self.on_commit is not None:
            self.on_commit(label)
        for listener in tuple(self._listeners):
            listener(label)

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """Call `listener` with the label of every commit from now on (it must not raise)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[str], None]) -> None:
        """Stop calling `listener` (no error if it was not added)."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def add_record_listener(self, listener: RecordListener) -> None:
        """Call `listener` with the label and record of every operation or injection written.

        From now on, after each commit; it must not raise.
        """
        self._record_listeners.append(listener)

    def remove_record_listener(self, listener: RecordListener) -> None:
        """Stop calling `listener` (no error if it was not added)."""
        with contextlib.suppress(ValueError):
            self._record_listeners.remove(listener)

    def _emit(self, label: str, record: Operation | ChaosInjection) -> None:
        for listener in tuple(self._record_listeners):
            listener(label, record)

    # -- operations ------------------------------------------------------------------------

    def create_operation(
        self,
        *,
        token: str,
        trigger: str,
        service: str,
        old_unit: str | None,
        at: datetime.datetime,
        dry_run: bool,
        max_unit_number: int,
        healthy_at_start: int,
        old_machine: str | None,
        old_machine_dedicated: bool,
    ) -> Operation:
        """Journal a new operation at step PLAN; its id is `<seq>-<token>`."""
        with self._transaction("create") as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM operations").fetchone()[0]
            op_id = f"{seq}-{token}"
            db.execute(
                "INSERT INTO operations (seq, id, trigger, service, old_unit, step, result,"
                " started, dry_run, max_unit_number, healthy_at_start, old_machine,"
                " old_machine_dedicated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    seq, op_id, trigger, service, old_unit, PLAN, RUNNING, to_iso(at),
                    int(dry_run), max_unit_number, healthy_at_start, old_machine,
                    int(old_machine_dedicated),
                ),
            )  # fmt: skip
            db.execute(
                "INSERT INTO steps (op_seq, n, step, at) VALUES (?, 0, ?, ?)",
                (seq, PLAN, to_iso(at)),
            )
        op = self.get_operation(op_id)
        assert op is not None
        self._emit("create", op)
        return op

    def adopt_operation(
        self,
        *,
        op_id: str,
        service: str,
        old_unit: str,
        new_unit: str,
        step: str,
        at: datetime.datetime,
        started: datetime.datetime,
        deadline: datetime.datetime,
        born: datetime.datetime | None,
        max_unit_number: int,
        healthy_at_start: int,
        old_machine: str | None,
        old_machine_dedicated: bool,
        new_machine: str | None,
        reason: str = "",
    ) -> Operation:
        """Journal an operation another agent left in flight (trigger recovery, step `step`)."""
        with self._transaction("adopt") as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM operations").fetchone()[0]
            db.execute(
                "INSERT INTO operations (seq, id, trigger, service, old_unit, new_unit, step,"
                " result, reason, started, deadline, max_unit_number, healthy_at_start,"
                " old_machine, old_machine_dedicated, new_machine, born)"
                " VALUES (?, ?, 'recovery', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    seq, op_id, service, old_unit, new_unit, step, RUNNING, reason,
                    to_iso(started), to_iso(deadline), max_unit_number, healthy_at_start,
                    old_machine, int(old_machine_dedicated), new_machine, to_iso(born),
                ),
            )  # fmt: skip
            db.executemany(
                "INSERT INTO steps (op_seq, n, step, at) VALUES (?, ?, ?, ?)",
                [(seq, 0, "adopt", to_iso(at)), (seq, 1, step, to_iso(at))],
            )
        op = self.get_operation(op_id)
        assert op is not None
        self._emit("adopt", op)
        return op

    def update(
        self,
        op: Operation,
        at: datetime.datetime,
        *,
        log: str | None = None,
        **changes: Any,
    ) -> Operation:
        """Write `changes` to the operation; log a step entry for a new step (or `log`)."""
        unknown = set(changes) - _MUTABLE
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)} of an operation")
        entry = log
        if entry is None and "step" in changes and changes["step"] != op.step:
            entry = changes["step"]
        label = f"step:{entry}" if entry is not None else "update:" + ",".join(sorted(changes))
        with self._transaction(label) as db:
            if changes:
                columns = ", ".join(f"{name} = ?" for name in changes)
                db.execute(
                    f"UPDATE operations SET {columns} WHERE seq = ?",
                    (*(_to_column(v) for v in changes.values()), op.seq),
                )
            if entry is not None:
                db.execute(
                    "INSERT INTO steps (op_seq, n, step, at) VALUES (?, ?, ?, ?)",
                    (op.seq, len(op.steps), entry, to_iso(at)),
                )
        steps = op.steps if entry is None else (*op.steps, StepEntry(entry, at))
        updated = dataclasses.replace(op, steps=steps, **changes)
        self._emit(label, updated)
        return updated

    def finish(
        self, op: Operation, at: datetime.datetime, result: str, reason: str = ""
    ) -> Operation:
        """Give the operation its final result (step DONE)."""
        if result not in RESULTS or result == RUNNING:
            raise ValueError(f"not a final result: {result!r}")
        return self.update(
            op, at, step=DONE, result=result, reason=reason, finished=at, deadline=None
        )

    def _steps(self, seq: int) -> tuple[StepEntry, ...]:
        rows = self._db.execute(
            "SELECT step, at FROM steps WHERE op_seq = ? ORDER BY n", (seq,)
        ).fetchall()
        return tuple(
            StepEntry(r["step"], from_iso(r["at"]) or datetime.datetime.min) for r in rows
        )

    def _operations(self, where: str, args: tuple[Any, ...]) -> list[Operation]:
        with self._guard("read operations"):
            rows = self._db.execute(f"SELECT * FROM operations {where}", args).fetchall()
            return [_row_to_operation(r, self._steps(r["seq"])) for r in rows]

    def get_operation(self, op_id: str) -> Operation | None:
        """The operation with id `op_id`, if journaled."""
        ops = self._operations("WHERE id = ?", (op_id,))
        return ops[0] if ops else None

    def get_unfinished(self) -> list[Operation]:
        """Operations without a final result (oldest first): what recovery must finish."""
        return self._operations("WHERE result = ? ORDER BY seq", (RUNNING,))

    def get_history(self, limit: int, service: str | None = None) -> list[Operation]:
        """The newest `limit` operations (of `service` only, if given), newest first."""
        if service is None:
            return self._operations("ORDER BY seq DESC LIMIT ?", (limit,))
        # Index operations_service (service, seq): reads only the rows returned.
        return self._operations("WHERE service = ? ORDER BY seq DESC LIMIT ?", (service, limit))

    def get_last_successes(self) -> dict[str, datetime.datetime]:
        """When the newest ok operation of each application finished."""
        with self._guard("read last successes"):
            rows = self._db.execute(
                "SELECT service, MAX(finished) AS finished FROM operations"
                " WHERE result = ? AND finished IS NOT NULL GROUP BY service",
                (OK,),
            ).fetchall()
            return {r["service"]: datetime.datetime.fromisoformat(r["finished"]) for r in rows}

    def get_last_finished(self) -> Operation | None:
        """The newest operation with a final result."""
        ops = self._operations("WHERE result != ? ORDER BY seq DESC LIMIT 1", (RUNNING,))
        return ops[0] if ops else None

    # -- agent state -----------------------------------------------------------------------

    def get_state(self, key: str) -> Any:
        """A JSON value of the agent's state (None if never set)."""
        with self._guard(f"read state {key}"):
            row = self._db.execute(
                "SELECT value FROM agent_state WHERE key = ?", (key,)
            ).fetchone()
            return None if row is None else json.loads(row["value"])

    def set_state(self, key: str, value: Any) -> None:
        """Store a JSON value of the agent's state."""
        with self._transaction(f"state:{key}") as db:
            db.execute(
                "INSERT INTO agent_state (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    def get_breakers(self) -> dict[str, policy.BreakerState]:
        """Circuit-breaker state per application (only those with failures)."""
        with self._guard("read breakers"):
            rows = self._db.execute(
                "SELECT application, failures, reason FROM breakers"
            ).fetchall()
            return {
                r["application"]: policy.BreakerState(r["failures"], r["reason"]) for r in rows
            }

    def set_breaker(self, application: str, state: policy.BreakerState) -> None:
        """Store the breaker of `application` (a closed one is deleted)."""
        with self._transaction(f"breaker:{application}") as db:
            if state.failures == 0:
                db.execute("DELETE FROM breakers WHERE application = ?", (application,))
            else:
                db.execute(
                    "INSERT INTO breakers (application, failures, reason) VALUES (?, ?, ?)"
                    " ON CONFLICT (application) DO UPDATE SET failures = excluded.failures,"
                    " reason = excluded.reason",
                    (application, state.failures, state.reason),
                )

    def clear_breakers(self) -> None:
        """Reset every breaker (resume, configuration change)."""
        with self._transaction("breakers:clear") as db:
            db.execute("DELETE FROM breakers")

    # -- chaos injections ------------------------------------------------------------------

    def create_injection(
        self,
        *,
        op_id: str,
        kind: str,
        service: str,
        unit: str,
        machine: str | None,
        draw: Any,
        params: dict[str, Any],
        dry_run: bool,
        at: datetime.datetime,
        revert_due: datetime.datetime | None,
    ) -> ChaosInjection:
        """Journal an injection before it is made (result RUNNING, or DRY_RUN)."""
        result = DRY_RUN if dry_run else RUNNING
        with self._transaction("chaos:create") as db:
            last = db.execute("SELECT COALESCE(MAX(seq), 0) FROM chaos_injections").fetchone()
            seq = last[0] + 1
            db.execute(
                "INSERT INTO chaos_injections (seq, id, kind, service, unit, machine, draw,"
                " params, dry_run, planned, result, revert_due)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    seq, op_id, kind, service, unit, machine, json.dumps(draw),
                    json.dumps(params), int(dry_run), to_iso(at), result, to_iso(revert_due),
                ),
            )  # fmt: skip
        found = self.get_injection(op_id)
        assert found is not None
        self._emit("chaos:create", found)
        return found

    def finish_injection(
        self,
        injection: ChaosInjection,
        at: datetime.datetime,
        result: str,
        *,
        reason: str = "",
        revert_due: datetime.datetime | None = None,
    ) -> ChaosInjection:
        """Record the controller's answer: OK or FAILED, and when the revert is due now."""
        if result not in (OK, FAILED):
            raise ValueError(f"not a result of an injection: {result!r}")
        with self._transaction(f"chaos:{result}") as db:
            db.execute(
                "UPDATE chaos_injections SET acted = ?, result = ?, reason = ?, revert_due = ?"
                " WHERE seq = ?",
                (to_iso(at), result, reason, to_iso(revert_due), injection.seq),
            )
        finished = dataclasses.replace(
            injection, acted=at, result=result, reason=reason, revert_due=revert_due
        )
        self._emit(f"chaos:{result}", finished)
        return finished

    def record_revert(
        self,
        injection: ChaosInjection,
        at: datetime.datetime,
        revert_result: str,
        *,
        done: bool,
    ) -> ChaosInjection:
        """Record a revert attempt; `done` ends it (undone, or left to the unit's timer)."""
        reverted = at if done else None
        with self._transaction("chaos:revert") as db:
            db.execute(
                "UPDATE chaos_injections SET reverted = ?, revert_result = ? WHERE seq = ?",
                (to_iso(reverted), revert_result, injection.seq),
            )
        return dataclasses.replace(injection, reverted=reverted, revert_result=revert_result)

    def _injections(self, where: str, args: tuple[Any, ...]) -> list[ChaosInjection]:
        with self._guard("read chaos injections"):
            rows = self._db.execute(f"SELECT * FROM chaos_injections {where}", args).fetchall()
            return [_row_to_injection(r) for r in rows]

    def get_injection(self, op_id: str) -> ChaosInjection | None:
        """The injection with id `op_id`, if journaled."""
        found = self._injections("WHERE id = ?", (op_id,))
        return found[0] if found else None

    def get_pending_reverts(self) -> list[ChaosInjection]:
        """Injections not yet undone (oldest first): what a restarted agent must revert."""
        return self._injections(
            "WHERE revert_due IS NOT NULL AND reverted IS NULL ORDER BY seq", ()
        )

    def get_injections(self, limit: int, service: str | None = None) -> list[ChaosInjection]:
        """The newest `limit` injections (of `service` only, if given), newest first."""
        if service is None:
            return self._injections("ORDER BY seq DESC LIMIT ?", (limit,))
        return self._injections("WHERE service = ? ORDER BY seq DESC LIMIT ?", (service, limit))

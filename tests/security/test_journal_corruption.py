"""A damaged journal is moved aside and replaced by a fresh one; a healthy one is never lost."""

from __future__ import annotations

import collections.abc
import contextlib
import datetime
import logging
import os
import pathlib
import re
import shutil
import sqlite3

import pytest

from whirlwind import journal as journal_mod
from whirlwind import policy

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
PAGE = 4096
# How long the journal waits for another connection's lock in these tests (seconds).
LOCK_TIMEOUT = 0.1
ASIDE = re.compile(r"journal\.db\.corrupt-\d{8}T\d{6}Z(\.\d+)?")

# The real connect, for the tests' own connections (the fixture below wraps the module's).
_connect = sqlite3.connect


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[sqlite3.Connection]:
    """Every connection the journal opens, with a short lock timeout."""
    connections: list[sqlite3.Connection] = []

    def connect(database: str, **kwargs: object) -> sqlite3.Connection:
        kwargs["timeout"] = LOCK_TIMEOUT
        connection = _connect(database, **kwargs)  # type: ignore[arg-type]
        connections.append(connection)
        return connection

    monkeypatch.setattr(sqlite3, "connect", connect)
    return connections


@pytest.fixture
def state(tmp_path: pathlib.Path) -> pathlib.Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return state


@contextlib.contextmanager
def _raw(path: pathlib.Path) -> collections.abc.Iterator[sqlite3.Connection]:
    """A connection of another process (a writer, a lock holder), closed at the end."""
    with contextlib.closing(_connect(str(path), isolation_level=None)) as db:
        yield db


@contextlib.contextmanager
def _open(path: pathlib.Path) -> collections.abc.Iterator[journal_mod.Journal]:
    journal = journal_mod.Journal(path, durable=False)
    try:
        yield journal
    finally:
        journal.close()


def _add(journal: journal_mod.Journal, n: int, *, first: int = 0) -> None:
    for i in range(first, first + n):
        op = journal.create_operation(
            token=f"t{i}",
            trigger="interval",
            service="app",
            old_unit=f"app/{i}",
            at=T0,
            dry_run=False,
            max_unit_number=i,
            healthy_at_start=3,
            old_machine=str(i),
            old_machine_dedicated=True,
        )
        op = journal.update(op, T0, step=journal_mod.ADD, new_unit=f"app/{i + 1}")
        journal.finish(op, T0, journal_mod.OK, "done " * 20)


def _healthy(path: pathlib.Path, n: int = 40) -> None:
    """A closed journal with `n` finished operations, some agent state and a breaker."""
    with _open(path) as journal:
        _add(journal, n)
        journal.set_state("interval", {"last-service": "app"})
        journal.set_breaker("web", policy.BreakerState(1, "boom"))


def _aside(state: pathlib.Path) -> list[pathlib.Path]:
    """The moved-aside databases (not their -wal/-shm)."""
    return sorted(p for p in state.iterdir() if ASIDE.fullmatch(p.name))


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def _assert_private(state: pathlib.Path) -> None:
    assert state.stat().st_mode & 0o777 == 0o700
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in state.iterdir()}
    assert modes == dict.fromkeys(modes, "0o600")


def _assert_fresh_and_usable(journal: journal_mod.Journal) -> None:
    assert journal.get_history(100) == []
    assert journal.get_unfinished() == []
    assert journal.get_last_finished() is None
    assert journal.get_state("interval") is None
    assert journal.get_breakers() == {}
    _add(journal, 2)
    assert [op.id for op in journal.get_history(10)] == ["2-t1", "1-t0"]


def _assert_moved_aside(
    state: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
    damaged: bytes,
    damaged_wal: bytes | None = None,
) -> None:
    (aside,) = _aside(state)
    assert aside.read_bytes() == damaged
    if damaged_wal is not None:
        assert pathlib.Path(f"{aside}-wal").read_bytes() == damaged_wal
    (error,) = _errors(caplog)
    message = error.getMessage()
    assert "\n" not in message
    assert "journal.db is corrupt" in message
    assert f"moved it to {aside}" in message
    _assert_private(state)


# -- damage found when the journal is opened ---------------------------------------------


def test_garbage_over_the_header(state: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    path = state / journal_mod.JOURNAL_FILE
    _healthy(path)
    data = bytearray(path.read_bytes())
    data[:100] = b"\xab" * 100
    path.write_bytes(data)

    with _open(path) as journal:
        _assert_fresh_and_usable(journal)
    _assert_moved_aside(state, caplog, bytes(data))
    assert "file is not a database" in _errors(caplog)[0].getMessage()


def test_truncated_file(state: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    path = state / journal_mod.JOURNAL_FILE
    _healthy(path)
    data = path.read_bytes()
    assert len(data) > 4 * PAGE
    damaged = data[: 2 * PAGE + 100]
    path.write_bytes(damaged)
    path.chmod(0o644)  # a copy restored by hand: the file moved aside is made private too

    with _open(path) as journal:
        _assert_fresh_and_usable(journal)
    _assert_moved_aside(state, caplog, damaged)


def test_valid_header_but_corrupted_pages(
    state: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = state / journal_mod.JOURNAL_FILE
    _healthy(path)
    data = bytearray(path.read_bytes())
    # Page 1 (header and schema) stays intact, so the file still opens: the damage is in the
    # tables, where only a read of them (history, status) would meet it.
    for offset in range(PAGE, len(data), PAGE):
        data[offset + 8 : offset + 300] = b"\x5a" * 292
    path.write_bytes(data)

    with _open(path) as journal:
        _assert_fresh_and_usable(journal)
    _assert_moved_aside(state, caplog, bytes(data))
    assert "quick_check" in _errors(caplog)[0].getMessage()


def _killed_with_transactions_in_the_wal(path: pathlib.Path, crash: pathlib.Path) -> None:
    """A healthy journal, then 5 more operations left only in its WAL (as after kill -9)."""
    _healthy(path)
    crash.mkdir()
    with _open(path) as journal:
        _add(journal, 5, first=40)
        shutil.copy(path, crash / path.name)
        shutil.copy(f"{path}-wal", crash / f"{path.name}-wal")
    for name in (path.name, f"{path.name}-wal"):
        shutil.copy(crash / name, path.parent / name)


def test_corrupt_wal_next_to_a_good_database(
    state: pathlib.Path, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = state / journal_mod.JOURNAL_FILE
    # The agent is killed while the newest transactions are only in the WAL...
    _killed_with_transactions_in_the_wal(path, tmp_path / "crash")
    wal = pathlib.Path(f"{path}-wal")
    # ...and the WAL's header is damaged: sqlite would drop those transactions without a word.
    damaged_wal = bytearray(wal.read_bytes())
    damaged_wal[:32] = b"\xcd" * 32
    wal.write_bytes(damaged_wal)
    database = path.read_bytes()

    with _open(path) as journal:
        _assert_fresh_and_usable(journal)
    _assert_moved_aside(state, caplog, database, bytes(damaged_wal))
    assert "WAL" in _errors(caplog)[0].getMessage()


def test_an_empty_file_is_a_fresh_journal(
    state: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = state / journal_mod.JOURNAL_FILE
    path.write_bytes(b"")
    path.chmod(0o644)

    with _open(path) as journal:
        _assert_fresh_and_usable(journal)
    assert _aside(state) == []
    assert _errors(caplog) == []
    _assert_private(state)


# -- errors at run time ------------------------------------------------------------------

_READS: dict[str, collections.abc.Callable[[journal_mod.Journal], object]] = {
    "history": lambda j: j.get_history(20),
    "unfinished": lambda j: j.get_unfinished(),
    "last-finished": lambda j: j.get_last_finished(),
    "operation": lambda j: j.get_operation("1-t0"),
    "state": lambda j: j.get_state("interval"),
    "breakers": lambda j: j.get_breakers(),
}


@pytest.mark.parametrize("read", list(_READS))
def test_a_read_of_a_journal_corrupted_at_run_time_gives_a_journal_error(
    state: pathlib.Path, caplog: pytest.LogCaptureFixture, read: str
) -> None:
    path = state / journal_mod.JOURNAL_FILE
    _healthy(path)
    journal = journal_mod.Journal(path, durable=False)
    try:
        # Another writer makes the journal drop its page cache, then every page but the
        # first (header and schema) goes bad.
        with _raw(path) as other:
            other.execute("INSERT INTO agent_state (key, value) VALUES ('other', '1')")
            other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with open(path, "r+b") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(PAGE)
            file.write(b"\x5a" * (size - PAGE))

        with pytest.raises(journal_mod.JournalError, match="malformed") as raised:
            _READS[read](journal)
        assert isinstance(raised.value, journal_mod.JournalCorruptError)
    finally:
        journal.close()

    # The next start repairs it.
    with _open(path) as journal:
        _assert_fresh_and_usable(journal)
    assert len(_aside(state)) == 1
    assert len(_errors(caplog)) == 1


def test_a_write_on_a_full_disk_gives_a_journal_error_and_keeps_the_journal(
    state: pathlib.Path, opened: list[sqlite3.Connection]
) -> None:
    path = state / journal_mod.JOURNAL_FILE
    _healthy(path)
    with _open(path) as journal:
        (op,) = journal.get_history(1)
        db = opened[-1]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full

        with pytest.raises(journal_mod.JournalError, match="full") as raised:
            journal.update(op, T0, reason="x" * 100_000)
        assert not isinstance(raised.value, journal_mod.JournalCorruptError)
        assert not db.in_transaction
        assert journal.get_operation(op.id) == op

        db.execute(f"PRAGMA max_page_count = {pages * 100}")  # space again
        journal.update(op, T0, reason="x" * 100_000)
    assert _aside(state) == []


def test_a_write_while_another_holds_the_lock_gives_a_journal_error(
    state: pathlib.Path, opened: list[sqlite3.Connection]
) -> None:
    path = state / journal_mod.JOURNAL_FILE
    _healthy(path)
    with _open(path) as journal, _raw(path) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(journal_mod.JournalError, match="locked") as raised:
            journal.set_state("pause", {"paused": True})
        assert not isinstance(raised.value, journal_mod.JournalCorruptError)
        other.execute("ROLLBACK")

        journal.set_state("pause", {"paused": True})
        assert journal.get_state("pause") == {"paused": True}
    assert _aside(state) == []


def test_a_closed_journal_gives_a_journal_error(state: pathlib.Path) -> None:
    journal = journal_mod.Journal(state / journal_mod.JOURNAL_FILE, durable=False)
    journal.close()

    with pytest.raises(journal_mod.JournalError, match="closed"):
        journal.get_history(1)


# -- a healthy journal is never lost -----------------------------------------------------


def test_a_healthy_journal_with_data_is_not_moved_aside(
    state: pathlib.Path, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = state / journal_mod.JOURNAL_FILE
    # Killed with transactions only in the WAL: a sound WAL is replayed, not thrown away.
    _killed_with_transactions_in_the_wal(path, tmp_path / "crash")

    with _open(path) as journal:
        history = journal.get_history(100)
        assert len(history) == 45
        assert history[0].id == "45-t44"
        assert journal.get_state("interval") == {"last-service": "app"}
    assert _aside(state) == []
    assert _errors(caplog) == []
    _assert_private(state)


def test_a_locked_journal_is_not_moved_aside(
    state: pathlib.Path, opened: list[sqlite3.Connection], caplog: pytest.LogCaptureFixture
) -> None:
    path = state / journal_mod.JOURNAL_FILE
    _healthy(path)
    before = path.read_bytes()
    with _raw(path) as other:
        other.execute("PRAGMA locking_mode=EXCLUSIVE")
        other.execute("BEGIN EXCLUSIVE")

        with pytest.raises(journal_mod.JournalError, match="locked") as raised:
            journal_mod.Journal(path, durable=False)
        assert not isinstance(raised.value, journal_mod.JournalCorruptError)
        other.execute("ROLLBACK")

    assert path.read_bytes() == before
    assert _aside(state) == []
    assert _errors(caplog) == []
    with _open(path) as journal:
        assert len(journal.get_history(100)) == 40


def test_a_new_journal_on_a_full_disk_is_not_moved_aside(
    state: pathlib.Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def connect(database: str, **kwargs: object) -> sqlite3.Connection:
        connection = _connect(database, **kwargs)  # type: ignore[arg-type]
        connection.execute("PRAGMA max_page_count = 1")  # no room for the tables
        return connection

    monkeypatch.setattr(sqlite3, "connect", connect)

    with pytest.raises(journal_mod.JournalError, match="full") as raised:
        journal_mod.Journal(state / journal_mod.JOURNAL_FILE, durable=False)
    assert not isinstance(raised.value, journal_mod.JournalCorruptError)
    assert _aside(state) == []
    assert _errors(caplog) == []

"""The journal: operations, step log, history shape, state, file modes, damage detection."""

from __future__ import annotations

import collections.abc
import contextlib
import datetime
import os
import pathlib
import sqlite3

import pytest

from whirlwind import journal as journal_mod
from whirlwind import policy

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def _at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def _create(journal: journal_mod.Journal, **overrides: object) -> journal_mod.Operation:
    values: dict[str, object] = {
        "token": "abc123",
        "trigger": "interval",
        "service": "app",
        "old_unit": "app/0",
        "at": T0,
        "dry_run": False,
        "max_unit_number": 2,
        "healthy_at_start": 3,
        "old_machine": "0",
        "old_machine_dedicated": True,
    }
    values.update(overrides)
    return journal.create_operation(**values)  # type: ignore[arg-type]


@pytest.fixture
def journal(tmp_path: pathlib.Path) -> collections.abc.Iterator[journal_mod.Journal]:
    journal = journal_mod.Journal(tmp_path / "state" / "journal.db")
    yield journal
    journal.close()


def test_file_is_private_and_in_wal_mode(tmp_path: pathlib.Path) -> None:
    journal = journal_mod.Journal.open_in(tmp_path / "state")
    _create(journal)

    path = tmp_path / "state" / journal_mod.JOURNAL_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    wal = pathlib.Path(f"{path}-wal")
    assert wal.exists()
    assert wal.stat().st_mode & 0o077 == 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    journal.close()


def test_operation_goes_through_steps_and_reads_back_after_reopen(
    tmp_path: pathlib.Path,
) -> None:
    journal = journal_mod.Journal(tmp_path / "journal.db")
    op = _create(journal)
    op = journal.update(op, _at(1), step=journal_mod.ADD, deadline=_at(601))
    op = journal.update(op, _at(2), new_unit="app/3", born=_at(2))
    op = journal.update(op, _at(90), step=journal_mod.SETTLE)
    op = journal.update(op, _at(91), log="remove-force", forced=True)
    journal.close()

    reopened = journal_mod.Journal(tmp_path / "journal.db")
    (unfinished,) = reopened.get_unfinished()

    assert unfinished == op
    assert (unfinished.id, unfinished.step, unfinished.new_unit) == ("1-abc123", "settle", "app/3")
    assert unfinished.deadline == _at(601)
    assert unfinished.forced is True
    assert [(s.step, s.at) for s in unfinished.steps] == [
        ("plan", T0),
        ("add", _at(1)),
        ("settle", _at(90)),
        ("remove-force", _at(91)),
    ]
    reopened.close()


def test_history_entry_has_the_control_api_shape(journal: journal_mod.Journal) -> None:
    op = _create(journal, trigger="replace-now")
    op = journal.update(op, _at(1), step=journal_mod.ADD, new_unit="app/3")
    op = journal.finish(op, _at(95.5), journal_mod.OK)

    assert op.to_dict() == {
        "id": "1-abc123",
        "trigger": "replace-now",
        "service": "app",
        "old-unit": "app/0",
        "new-unit": "app/3",
        "result": "ok",
        "reason": "",
        "started": "2026-01-01T00:00:00+00:00",
        "finished": "2026-01-01T00:01:35.500000+00:00",
        "duration": 95.5,
        "steps": [
            {"step": "plan", "at": "2026-01-01T00:00:00+00:00"},
            {"step": "add", "at": "2026-01-01T00:00:01+00:00"},
            {"step": "done", "at": "2026-01-01T00:01:35.500000+00:00"},
        ],
    }
    assert journal.get_unfinished() == []
    assert journal.get_last_finished() == op


def test_running_operation_has_no_duration(journal: journal_mod.Journal) -> None:
    entry = _create(journal).to_dict()

    assert (entry["result"], entry["finished"], entry["duration"]) == ("running", None, None)


def test_history_is_newest_first_and_limited(journal: journal_mod.Journal) -> None:
    for n in range(5):
        journal.finish(_create(journal, token=f"t{n}"), _at(n), journal_mod.OK)

    assert [op.id for op in journal.get_history(3)] == ["5-t4", "4-t3", "3-t2"]


def test_history_of_one_service_is_filtered_by_the_query(
    journal: journal_mod.Journal,
) -> None:
    for n, service in enumerate(["app", "db", "app", "db", "app", "web"]):
        op = _create(journal, token=f"t{n}", service=service, old_unit=f"{service}/{n}")
        journal.finish(op, _at(n), journal_mod.OK)

    assert [op.id for op in journal.get_history(10, service="app")] == ["5-t4", "3-t2", "1-t0"]
    assert [op.id for op in journal.get_history(2, service="db")] == ["4-t3", "2-t1"]
    assert journal.get_history(10, service="gone") == []
    assert len(journal.get_history(10)) == 6
    (op,) = journal.get_history(1, service="web")
    assert [s.step for s in op.steps] == ["plan", "done"]
    # The filter and the order come from the index, not from reading every operation.
    db = sqlite3.connect(journal.path)
    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM operations WHERE service = ? ORDER BY seq DESC LIMIT ?",
        ("app", 10),
    ).fetchall()
    db.close()
    details = " ".join(row[3] for row in plan)
    assert "USING INDEX operations_service (service=?)" in details
    assert "TEMP B-TREE" not in details  # no sort: the index gives the order


def test_a_journal_from_before_the_service_index_gets_it(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "journal.db"
    journal_mod.Journal(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP INDEX operations_service")
    db.close()

    journal_mod.Journal(path).close()

    db = sqlite3.connect(path)
    indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    db.close()
    assert "operations_service" in indexes


def test_one_operation_by_id_with_its_steps(journal: journal_mod.Journal) -> None:
    op = journal.update(_create(journal), _at(1), step=journal_mod.ADD)
    journal.finish(op, _at(2), journal_mod.ROLLED_BACK, "settle timeout")
    _create(journal, token="other")

    found = journal.get_operation("1-abc123")

    assert found is not None
    assert (found.result, found.reason) == ("rolled-back", "settle timeout")
    assert [(s.step, s.at) for s in found.steps] == [
        ("plan", T0),
        ("add", _at(1)),
        ("done", _at(2)),
    ]
    assert journal.get_operation("9-nope") is None


def test_bad_updates_are_refused(journal: journal_mod.Journal) -> None:
    op = _create(journal)

    with pytest.raises(ValueError, match="cannot change"):
        journal.update(op, T0, service="other")
    with pytest.raises(ValueError, match="not a final result"):
        journal.finish(op, T0, journal_mod.RUNNING)


def test_agent_state_and_breakers(journal: journal_mod.Journal) -> None:
    journal.set_state("pause", {"paused": True, "since": "x"})
    journal.set_breaker("app", policy.BreakerState(2, "boom"))
    journal.set_breaker("web", policy.BreakerState(1, "bang"))
    journal.set_breaker("web", policy.BreakerState())

    assert journal.get_state("pause") == {"paused": True, "since": "x"}
    assert journal.get_state("missing") is None
    assert journal.get_breakers() == {"app": policy.BreakerState(2, "boom")}
    journal.clear_breakers()
    assert journal.get_breakers() == {}


def test_every_commit_is_announced(journal: journal_mod.Journal) -> None:
    labels: list[str] = []
    journal.on_commit = labels.append

    op = _create(journal)
    op = journal.update(op, _at(1), step=journal_mod.ADD)
    op = journal.update(op, _at(2), new_unit="app/3")
    journal.finish(op, _at(3), journal_mod.OK)

    assert labels == ["create", "step:add", "update:new_unit", "step:done"]


def test_a_journal_from_a_newer_agent_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "journal.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 99")

    with pytest.raises(journal_mod.JournalError, match="has schema 99"):
        journal_mod.Journal(path)


def test_an_unusable_path_gives_a_journal_error(tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")

    with pytest.raises(journal_mod.JournalError, match="cannot open journal"):
        journal_mod.Journal(blocker / "journal.db")


def test_siblings_left_with_another_mode_are_made_private(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "journal.db"
    with contextlib.closing(journal_mod.Journal(path)) as journal:
        _create(journal)
    # Left by a crash, not empty: sqlite only gives files it creates (or empty ones) its mode.
    for suffix, content in (("-wal", b"\0" * 5000), ("-shm", b"\xcd" * 32768)):
        sibling = pathlib.Path(f"{path}{suffix}")
        sibling.write_bytes(content)
        sibling.chmod(0o644)

    with contextlib.closing(journal_mod.Journal(path)) as journal:
        assert len(journal.get_history(5)) == 1
        modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"journal.db": 0o600, "journal.db-wal": 0o600, "journal.db-shm": 0o600}


def _wal_of_a_killed_agent(tmp_path: pathlib.Path) -> bytes:
    """The WAL sqlite wrote, as a killed agent leaves it."""
    path = tmp_path / "live" / "journal.db"
    with contextlib.closing(journal_mod.Journal(path, durable=False)) as journal:
        _create(journal)
        return pathlib.Path(f"{path}-wal").read_bytes()


def _damage(header: bytes, offset: int, value: bytes) -> bytes:
    return header[:offset] + value + header[offset + len(value) :]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param(b"", None, id="empty"),
        pytest.param(b"\0" * 5000, None, id="zeros-of-a-crash-before-the-header"),
        pytest.param("sound", None, id="sound"),
        pytest.param(b"\x37\x7f\x06", "shorter than its header", id="short"),
        pytest.param(b"\xcd" * 5000, "bad header (magic 0xcdcdcdcd)", id="garbage"),
        pytest.param(("sound", 4, b"\0\0\0\1"), "version 1", id="version"),
        pytest.param(("sound", 8, b"\0\0\3\0"), "page size 768", id="page-size"),
        pytest.param(("sound", 16, b"\xff"), "bad header checksum", id="salt"),
        pytest.param(("sound", 28, b"\xff"), "bad header checksum", id="checksum"),
    ],
)
def test_wal_header_check(tmp_path: pathlib.Path, content: object, problem: str | None) -> None:
    wal = tmp_path / "journal.db-wal"
    if content == "sound":
        wal.write_bytes(_wal_of_a_killed_agent(tmp_path))
    elif isinstance(content, tuple):
        _, offset, value = content
        wal.write_bytes(_damage(_wal_of_a_killed_agent(tmp_path), offset, value))
    elif isinstance(content, bytes):
        wal.write_bytes(content)

    found = journal_mod.check_wal_header(wal)

    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def _sqlite_error(kind: type[sqlite3.Error], message: str, code: int | None) -> sqlite3.Error:
    error = kind(message)
    if code is not None:
        # Python 3.11+ sets it on the errors sqlite raises; its stubs for 3.10 lack it.
        setattr(error, "sqlite_errorcode", code)  # noqa: B010
    return error


@pytest.mark.parametrize(
    ("error", "corrupt"),
    [
        (_sqlite_error(sqlite3.DatabaseError, "database disk image is malformed", 11), True),
        (_sqlite_error(sqlite3.DatabaseError, "database disk image is malformed", 779), True),
        (_sqlite_error(sqlite3.DatabaseError, "file is not a database", 26), True),
        (_sqlite_error(sqlite3.OperationalError, "database is locked", 5), False),
        (_sqlite_error(sqlite3.OperationalError, "database table is locked", 6), False),
        (_sqlite_error(sqlite3.OperationalError, "database or disk is full", 13), False),
        (_sqlite_error(sqlite3.OperationalError, "disk I/O error", 10), False),
        (_sqlite_error(sqlite3.OperationalError, "disk I/O error", 522), False),
        (_sqlite_error(sqlite3.OperationalError, "unable to open database file", 14), False),
        (
            _sqlite_error(sqlite3.OperationalError, "attempt to write a readonly database", 8),
            False,
        ),
        # Python 3.10: no code, the message tells.
        (_sqlite_error(sqlite3.DatabaseError, "database disk image is malformed", None), True),
        (_sqlite_error(sqlite3.DatabaseError, "malformed database schema (x)", None), True),
        (_sqlite_error(sqlite3.DatabaseError, "file is not a database", None), True),
        (_sqlite_error(sqlite3.OperationalError, "database is locked", None), False),
        (_sqlite_error(sqlite3.OperationalError, "database or disk is full", None), False),
    ],
    ids=lambda value: str(value),
)
def test_only_damage_counts_as_corruption(error: sqlite3.Error, corrupt: bool) -> None:
    assert journal_mod.is_corruption(error) is corrupt


def test_each_corrupt_journal_is_kept(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "journal.db"
    for n in range(3):
        path.write_bytes(f"not a database {n}".encode() * 10)
        journal_mod.Journal(path, durable=False).close()

    asides = sorted(p for p in tmp_path.iterdir() if ".corrupt-" in p.name)
    assert sorted(p.read_bytes()[:16] for p in asides) == [
        f"not a database {n}".encode() for n in range(3)
    ]


def test_a_journal_that_cannot_be_moved_aside_is_left_alone(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(b"garbage" * 100)

    def refuse(source: object, target: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "rename", refuse)

    with pytest.raises(journal_mod.JournalError, match=r"corrupt .* cannot be moved aside"):
        journal_mod.Journal(path, durable=False)
    assert path.read_bytes() == b"garbage" * 100

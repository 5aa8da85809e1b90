"""The journal: operations, step log, history shape, agent state, bounded first-seen, file mode."""

from __future__ import annotations

import collections.abc
import datetime
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
    with sqlite3.connect(path) as db:
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
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")

    with pytest.raises(journal_mod.JournalError, match="has schema 99"):
        journal_mod.Journal(path)


def test_an_unusable_path_gives_a_journal_error(tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")

    with pytest.raises(journal_mod.JournalError, match="cannot open journal"):
        journal_mod.Journal(blocker / "journal.db")

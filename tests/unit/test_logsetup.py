"""The agent's logging: stderr (the journal) and the optional size-rotated log file."""

from __future__ import annotations

import collections.abc
import logging
import pathlib
import re
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from whirlwind import logsetup
from whirlwind import settings as settings_mod

# FORMAT with a UTC ISO 8601 time: what a line of the log file looks like.
FILE_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) [\w.]+: .*$"
)
SECRET = "s3cret-password"


@pytest.fixture(autouse=True)
def _restore_logging() -> collections.abc.Iterator[None]:
    root = logging.getLogger()
    level = root.level
    secret_levels = {name: logging.getLogger(name).level for name in logsetup.SECRET_LOGGERS}
    yield
    logsetup.teardown_logging()
    root.setLevel(level)
    for name, secret_level in secret_levels.items():
        logging.getLogger(name).setLevel(secret_level)
    for name in ("juju.client.client", "websockets.server"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def lines(path: pathlib.Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_the_file_gets_the_journals_lines_with_a_utc_time(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
):
    log_file = tmp_path / "agent.log"
    logsetup.setup_logging("INFO", log_file)

    logging.getLogger("whirlwind.engine").info("replaced %s with %s", "app/1", "app/2")
    logging.getLogger("whirlwind.engine").debug("below the level")

    [line] = lines(log_file)
    assert FILE_LINE.match(line), line
    assert line.endswith(" INFO whirlwind.engine: replaced app/1 with app/2")
    journal = capsys.readouterr().err
    assert journal.count("\n") == 1
    # The same line after the time, in both.
    assert journal.split(" ", 2)[2] == line.split(" ", 1)[1] + "\n"


def test_no_file_without_a_path(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]):
    logsetup.setup_logging("INFO")

    logging.getLogger("whirlwind").info("hello")

    assert "hello" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_file_is_rotated_by_size_keeping_a_few_backups(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(logsetup, "FILE_MAX_BYTES", 500)
    monkeypatch.setattr(logsetup, "FILE_BACKUPS", 2)
    log_file = tmp_path / "agent.log"
    logsetup.setup_logging("INFO", log_file)

    for n in range(100):
        logging.getLogger("whirlwind").info("line %03d", n)

    files = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("agent.log"))
    assert files == ["agent.log", "agent.log.1", "agent.log.2"]
    for name in files:
        assert 0 < (tmp_path / name).stat().st_size <= 500
    kept = lines(tmp_path / "agent.log.2") + lines(tmp_path / "agent.log.1") + lines(log_file)
    numbers = [int(line.rsplit(" ", 1)[1]) for line in kept]
    assert numbers == list(range(numbers[0], 100))  # the newest, in order, none lost between
    assert numbers[0] > 0  # the oldest are gone


def test_the_real_rotation_is_10_mib_times_3():
    # README Observability promises at most 40 MiB of log files.
    assert (logsetup.FILE_MAX_BYTES, logsetup.FILE_BACKUPS) == (10 * 1024 * 1024, 3)


def test_the_file_never_gets_what_would_print_the_password(tmp_path: pathlib.Path):
    log_file = tmp_path / "agent.log"
    logsetup.setup_logging("DEBUG", log_file)
    # Loggers under juju.client and websockets set to DEBUG by whatever imports them later
    # (names libjuju_backend does not filter itself): the handler's filter still drops these.
    for name in ("juju.client.client", "websockets.server"):
        logging.getLogger(name).setLevel(logging.DEBUG)

    logging.getLogger("juju.client.client").debug("login %s", SECRET)
    logging.getLogger("websockets.server").debug("> TEXT %s", SECRET)
    logging.getLogger("whirlwind.engine").debug("a debug line")
    logging.getLogger("juju.client.connection").warning("connection lost")

    text = log_file.read_text()
    assert SECRET not in text
    assert "a debug line" in text
    assert "connection lost" in text


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p / "missing" / "agent.log", "No such file or directory"),
        (lambda p: p, "Is a directory"),
    ],
    ids=["no-folder", "a-directory"],
)
def test_a_file_that_cannot_be_opened_is_a_warning_and_logging_goes_on(
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    make: Any,
    reason: str,
):
    log_file = make(tmp_path)

    logsetup.setup_logging("INFO", log_file)
    logging.getLogger("whirlwind").info("still logging")

    journal = capsys.readouterr().err.splitlines()
    assert len(journal) == 2
    assert f"WARNING whirlwind.logsetup: cannot write the log to {log_file}" in journal[0]
    assert journal[0].endswith(f"logging to stderr only: {reason}")
    assert journal[1].endswith("INFO whirlwind: still logging")
    assert not (tmp_path / "missing").exists()  # the folder is systemd's to make, not ours


def test_setup_again_keeps_one_file_handler(tmp_path: pathlib.Path):
    log_file = tmp_path / "agent.log"
    logsetup.setup_logging("INFO", log_file)
    logsetup.setup_logging("DEBUG", log_file)  # a reload (SIGHUP) with the same file

    logging.getLogger("whirlwind").debug("once")

    assert [line.rsplit(" ", 1)[1] for line in lines(log_file)] == ["once"]


def test_a_reload_moves_to_another_file_or_stops_writing_one(tmp_path: pathlib.Path):
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    logsetup.setup_logging("INFO", first)
    logging.getLogger("whirlwind").info("one")

    logsetup.setup_logging("INFO", second)
    logging.getLogger("whirlwind").info("two")
    logsetup.setup_logging("INFO", None)
    logging.getLogger("whirlwind").info("three")

    assert [line.rsplit(" ", 1)[1] for line in lines(first)] == ["one"]
    assert [line.rsplit(" ", 1)[1] for line in lines(second)] == ["two"]


def test_a_reload_opens_a_file_that_failed_before(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
):
    log_file = tmp_path / "logs" / "agent.log"
    logsetup.setup_logging("INFO", log_file)
    (tmp_path / "logs").mkdir()

    logsetup.setup_logging("INFO", log_file)
    logging.getLogger("whirlwind").info("now in the file")

    assert lines(log_file)[-1].endswith("INFO whirlwind: now in the file")
    assert capsys.readouterr().err.count("cannot write the log") == 1


def test_teardown_closes_the_file(tmp_path: pathlib.Path):
    log_file = tmp_path / "agent.log"
    logsetup.setup_logging("INFO", log_file)

    logsetup.teardown_logging()
    logging.getLogger("whirlwind").warning("after teardown")

    assert "after teardown" not in log_file.read_text()
    assert not any(
        isinstance(h, logging.FileHandler) and h.baseFilename == str(log_file)
        for h in logging.getLogger().handlers
    )


# -- the settings key that turns it on --------------------------------------------------------


def _data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "controller": {
            "endpoints": "10.0.0.1:17070",
            "ca-cert": imb.CA_CERT,
            "username": "admin",
            "password": "x",
        },
        "model-uuid": "uuid-1",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("/var/log/whirlwind/agent.log", pathlib.Path("/var/log/whirlwind/agent.log")),
        ("logs/agent.log", pathlib.Path("/etc/whirlwind/logs/agent.log")),  # the settings' folder
    ],
)
def test_the_log_file_setting(value: str | None, expected: pathlib.Path | None):
    data = _data() if value is None else _data(**{"log-file": value})

    settings = settings_mod.parse_settings(data, base_dir=pathlib.Path("/etc/whirlwind"))

    assert settings.log_file == expected
    dumped = settings.to_dict()
    assert dumped.get("log-file") == (None if expected is None else str(expected))
    assert settings_mod.parse_settings(dumped).log_file == expected


def test_a_log_file_that_is_no_string_names_the_option():
    with pytest.raises(settings_mod.SettingsError, match="log-file must be a string, got int"):
        settings_mod.parse_settings(_data(**{"log-file": 5}))

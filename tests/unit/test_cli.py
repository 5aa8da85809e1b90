"""The command line: bad input gives one line and exit 2; ctl against a real ControlServer; run."""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import tempfile
import threading
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from whirlwind import backend as backend_mod
from whirlwind import cli, control, logsetup
from whirlwind import engine as engine_mod
from whirlwind import journal as journal_mod
from whirlwind import settings as settings_mod

FAST = imb.Timings(provision=0.01, install=0.01, remove=0.01, machine_remove=0.01)


@pytest.fixture
def short_dir() -> collections.abc.Iterator[pathlib.Path]:
    # Unix socket paths must be short (108 bytes): pytest's tmp_path can be too long.
    with tempfile.TemporaryDirectory(prefix="ww-") as tmp:
        yield pathlib.Path(tmp)


@pytest.fixture(autouse=True)
def _restore_logging() -> collections.abc.Iterator[None]:
    yield
    logsetup.teardown_logging()


def _stderr_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "whirlwind: the following arguments are required: command"),
        (["run"], "whirlwind: the following arguments are required: --config"),
        (["dance"], "whirlwind: argument command: invalid choice: 'dance'"),
        (["ctl", "explode"], "whirlwind: argument request: invalid choice: 'explode'"),
        (["ctl", "history", "--limit", "x"], "whirlwind: argument --limit: invalid int value"),
        (["ctl", "history", "--limit", "0"], "whirlwind: --limit must be 1 or more"),
        (["ctl", "history", "--limit", "1001"], "whirlwind: --limit must be 1 or more and at"),
        (
            ["ctl", "history", "--service", "Bad_App"],
            "whirlwind: --service: 'Bad_App' is not one application name",
        ),
        (["ctl", "history", "--service", ""], "whirlwind: --service: '' is not one application"),
        (["ctl", "history", "--id", ""], "whirlwind: --id must not be empty"),
        (["ctl", "history", "--id"], "whirlwind: argument --id: expected one argument"),
        (
            ["ctl", "pause", "--duration", "soon"],
            "whirlwind: --duration: 'soon' is not a duration",
        ),
        (["ctl", "pause", "--duration", "0"], "whirlwind: --duration must be greater than 0"),
        (["ctl", "pause", "--duration", "40d"], "whirlwind: --duration must be at most 30 days"),
        (["ctl", "pause", "--reason", "x" * 201], "whirlwind: --reason must be at most 200"),
        (["ctl", "plan", "--all"], "whirlwind: unrecognized arguments: --all"),
        (
            ["ctl", "arm-chaos"],
            "whirlwind: the following arguments are required: --confirm, --duration",
        ),
        (
            ["ctl", "arm-chaos", "--confirm", "m"],
            "whirlwind: the following arguments are required",
        ),
        (
            ["ctl", "arm-chaos", "--confirm", "", "--duration", "1h"],
            "whirlwind: --confirm must be",
        ),
        (
            ["ctl", "arm-chaos", "--confirm", "m", "--duration", "25h"],
            "whirlwind: --duration must be at most 24h, got '25h'",
        ),
        (
            ["ctl", "arm-chaos", "--confirm", "m", "--duration", "0"],
            "whirlwind: --duration must be greater than 0, got '0'",
        ),
        (
            ["ctl", "arm-chaos", "--confirm", "m", "--duration", "soon"],
            "whirlwind: --duration: 'soon' is not a duration",
        ),
        (["ctl", "disarm-chaos", "--now"], "whirlwind: unrecognized arguments: --now"),
        (["ctl", "--timeout", "x", "status"], "whirlwind: argument --timeout: invalid float"),
        (["ctl", "--timeout", "0", "status"], "whirlwind: --timeout must be a number of seconds"),
        (["ctl", "--timeout", "-5", "status"], "whirlwind: --timeout must be a number of seconds"),
        (
            ["ctl", "--timeout", "nan", "status"],
            "whirlwind: --timeout must be a number of seconds",
        ),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli.main(argv) == cli.EXIT_USAGE
    assert _stderr_line(capsys).startswith(message)


def test_missing_config_gives_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    code = cli.main(["run", "--config", str(tmp_path / "nope.yaml")])

    assert code == cli.EXIT_USAGE
    assert _stderr_line(capsys) == (
        f"whirlwind: cannot read settings file {tmp_path / 'nope.yaml'}: No such file or directory"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("interval: [", "is not valid YAML at line 1"),
        ("{}", "whirlwind: controller: expected a mapping"),
        ("model-uuid: x\nbogus: 1\n", "whirlwind: unknown option 'bogus'"),
    ],
)
def test_invalid_config_gives_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path, content: str, message: str
) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text(content)

    assert cli.main(["run", "--config", str(config)]) == cli.EXIT_USAGE
    assert message in _stderr_line(capsys)


def test_invalid_value_names_the_option(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    settings = imb.make_settings(tmp_path)
    data = settings.to_dict()
    data["interval"] = 0
    config = tmp_path / "settings.yaml"
    config.write_text(json.dumps(data))

    assert cli.main(["run", "--config", str(config)]) == cli.EXIT_USAGE
    assert _stderr_line(capsys) == "whirlwind: interval must be greater than 0, got 0"


# -- ctl ---------------------------------------------------------------------------------


@dataclasses.dataclass
class StubHandler:
    """A control handler with canned answers that records what it was asked."""

    requests: list[control.ReplaceNowRequest] = dataclasses.field(default_factory=list)
    history_calls: list[tuple[int, str | None, str | None]] = dataclasses.field(
        default_factory=list
    )

    async def get_status(self) -> dict[str, Any]:
        return {"paused": False, "services": ["app"]}

    pause_calls: list[tuple[int | None, str]] = dataclasses.field(default_factory=list)

    async def pause(self, duration: int | None = None, reason: str = "") -> dict[str, Any]:
        self.pause_calls.append((duration, reason))
        return {"paused": True, "changed": True, "paused-since": "2026-01-01T00:00:00+00:00"}

    async def resume(self) -> dict[str, Any]:
        return {"paused": False, "changed": False, "paused-since": None}

    async def get_plan(self) -> dict[str, Any]:
        return {"targets": [], "message": "no targets (services is empty)"}

    async def get_history(
        self, limit: int, *, service: str | None = None, op_id: str | None = None
    ) -> list[dict[str, Any]]:
        self.history_calls.append((limit, service, op_id))
        if op_id == "gone":
            raise control.ControlError(control.UNKNOWN_OPERATION, "operation 'gone' not found")
        return [{"id": op_id or str(n)} for n in range(1 if op_id else limit)]

    armings: list[tuple[int, str, bool, str]] = dataclasses.field(default_factory=list)

    async def arm_chaos(
        self, duration: int, confirm: str, dry_run: bool = False, by: str = ""
    ) -> dict[str, Any]:
        self.armings.append((duration, confirm, dry_run, by))
        if confirm == "controller":
            raise control.ControlError(control.REFUSED, "this is the controller model")
        if confirm != "prod":
            raise control.ControlError(control.BAD_REQUEST, f"confirm: got {confirm!r}")
        return {"chaos-armed": True, "chaos-armed-until": "2026-01-01T02:00:00+00:00"}

    async def disarm_chaos(self) -> dict[str, Any]:
        return {"chaos-armed": False, "changed": True}

    async def replace_now(self, request: control.ReplaceNowRequest) -> dict[str, Any]:
        self.requests.append(request)
        if request.service == "busy":
            raise control.ControlError(control.BUSY, "replacement 3-abc of busy is in flight")
        return {"id": "1-x", "service": request.service, "old-unit": "app/0", "result": "started"}


@contextlib.contextmanager
def _serve(handler: StubHandler, path: pathlib.Path) -> collections.abc.Iterator[None]:
    loop = asyncio.new_event_loop()
    server = control.ControlServer(path, handler)
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(server.stop())
        loop.close()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status"], {"paused": False, "services": ["app"]}),
        (
            ["pause"],
            {"paused": True, "changed": True, "paused-since": "2026-01-01T00:00:00+00:00"},
        ),
        (["resume"], {"paused": False, "changed": False, "paused-since": None}),
        (["history", "--limit", "2"], [{"id": "0"}, {"id": "1"}]),
    ],
)
def test_ctl_prints_the_json_result(
    capsys: pytest.CaptureFixture[str], short_dir: pathlib.Path, argv: list[str], expected: Any
) -> None:
    socket_path = short_dir / "control.sock"
    with _serve(StubHandler(), socket_path):
        code = cli.main(["ctl", "--socket", str(socket_path), *argv])

    assert code == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out) == expected


def test_ctl_replace_now_passes_every_option(
    capsys: pytest.CaptureFixture[str], short_dir: pathlib.Path
) -> None:
    socket_path = short_dir / "control.sock"
    handler = StubHandler()
    argv = ["replace-now", "app", "--unit", "app/3", "--no-wait", "--dry-run"]
    with _serve(handler, socket_path):
        code = cli.main(["ctl", "--socket", str(socket_path), *argv])
        printed = capsys.readouterr().out
        plain = cli.main(["ctl", "--socket", str(socket_path), "replace-now", "app"])

    assert (code, plain) == (cli.EXIT_OK, cli.EXIT_OK)
    assert handler.requests == [
        control.ReplaceNowRequest("app", unit="app/3", wait=False, dry_run=True),
        control.ReplaceNowRequest("app", unit=None, wait=True, dry_run=None),
    ]
    assert json.loads(printed) == {
        "id": "1-x",
        "service": "app",
        "old-unit": "app/0",
        "result": "started",
    }


def test_ctl_history_passes_service_and_id(
    capsys: pytest.CaptureFixture[str], short_dir: pathlib.Path
) -> None:
    socket_path = short_dir / "control.sock"
    handler = StubHandler()
    ctl = ["ctl", "--socket", str(socket_path), "history"]
    with _serve(handler, socket_path):
        codes = [
            cli.main(ctl),
            cli.main([*ctl, "--service", "app", "--limit", "3"]),
            cli.main([*ctl, "--id", "7-abc"]),
            cli.main([*ctl, "--service", "app", "--id", "7-abc"]),
        ]
    printed = capsys.readouterr().out

    assert codes == [cli.EXIT_OK] * 4
    assert handler.history_calls == [
        (20, None, None),
        (3, "app", None),
        (20, None, "7-abc"),
        (20, "app", "7-abc"),
    ]
    assert printed.count('"id": "7-abc"') == 2


def test_ctl_pause_passes_duration_and_reason_and_plan_prints_json(
    capsys: pytest.CaptureFixture[str], short_dir: pathlib.Path
) -> None:
    socket_path = short_dir / "control.sock"
    handler = StubHandler()
    ctl = ["ctl", "--socket", str(socket_path)]
    with _serve(handler, socket_path):
        codes = [
            cli.main([*ctl, "pause"]),
            cli.main([*ctl, "pause", "--duration", "2h", "--reason", "release freeze"]),
            cli.main([*ctl, "pause", "--duration", "90"]),
            cli.main([*ctl, "plan"]),
        ]
    printed = capsys.readouterr().out

    assert codes == [cli.EXIT_OK] * 4
    assert handler.pause_calls == [(None, ""), (7200, "release freeze"), (90, "")]
    assert '"message": "no targets (services is empty)"' in printed


def test_ctl_history_of_an_unknown_operation_gives_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], short_dir: pathlib.Path
) -> None:
    socket_path = short_dir / "control.sock"
    with _serve(StubHandler(), socket_path):
        code = cli.main(["ctl", "--socket", str(socket_path), "history", "--id", "gone"])

    assert code == cli.EXIT_USAGE
    assert _stderr_line(capsys) == "whirlwind: unknown-operation: operation 'gone' not found"


def test_ctl_refusal_gives_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], short_dir: pathlib.Path
) -> None:
    socket_path = short_dir / "control.sock"
    with _serve(StubHandler(), socket_path):
        code = cli.main(["ctl", "--socket", str(socket_path), "replace-now", "busy"])

    assert code == cli.EXIT_FAILED
    assert _stderr_line(capsys) == "whirlwind: busy: replacement 3-abc of busy is in flight"


def test_ctl_unreachable_agent_gives_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], short_dir: pathlib.Path
) -> None:
    code = cli.main(["ctl", "--socket", str(short_dir / "none.sock"), "status"])

    assert code == cli.EXIT_FAILED
    assert _stderr_line(capsys) == (
        f"whirlwind: the agent is not running (no socket at {short_dir / 'none.sock'})"
    )


# -- run ---------------------------------------------------------------------------------


def _write_config(folder: pathlib.Path, **overrides: Any) -> pathlib.Path:
    values: dict[str, Any] = {
        "settle_period": 0,
        "settle_timeout": 5,
        "remove_timeout": 5,
        "state_dir": folder,
        "control_socket": folder / "control.sock",
    }
    values.update(overrides)
    settings = imb.make_settings(**values)
    config = folder / "settings.yaml"
    config.write_text(settings_mod.dump_settings(settings))
    return config


def test_run_once_replaces_one_unit_and_exits_0(
    capsys: pytest.CaptureFixture[str], short_dir: pathlib.Path
) -> None:
    config = _write_config(short_dir)
    backends: list[imb.InMemoryBackend] = []

    def factory(settings: settings_mod.AgentSettings) -> backend_mod.JujuBackend:
        backend = imb.InMemoryBackend(timings=FAST)
        backend.add_application("app", 2)
        backends.append(backend)
        return backend

    code = cli.main(["run", "--config", str(config), "--once"], backend_factory=factory)

    assert code == cli.EXIT_OK
    (backend,) = backends
    assert backend.get_live_units("app") == ["app/0", "app/2"]  # app/0 leads: it goes last
    assert backend.started is False  # stopped again
    journal = journal_mod.Journal(short_dir / journal_mod.JOURNAL_FILE)
    assert [op.result for op in journal.get_history(5)] == ["ok"]
    journal.close()
    assert (short_dir / journal_mod.JOURNAL_FILE).stat().st_mode & 0o777 == 0o600
    err = capsys.readouterr().err
    assert "whirlwind 0.1.0 starting" in err
    assert "effective settings:" in err
    assert "s3cret" not in err
    assert "BEGIN CERTIFICATE" not in err


def test_run_with_an_unusable_state_dir_exits_1_without_a_traceback(
    capsys: pytest.CaptureFixture[str], short_dir: pathlib.Path
) -> None:
    blocker = short_dir / "file"
    blocker.write_text("")
    config = _write_config(short_dir, state_dir=blocker / "state")

    code = cli.main(
        ["run", "--config", str(config), "--once"],
        backend_factory=lambda _: imb.InMemoryBackend(timings=FAST),
    )

    assert code == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert "cannot run the agent: cannot open journal" in err
    assert "Traceback" not in err


def test_run_once_with_nothing_to_do_exits_1(short_dir: pathlib.Path) -> None:
    config = _write_config(short_dir, services=("ghost",))

    code = cli.main(
        ["run", "--config", str(config), "--once"],
        backend_factory=lambda _: imb.InMemoryBackend(timings=FAST),
    )

    assert code == cli.EXIT_FAILED


def test_run_reloads_on_sighup_reconnects_on_a_new_password_and_stops_on_sigterm(
    short_dir: pathlib.Path,
) -> None:
    config = _write_config(short_dir)
    passwords: list[str] = []

    def factory(settings: settings_mod.AgentSettings) -> backend_mod.JujuBackend:
        passwords.append(settings.controller.password)
        loop = asyncio.get_running_loop()
        if len(passwords) == 1:
            # Operator changes the password and asks for a reload.
            new = settings_mod.parse_settings(
                {**settings.to_dict(), "controller": {
                    **settings.controller.to_dict(), "password": "rotated"
                }}
            )  # fmt: skip
            config.write_text(settings_mod.dump_settings(new))
            loop.call_later(0.05, os.kill, os.getpid(), signal.SIGHUP)
        else:
            loop.call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
        backend = imb.InMemoryBackend(timings=FAST)
        backend.add_application("app", 2)
        return backend

    code = cli.main(["run", "--config", str(config)], backend_factory=factory)

    assert code == cli.EXIT_OK
    assert passwords == ["s3cret", "rotated"]
    assert not (short_dir / "control.sock").exists()


def test_setup_logging_keeps_the_libjuju_connection_logger_above_debug() -> None:
    logsetup.setup_logging("DEBUG")

    conn = logsetup.logging.getLogger("juju.client.connection")
    assert conn.getEffectiveLevel() >= logsetup.logging.INFO
    assert logsetup.logging.getLogger().level == logsetup.logging.DEBUG


def test_ctl_arm_and_disarm_chaos(
    capsys: pytest.CaptureFixture[str], short_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli.getpass, "getuser", lambda: "root")
    socket_path = short_dir / "control.sock"
    handler = StubHandler()
    ctl = ["ctl", "--socket", str(socket_path)]
    with _serve(handler, socket_path):
        armed = cli.main([*ctl, "arm-chaos", "--confirm", "prod", "--duration", "2h", "--dry-run"])
        armed_out = json.loads(capsys.readouterr().out)
        disarmed = cli.main([*ctl, "disarm-chaos"])
        disarmed_out = json.loads(capsys.readouterr().out)
        wrong = cli.main([*ctl, "arm-chaos", "--confirm", "test", "--duration", "90m"])
        wrong_err = _stderr_line(capsys)
        refused = cli.main([*ctl, "arm-chaos", "--confirm", "controller", "--duration", "1h"])
        refused_err = _stderr_line(capsys)

    assert (armed, disarmed) == (cli.EXIT_OK, cli.EXIT_OK)
    assert armed_out == {"chaos-armed": True, "chaos-armed-until": "2026-01-01T02:00:00+00:00"}
    assert disarmed_out == {"chaos-armed": False, "changed": True}
    assert (wrong, wrong_err) == (cli.EXIT_USAGE, "whirlwind: bad-request: confirm: got 'test'")
    assert (refused, refused_err) == (
        cli.EXIT_FAILED, "whirlwind: refused: this is the controller model"
    )  # fmt: skip
    assert handler.armings == [
        (7200, "prod", True, "ctl as root"),
        (5400, "test", False, "ctl as root"),
        (3600, "controller", False, "ctl as root"),
    ]


def test_the_agent_forwards_chaos_to_its_engine(short_dir: pathlib.Path) -> None:
    settings = imb.make_settings(short_dir)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        backend = imb.InMemoryBackend(timings=FAST)
        await backend.start()
        await asyncio.sleep(1)  # the model's own information arrives
        journal = journal_mod.Journal(short_dir / journal_mod.JOURNAL_FILE, durable=False)
        agent = cli.Agent(short_dir / "settings.yaml", settings, lambda _: backend)
        engine = engine_mod.Engine(settings, backend, journal, now=imb.virtual_now)
        agent._proxy.engine = engine
        try:
            armed = await agent._proxy.arm_chaos(3600, "test", by="ctl as root")
            status = await agent._proxy.get_status()
            disarmed = await agent._proxy.disarm_chaos()
        finally:
            journal.close()
            await backend.stop()
        return armed, status, disarmed

    armed, status, disarmed = imb.run_virtual(scenario())

    until = "2026-01-01T01:00:01+00:00"
    assert (armed["chaos-armed"], armed["chaos-armed-until"]) == (True, until)
    assert (status["chaos-armed"], status["chaos-armed-until"]) == (True, until)
    assert status["chaos"] == "CHAOS ARMED until 01:00 UTC"
    assert (disarmed["chaos-armed"], disarmed["changed"]) == (False, True)

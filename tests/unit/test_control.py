"""The control API: JSON lines over a private unix socket, client and server together."""

from __future__ import annotations

import asyncio
import collections.abc
import json
import pathlib
import socket
import tempfile
from typing import Any

import pytest

from whirlwind import control


class Handler:
    """Answers every command; fails on purpose for some inputs."""

    def __init__(self) -> None:
        self.requests: list[control.ReplaceNowRequest] = []
        self.history_calls: list[tuple[int, dict[str, str | None]]] = []
        self.release = asyncio.Event()
        self.arrived = asyncio.Event()

    async def get_status(self) -> dict[str, Any]:
        return {"paused": False}

    async def pause(self, duration: int | None = None, reason: str = "") -> dict[str, Any]:
        return {"paused": True, "changed": True, "paused-since": None, "until": duration,
                "reason": reason}  # fmt: skip

    async def get_plan(self) -> dict[str, Any]:
        return {"targets": [], "message": "none"}

    async def resume(self) -> dict[str, Any]:
        raise RuntimeError("kaput")

    async def get_history(self, limit: int, **filters: str | None) -> list[dict[str, Any]]:
        self.history_calls.append((limit, filters))
        if limit == 13:
            raise ValueError("unlucky")
        if filters.get("op_id") == "gone":
            raise control.ControlError(control.UNKNOWN_OPERATION, "operation 'gone' not found")
        return [{"id": str(n), **filters} for n in range(limit)]

    async def replace_now(self, request: control.ReplaceNowRequest) -> dict[str, Any]:
        self.requests.append(request)
        if request.service == "mine":
            raise control.ControlError(control.REFUSED, "Whirlwind never replaces its own units")
        if request.service == "slow":
            self.arrived.set()
            await self.release.wait()
        return {"id": "1-a", "service": request.service, "old-unit": "x/0", "result": "started"}


@pytest.fixture
def socket_path() -> collections.abc.Iterator[pathlib.Path]:
    with tempfile.TemporaryDirectory(prefix="ww-") as tmp:
        yield pathlib.Path(tmp) / "run" / "control.sock"


def _mode(path: pathlib.Path) -> int | None:
    return path.stat().st_mode & 0o777 if path.exists() else None


async def _call(path: pathlib.Path, command: str, **args: Any) -> Any:
    client = control.ControlClient(path, timeout=5)
    return await asyncio.to_thread(client.call, command, **args)


async def test_round_trip_of_every_command(socket_path: pathlib.Path) -> None:
    handler = Handler()
    server = control.ControlServer(socket_path, handler)
    await server.start()
    try:
        status = await _call(socket_path, "status")
        paused = await _call(socket_path, "pause")
        history = await _call(socket_path, "history", limit=2)
        started = await _call(socket_path, "replace-now", service="app", unit="app/1", wait=False)
        folder_mode = _mode(socket_path.parent)
    finally:
        await server.stop()

    assert folder_mode == 0o700
    assert status == {"paused": False}
    assert paused == {
        "paused": True, "changed": True, "paused-since": None, "until": None, "reason": ""
    }  # fmt: skip
    assert history == [{"id": "0"}, {"id": "1"}]
    assert started["result"] == "started"
    assert handler.requests == [control.ReplaceNowRequest("app", unit="app/1", wait=False)]
    assert _mode(socket_path) is None  # removed on stop


async def test_pause_arguments_and_plan(socket_path: pathlib.Path) -> None:
    server = control.ControlServer(socket_path, Handler())
    await server.start()
    try:
        timed = await _call(socket_path, "pause", duration=600, reason="  freeze ")
        plan = await _call(socket_path, "plan")
        errors = []
        for args in ({"duration": 0}, {"duration": "1h"}, {"reason": 7}, {"duration": True}):
            with pytest.raises(control.ControlError) as error:
                await _call(socket_path, "pause", **args)
            errors.append((error.value.code, error.value.message))
    finally:
        await server.stop()

    assert (timed["until"], timed["reason"]) == (600, "freeze")
    assert plan == {"targets": [], "message": "none"}
    assert errors == [
        (control.BAD_REQUEST, "duration must be greater than 0, got 0"),
        (control.BAD_REQUEST, "duration must be greater than 0, got '1h'"),
        (control.BAD_REQUEST, "reason must be text"),
        (control.BAD_REQUEST, "duration must be greater than 0, got True"),
    ]


def _make_stale(path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("stale")


async def test_socket_is_private_and_a_stale_one_is_replaced(socket_path: pathlib.Path) -> None:
    _make_stale(socket_path)
    server = control.ControlServer(socket_path, Handler())

    await server.start()
    try:
        mode = _mode(socket_path)
        status = await _call(socket_path, "status")
    finally:
        await server.stop()

    assert mode == 0o600
    assert status == {"paused": False}


@pytest.mark.parametrize(
    ("command", "args", "code", "message"),
    [
        ("dance", {}, control.BAD_REQUEST, "unknown command 'dance'"),
        ("history", {"limit": 0}, control.BAD_REQUEST, "limit must be a whole number"),
        ("history", {"limit": True}, control.BAD_REQUEST, "limit must be a whole number"),
        ("replace-now", {}, control.BAD_REQUEST, "service is required"),
        ("replace-now", {"service": "a", "unit": 3}, control.BAD_REQUEST, "unit must be"),
        ("replace-now", {"service": "a", "wait": "yes"}, control.BAD_REQUEST, "wait and dry-run"),
        ("replace-now", {"service": "mine"}, control.REFUSED, "never replaces its own units"),
        ("resume", {}, control.INTERNAL, "internal error: kaput"),
        ("history", {"limit": 13}, control.INTERNAL, "internal error: unlucky"),
        ("history", {"limit": 1001}, control.BAD_REQUEST, "limit must be a whole number from 1"),
        ("history", {"limit": "5"}, control.BAD_REQUEST, "limit must be a whole number"),
        ("history", {"limit": 10**30}, control.BAD_REQUEST, "limit must be a whole number"),
        ("history", {"service": "Bad_App"}, control.BAD_REQUEST, "service must be one app"),
        ("history", {"service": "a b"}, control.BAD_REQUEST, "service must be one application"),
        ("history", {"service": ""}, control.BAD_REQUEST, "service must be one application"),
        ("history", {"service": 3}, control.BAD_REQUEST, "service must be one application"),
        ("history", {"id": ""}, control.BAD_REQUEST, "id must be an operation id"),
        ("history", {"id": 7}, control.BAD_REQUEST, "id must be an operation id"),
        ("history", {"id": "gone"}, control.UNKNOWN_OPERATION, "operation 'gone' not found"),
        ("x" * 500, {}, control.BAD_REQUEST, "more characters)"),
    ],
)
async def test_errors_carry_a_code_and_a_message(
    socket_path: pathlib.Path, command: str, args: dict[str, Any], code: str, message: str
) -> None:
    server = control.ControlServer(socket_path, Handler())
    await server.start()
    try:
        with pytest.raises(control.ControlError) as error:
            await _call(socket_path, command, **args)
    finally:
        await server.stop()

    assert error.value.code == code
    assert message in error.value.message


async def test_history_filters_reach_the_handler_only_when_given(
    socket_path: pathlib.Path,
) -> None:
    handler = Handler()
    server = control.ControlServer(socket_path, handler)
    await server.start()
    client = control.ControlClient(socket_path, timeout=5)
    try:
        default = await _call(socket_path, "history")
        plain = await asyncio.to_thread(client.history, 1)
        of_app = await asyncio.to_thread(client.history, 2, service="app")
        one = await asyncio.to_thread(client.history, 1000, service="app", op_id="3-abc")
    finally:
        await server.stop()

    assert len(default) == control.DEFAULT_HISTORY
    assert plain == [{"id": "0"}]
    assert of_app == [{"id": "0", "service": "app"}, {"id": "1", "service": "app"}]
    assert one[0] == {"id": "0", "service": "app", "op_id": "3-abc"}
    # Without filters the handler is called as before `service` and `id` existed.
    assert handler.history_calls == [
        (20, {}),
        (1, {}),
        (2, {"service": "app"}),
        (1000, {"service": "app", "op_id": "3-abc"}),
    ]


async def test_an_old_client_sending_only_limit_still_works(socket_path: pathlib.Path) -> None:
    server = control.ControlServer(socket_path, Handler())
    await server.start()
    try:
        request = b'{"command": "history", "args": {"limit": 2}}\n'
        reply = await asyncio.to_thread(_send_raw, socket_path, request)
    finally:
        await server.stop()

    assert json.loads(reply) == {"ok": True, "result": [{"id": "0"}, {"id": "1"}]}


def _send_raw(path: pathlib.Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(data)
        return sock.recv(65536)


@pytest.mark.parametrize(
    "garbage",
    [b"not json\n", b"\xff\xfe\n", b"[" * 60000 + b"\n", b"1" * 5000 + b"\n"],
    ids=["text", "not-utf-8", "nested-too-deep", "huge-number"],
)
async def test_garbage_gets_a_bad_request_answer_and_no_traceback(
    socket_path: pathlib.Path, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    server = control.ControlServer(socket_path, Handler())
    await server.start()
    try:
        reply = await asyncio.to_thread(_send_raw, socket_path, garbage)
    finally:
        await server.stop()

    assert json.loads(reply) == {
        "ok": False,
        "code": control.BAD_REQUEST,
        "error": "request is not valid JSON",
    }
    assert not [record for record in caplog.records if record.exc_info]


async def test_stop_lets_a_waiting_client_have_its_answer(socket_path: pathlib.Path) -> None:
    handler = Handler()
    server = control.ControlServer(socket_path, handler)
    await server.start()
    waiting = asyncio.ensure_future(_call(socket_path, "replace-now", service="slow"))
    try:
        await asyncio.wait_for(handler.arrived.wait(), 5)
        await server.stop()
        handler.release.set()
        answer = await asyncio.wait_for(waiting, 5)
    finally:
        handler.release.set()
        await server.stop()

    assert answer["service"] == "slow"
    assert _mode(socket_path) is None


async def test_client_says_when_the_agent_closes_without_an_answer(
    socket_path: pathlib.Path,
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        await writer.wait_closed()

    socket_path.parent.mkdir()
    server = await asyncio.start_unix_server(hang_up, path=str(socket_path))
    try:
        with pytest.raises(control.AgentUnavailableError, match="closed the connection"):
            await _call(socket_path, "status")
    finally:
        server.close()
        await server.wait_closed()


def test_shorten_says_how_much_was_left_out() -> None:
    assert control.shorten("abc", 5) == "abc"
    assert control.shorten("abcdefgh", 5) == "abcde... (3 more characters)"


def test_client_says_when_the_agent_is_not_running(socket_path: pathlib.Path) -> None:
    client = control.ControlClient(socket_path)

    with pytest.raises(control.AgentUnavailableError, match="the agent is not running"):
        client.status()


class ChaosHandler(Handler):
    """Also arms chaos: records what arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.armings: list[dict[str, Any]] = []

    async def arm_chaos(
        self, duration: int, confirm: str, dry_run: bool = False, by: str = ""
    ) -> dict[str, Any]:
        self.armings.append({"duration": duration, "confirm": confirm, "dry_run": dry_run,
                             "by": by})  # fmt: skip
        if confirm != "prod":
            raise control.ControlError(control.BAD_REQUEST, f"confirm: got {confirm!r}")
        return {"chaos-armed": True, "changed": True}

    async def disarm_chaos(self) -> dict[str, Any]:
        return {"chaos-armed": False, "changed": True}


async def test_arm_and_disarm_chaos(socket_path: pathlib.Path) -> None:
    handler = ChaosHandler()
    server = control.ControlServer(socket_path, handler)
    await server.start()
    try:
        client = control.ControlClient(socket_path, timeout=5)
        armed = await asyncio.to_thread(client.arm_chaos, 7200, "prod", True, "ctl as root")
        by_text = await _call(socket_path, "arm-chaos", confirm="prod", duration="90m")
        disarmed = await asyncio.to_thread(client.disarm_chaos)
        with pytest.raises(control.ControlError) as wrong:
            await asyncio.to_thread(client.arm_chaos, 60, "test")
    finally:
        await server.stop()

    assert armed == by_text == {"chaos-armed": True, "changed": True}
    assert disarmed == {"chaos-armed": False, "changed": True}
    assert (wrong.value.code, wrong.value.message) == (control.BAD_REQUEST, "confirm: got 'test'")
    assert handler.armings == [
        {"duration": 7200, "confirm": "prod", "dry_run": True, "by": "ctl as root"},
        {"duration": 5400, "confirm": "prod", "dry_run": False, "by": ""},
        {"duration": 60, "confirm": "test", "dry_run": False, "by": ""},
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"duration": 60}, "confirm is required: the model's name, exactly"),
        ({"confirm": "", "duration": 60}, "confirm is required"),
        ({"confirm": 7, "duration": 60}, "confirm is required"),
        ({"confirm": "prod"}, "duration is required (for example 2h; at most 24h)"),
        ({"confirm": "prod", "duration": 0}, "duration must be greater than 0, got 0"),
        ({"confirm": "prod", "duration": 86401}, "duration must be at most 24h, got 86401"),
        ({"confirm": "prod", "duration": "2 days"}, "duration: '2 days' is not a duration"),
        ({"confirm": "prod", "duration": 60, "dry-run": "yes"}, "dry-run must be true or false"),
        ({"confirm": "prod", "duration": 60, "by": "x" * 201}, "by must be at most 200"),
    ],
)
async def test_bad_arm_chaos_requests_never_reach_the_handler(
    socket_path: pathlib.Path, args: dict[str, Any], message: str
) -> None:
    handler = ChaosHandler()
    server = control.ControlServer(socket_path, handler)
    await server.start()
    try:
        with pytest.raises(control.ControlError) as refused:
            await _call(socket_path, "arm-chaos", **args)
    finally:
        await server.stop()

    assert refused.value.code == control.BAD_REQUEST
    assert message in refused.value.message
    assert handler.armings == []


@pytest.mark.parametrize("command", ["arm-chaos", "disarm-chaos"])
async def test_a_handler_without_chaos_says_so(socket_path: pathlib.Path, command: str) -> None:
    server = control.ControlServer(socket_path, Handler())
    await server.start()
    try:
        with pytest.raises(control.ControlError) as refused:
            await _call(socket_path, command, confirm="prod", duration=60)
    finally:
        await server.stop()

    assert refused.value.code == control.NOT_IMPLEMENTED
    assert refused.value.message == f"{command} is not supported by this agent"

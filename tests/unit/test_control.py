"""The control API: JSON lines over a private unix socket, client and server together."""

from __future__ import annotations

import asyncio
import collections.abc
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

    async def get_status(self) -> dict[str, Any]:
        return {"paused": False}

    async def pause(self) -> dict[str, Any]:
        return {"paused": True, "changed": True, "paused-since": None}

    async def resume(self) -> dict[str, Any]:
        raise RuntimeError("kaput")

    async def get_history(self, limit: int) -> list[dict[str, Any]]:
        return [{"id": str(n)} for n in range(limit)]

    async def replace_now(self, request: control.ReplaceNowRequest) -> dict[str, Any]:
        self.requests.append(request)
        if request.service == "mine":
            raise control.ControlError(control.REFUSED, "Whirlwind never replaces its own units")
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
    assert paused == {"paused": True, "changed": True, "paused-since": None}
    assert history == [{"id": "0"}, {"id": "1"}]
    assert started["result"] == "started"
    assert handler.requests == [control.ReplaceNowRequest("app", unit="app/1", wait=False)]
    assert _mode(socket_path) is None  # removed on stop


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


async def test_garbage_gets_a_bad_request_answer(socket_path: pathlib.Path) -> None:
    server = control.ControlServer(socket_path, Handler())
    await server.start()

    def send_garbage() -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(socket_path))
            sock.sendall(b"not json\n")
            return sock.recv(65536)

    try:
        reply = await asyncio.to_thread(send_garbage)
    finally:
        await server.stop()

    assert b'"code": "bad-request"' in reply


def test_client_says_when_the_agent_is_not_running(socket_path: pathlib.Path) -> None:
    client = control.ControlClient(socket_path)

    with pytest.raises(control.AgentUnavailableError, match="the agent is not running"):
        client.status()

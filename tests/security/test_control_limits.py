"""Control socket limits: idle clients, a client cap, long lines, accept errors, log size.

Each test stands for one finding of the security review and fails on the server before the fix
(no read timeout, no cap on connections, 1 MiB lines, asyncio's accept-error traceback, whole
arguments logged). Real unix sockets in a short temp dir, a fake handler, real asyncio.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import json
import logging
import os
import pathlib
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from whirlwind import control

# Bounded waits: long enough for a slow CI machine, never part of an assertion about speed.
WAIT = 10.0


class Handler:
    """Answers at once, except a replace-now with wait, which waits for `release`."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = 0

    async def get_status(self) -> dict[str, Any]:
        return {"paused": False}

    async def pause(self, duration: int | None = None, reason: str = "") -> dict[str, Any]:
        return {"paused": True, "changed": True}

    async def get_plan(self) -> dict[str, Any]:
        return {"targets": []}

    async def resume(self) -> dict[str, Any]:
        return {"paused": False, "changed": True}

    async def get_history(
        self, limit: int, *, service: str | None = None, op_id: str | None = None
    ) -> list[dict[str, Any]]:
        return []

    async def replace_now(self, request: control.ReplaceNowRequest) -> dict[str, Any]:
        if request.wait:
            self.waiting += 1
            try:
                await self.release.wait()
            finally:
                self.waiting -= 1
            return {"service": request.service, "result": "ok"}
        return {"service": request.service, "result": "started"}


@contextlib.asynccontextmanager
async def _serving(
    path: pathlib.Path, handler: Handler, **limits: Any
) -> collections.abc.AsyncIterator[control.ControlServer]:
    server = control.ControlServer(path, handler, **limits)
    await server.start()
    try:
        yield server
    finally:
        handler.release.set()
        await server.stop()


async def _call(path: pathlib.Path, command: str, **args: Any) -> Any:
    client = control.ControlClient(path, timeout=WAIT)
    return await asyncio.to_thread(client.call, command, **args)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _connect_idle(path: pathlib.Path, count: int) -> list[socket.socket]:
    """`count` connected clients that never send anything."""
    clients: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            clients.append(sock)
            sock.settimeout(WAIT)
            sock.connect(str(path))
    except BaseException:  # close what was opened, then fail as it was
        for sock in clients:
            sock.close()
        raise
    return clients


def _exchange(path: pathlib.Path, data: bytes, *, keep_open: bool = True) -> bytes:
    """Send raw bytes (no newline added) and read what comes back until the agent closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(WAIT)
        sock.connect(str(path))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        if not keep_open:
            sock.shutdown(socket.SHUT_WR)
        return _read_all(sock)


def _read_all(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def _eventually(condition: collections.abc.Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


# -- 1. idle connections: read timeout and client cap -------------------------------------


async def test_idle_connections_neither_pile_up_descriptors_nor_block_status(
    socket_path: pathlib.Path,
) -> None:
    # Finding: 1,100 idle connections exhausted the agent's descriptors. 100 are enough here.
    idle_count = 100
    async with _serving(socket_path, Handler()):
        before = _open_fds()
        idle = await asyncio.to_thread(_connect_idle, socket_path, idle_count)
        try:
            # Queued behind all idle ones: once it is answered, every one has been accepted.
            status = await _call(socket_path, "status")

            def server_fds() -> int:
                return _open_fds() - before - idle_count

            settled = await _eventually(lambda: server_fds() <= control.MAX_CLIENTS)
            held = server_fds()
        finally:
            for sock in idle:
                sock.close()

    assert status == {"paused": False}
    assert settled, f"the server holds {held} descriptors for {idle_count} idle clients"


async def test_an_idle_client_is_dropped_after_the_read_timeout(
    socket_path: pathlib.Path,
) -> None:
    handler = Handler()
    async with _serving(socket_path, handler, read_timeout=0.2) as server:
        # Says nothing: gets one line and the connection closes (no wait for a request).
        reply = await asyncio.to_thread(_exchange, socket_path, b"")
        # A replace-now that waits longer than the read timeout still gets its answer.
        waiting = asyncio.ensure_future(_call(socket_path, "replace-now", service="app"))
        assert await _eventually(lambda: handler.waiting == 1)
        await asyncio.sleep(0.5)  # well past the read timeout
        handler.release.set()
        answer = await waiting
        all_gone = await _eventually(lambda: server.client_count == 0)

    assert json.loads(reply) == {
        "ok": False,
        "code": control.BAD_REQUEST,
        "error": "no request line within 0.2s",
    }
    assert answer == {"service": "app", "result": "ok"}
    assert all_gone


async def test_beyond_the_cap_a_new_client_gets_busy_and_idle_ones_make_room(
    socket_path: pathlib.Path,
) -> None:
    handler = Handler()
    async with _serving(socket_path, handler, max_clients=3) as server:
        waits = [
            asyncio.ensure_future(_call(socket_path, "replace-now", service=f"app{n}"))
            for n in range(3)
        ]
        assert await _eventually(lambda: handler.waiting == 3)
        # Every place is taken by a client waiting for its answer: busy, at once.
        with pytest.raises(control.ControlError) as busy:
            await _call(socket_path, "status")
        handler.release.set()
        answers = await asyncio.gather(*waits)
        # Places held by clients that say nothing are given to one that asks.
        idle = await asyncio.to_thread(_connect_idle, socket_path, 3)
        try:
            assert await _eventually(lambda: server.client_count == 3)
            status = await _call(socket_path, "status")
            dropped = await asyncio.to_thread(_read_all, idle[0])
        finally:
            for sock in idle:
                sock.close()

    assert busy.value.code == control.BUSY
    assert "3 control clients already" in busy.value.message
    assert [answer["result"] for answer in answers] == ["ok", "ok", "ok"]
    assert status == {"paused": False}
    assert json.loads(dropped)["code"] == control.BUSY


# -- 2. request line limit ----------------------------------------------------------------


async def test_a_line_over_64_kib_gets_bad_request_and_the_server_stays_usable(
    socket_path: pathlib.Path,
) -> None:
    padded = json.dumps({"command": "status", "args": {"pad": "x" * 100 * 1024}}).encode()
    async with _serving(socket_path, Handler()):
        too_long = await asyncio.to_thread(_exchange, socket_path, padded + b"\n")
        # No newline and the client stays: refused once the limit is read, not buffered on.
        endless = await asyncio.to_thread(_exchange, socket_path, b"y" * 200 * 1024)
        status = await _call(socket_path, "status")

    expected = {
        "ok": False,
        "code": control.BAD_REQUEST,
        "error": f"request line longer than {64 * 1024} bytes",
    }
    assert json.loads(too_long) == expected
    assert json.loads(endless) == expected
    assert status == {"paused": False}


# -- 3. accept errors ---------------------------------------------------------------------

_SERVER_SCRIPT = """
import asyncio, json, logging, os, pathlib, resource, sys
from whirlwind import control

records = []

class Collect(logging.Handler):
    def emit(self, record):
        records.append(record)

class Handler:
    async def get_status(self):
        return {}

async def main(path):
    logging.getLogger().addHandler(Collect())
    logging.getLogger().setLevel(logging.DEBUG)
    server = control.ControlServer(pathlib.Path(path), Handler())
    await server.start()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Room for 4 more descriptors: the fifth client finds the agent out of them (EMFILE).
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 4, hard))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    await server.stop()
    print(json.dumps({
        "tracebacks": sum(1 for r in records if r.exc_info),
        "warnings": [r.getMessage() for r in records if r.levelno >= logging.WARNING],
        "lines": len(records),
    }), flush=True)

asyncio.run(main(sys.argv[1]))
"""


def test_out_of_descriptors_neither_spins_nor_logs_a_traceback_per_attempt(
    socket_path: pathlib.Path,
) -> None:
    # In a child process: its descriptor limit is lowered, not this test run's.
    src = pathlib.Path(control.__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": str(src)}
    with subprocess.Popen(
        [sys.executable, "-c", _SERVER_SCRIPT, str(socket_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        clients: list[socket.socket] = []
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            clients = _connect_idle(socket_path, 12)
            time.sleep(1.0)  # the agent keeps failing to accept for a while
        finally:
            for sock in clients:
                sock.close()
            out, err = child.communicate("stop\n", timeout=WAIT * 3)

    assert child.returncode == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["tracebacks"] == 0
    assert "Traceback" not in err
    assert summary["warnings"] == [
        "control socket cannot accept connections: [Errno 24] Too many open files"
    ]
    assert summary["lines"] < 100  # backs off instead of retrying in a tight loop


# -- 4. log size --------------------------------------------------------------------------


async def test_long_arguments_are_logged_truncated(
    socket_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="whirlwind.control")
    service = "s" * 5000
    async with _serving(socket_path, Handler()):
        reply = await _call(socket_path, "replace-now", service=service, wait=False)

    (line,) = [r.getMessage() for r in caplog.records if "control request" in r.getMessage()]
    assert reply == {"service": service, "result": "started"}
    assert len(line) < 300
    assert line.startswith('control request: replace-now {"service": "sss')
    assert line.endswith("more characters)")

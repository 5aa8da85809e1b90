"""Admin HTTP JSON API of the fake controller: GET /state, GET /calls, POST /fault."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakejuju import server as server_mod

log = logging.getLogger(__name__)

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


class BadFaultError(ValueError):
    """A /fault body the fake cannot apply (HTTP 400)."""


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise BadFaultError(f"{body.get('fault')}: {key!r} must be a non-empty string")
    return value


def _number(body: dict[str, Any], key: str, default: float | None = None) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadFaultError(f"{body.get('fault')}: {key!r} must be a number")
    return float(value)


async def apply_fault(ctl: server_mod.FakeJujuController, body: Any) -> dict[str, Any]:
    """Apply one POST /fault body; raise BadFaultError for a bad one."""
    if not isinstance(body, dict) or not isinstance(body.get("fault"), str):
        raise BadFaultError('body must be a JSON object with a "fault" string')
    fault = body["fault"]
    try:
        if fault == "fail-new-units":
            ctl.fail_new_units(_text(body, "application"), _text(body, "mode"))
        elif fault == "lose-unit":
            ctl.lose_unit(_text(body, "unit"), bool(body.get("lost", True)))
        elif fault == "machine-down":
            ctl.machine_down(_text(body, "machine"), bool(body.get("down", True)))
        elif fault == "stuck-dying":
            ctl.stuck_dying(_text(body, "unit"))
        elif fault == "error-unit":
            hook = body.get("hook", "update-status")
            if not isinstance(hook, str):
                raise BadFaultError("error-unit: 'hook' must be a string")
            ctl.error_unit(_text(body, "unit"), hook)
        elif fault == "resolve-unit":
            ctl.resolve_unit(_text(body, "unit"))
        elif fault == "remove-unit":
            ctl.remove_unit(_text(body, "unit"))
        elif fault == "leader":
            ctl.set_leader(_text(body, "unit"))
        elif fault == "drop-connections":
            mode = body.get("mode", "abrupt")
            if not isinstance(mode, str):
                raise BadFaultError("drop-connections: 'mode' must be abrupt or clean")
            return {"dropped": await ctl.drop_connections(mode)}
        elif fault == "outage":
            await ctl.outage(_number(body, "seconds"))
        elif fault == "call-error":
            count = body.get("count", 1)
            if isinstance(count, bool) or not isinstance(count, int):
                raise BadFaultError("call-error: 'count' must be an integer")
            ctl.call_error(
                _text(body, "facade"),
                _text(body, "method"),
                count,
                str(body.get("message", "fake failure")),
                str(body.get("code", "")),
            )
        elif fault == "latency":
            ctl.set_latency(
                _number(body, "seconds"),
                str(body.get("facade", "*")),
                str(body.get("method", "*")),
            )
        elif fault == "delta-lag":
            low = _number(body, "min")
            ctl.set_delta_lag(low, _number(body, "max", low))
        elif fault == "add-machine":
            return {"machine": ctl.add_machine()}
        elif fault == "allow-exec":
            allow = body.get("allow", True)
            if not isinstance(allow, bool):
                raise BadFaultError("allow-exec: 'allow' must be true or false")
            ctl.set_allow_exec(allow)
        elif fault == "exec":
            ctl.exec_fault(_text(body, "unit"), _text(body, "mode"))
        elif fault == "clear":
            await ctl.clear_faults()
        else:
            raise BadFaultError(f"unknown fault {fault!r}")
    except ValueError as exc:
        raise BadFaultError(str(exc)) from None
    return {"ok": True}


class AdminServer:
    """A tiny HTTP/1.1 server (one request per connection) on 127.0.0.1."""

    def __init__(self, ctl: server_mod.FakeJujuController) -> None:
        self._ctl = ctl
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Return the base URL."""
        return f"http://{self._ctl.host}:{self.port}"

    async def start(self) -> None:
        """Start listening on an ephemeral port."""
        self._server = await asyncio.start_server(self._handle, self._ctl.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, payload = await asyncio.wait_for(self._respond(reader), 10.0)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
            status, payload = 400, {"error": "malformed request"}
        body = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode() + body)
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        request_line = (await reader.readline()).decode("latin-1").strip()
        parts = request_line.split()
        if len(parts) != 3:
            return 400, {"error": "malformed request line"}
        method, path = parts[0], parts[1].split("?", 1)[0]
        length = 0
        while True:
            line = (await reader.readline()).decode("latin-1").strip()
            if not line:
                break
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        raw = await reader.readexactly(length) if length else b""
        if path == "/state":
            return (200, self._ctl.state()) if method == "GET" else (405, {"error": "use GET"})
        if path == "/calls":
            if method != "GET":
                return 405, {"error": "use GET"}
            return 200, [call.to_json() for call in self._ctl.calls]
        if path == "/fault":
            if method != "POST":
                return 405, {"error": "use POST"}
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                return 400, {"error": "body is not JSON"}
            try:
                return 200, await apply_fault(self._ctl, body)
            except BadFaultError as exc:
                return 400, {"error": str(exc)}
        return 404, {"error": f"no such endpoint {path}"}

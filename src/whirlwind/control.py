"""Local control API: JSON lines over a root-only unix socket, used by actions and `ctl`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import pathlib
import socket
from typing import Any, Protocol

logger = logging.getLogger(__name__)

COMMANDS = ("status", "pause", "resume", "history", "replace-now")
MAX_MESSAGE = 1024 * 1024

# Error codes the server may answer with; the charm maps them to `event.fail` messages.
NOT_IMPLEMENTED = "not-implemented"
BAD_REQUEST = "bad-request"
UNKNOWN_SERVICE = "unknown-service"
UNKNOWN_UNIT = "unknown-unit"
PAUSED = "paused"
BUSY = "busy"
NOT_READY = "not-ready"
REFUSED = "refused"
INTERNAL = "internal"


class ControlError(Exception):
    """A request failed; `code` is machine-readable, `message` is for the operator."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AgentUnavailableError(Exception):
    """The agent's control socket cannot be reached (agent not running or not ready)."""


@dataclasses.dataclass(frozen=True)
class ReplaceNowRequest:
    """Parameters of a `replace-now` request."""

    service: str
    unit: str | None = None
    wait: bool = True
    dry_run: bool | None = None


class ControlHandler(Protocol):
    """What the agent's engine offers to the control server; results are kebab-case dicts."""

    async def get_status(self) -> dict[str, Any]:
        """Agent state: paused, dry-run, services, in-flight operation, next due time."""
        ...

    async def pause(self) -> dict[str, Any]:
        """Stop starting new work; say whether anything changed."""
        ...

    async def resume(self) -> dict[str, Any]:
        """Start new work again; say whether anything changed."""
        ...

    async def get_history(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` operations, newest first."""
        ...

    async def replace_now(self, request: ReplaceNowRequest) -> dict[str, Any]:
        """Start (and with `wait`, finish) one replacement; raise ControlError to refuse."""
        ...


def _parse_request(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    command = message.get("command")
    args = message.get("args") or {}
    if command not in COMMANDS:
        raise ControlError(BAD_REQUEST, f"unknown command {command!r}")
    if not isinstance(args, dict):
        raise ControlError(BAD_REQUEST, "args must be an object")
    return command, args


async def _dispatch(handler: ControlHandler, command: str, args: dict[str, Any]) -> Any:
    if command == "status":
        return await handler.get_status()
    if command == "pause":
        return await handler.pause()
    if command == "resume":
        return await handler.resume()
    if command == "history":
        limit = args.get("limit", 20)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ControlError(BAD_REQUEST, "limit must be a whole number of 1 or more")
        return await handler.get_history(limit)
    service = args.get("service")
    unit = args.get("unit")
    wait = args.get("wait", True)
    dry_run = args.get("dry-run")
    if not isinstance(service, str) or not service:
        raise ControlError(BAD_REQUEST, "service is required")
    if unit is not None and not isinstance(unit, str):
        raise ControlError(BAD_REQUEST, "unit must be a unit name such as app/3")
    if not isinstance(wait, bool) or not (dry_run is None or isinstance(dry_run, bool)):
        raise ControlError(BAD_REQUEST, "wait and dry-run must be true or false")
    request = ReplaceNowRequest(service=service, unit=unit or None, wait=wait, dry_run=dry_run)
    return await handler.replace_now(request)


class ControlServer:
    """Serves the control API on a unix socket only root (the owner) can open."""

    def __init__(self, path: pathlib.Path, handler: ControlHandler) -> None:
        self._path = path
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None

    @property
    def path(self) -> pathlib.Path:
        """Where the socket lives."""
        return self._path

    async def start(self) -> None:
        """Bind the socket (replacing a stale one) with mode 0600 in a 0700 folder."""
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._on_client, path=str(self._path), limit=MAX_MESSAGE
            )
        finally:
            os.umask(old_umask)
        os.chmod(self._path, 0o600)

    async def stop(self) -> None:
        """Stop accepting requests and remove the socket."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            reply = await self._answer(line)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            logger.debug("control client went away: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            message = json.loads(line)
            if not isinstance(message, dict):
                raise ControlError(BAD_REQUEST, "request must be a JSON object")
            command, args = _parse_request(message)
            # Queries come every few seconds (charm status, demos); changes are worth a line.
            level = logging.DEBUG if command in ("status", "history") else logging.INFO
            logger.log(level, "control request: %s %s", command, json.dumps(args, sort_keys=True))
            result = await _dispatch(self._handler, command, args)
        except json.JSONDecodeError:
            return {"ok": False, "code": BAD_REQUEST, "error": "request is not valid JSON"}
        except ControlError as exc:
            return {"ok": False, "code": exc.code, "error": exc.message}
        except Exception as exc:  # one bad request must not take the agent down
            logger.exception("control request failed")
            return {"ok": False, "code": INTERNAL, "error": f"internal error: {exc}"}
        return {"ok": True, "result": result}


class ControlClient:
    """Synchronous client for the control API (the charm's actions and `ctl` use it)."""

    def __init__(self, path: pathlib.Path, timeout: float = 10.0) -> None:
        self._path = path
        self._timeout = timeout

    def call(self, command: str, timeout: float | None = None, **args: Any) -> Any:
        """Send one request and return its result; raise ControlError or AgentUnavailableError."""
        payload = json.dumps({"command": command, "args": args}).encode() + b"\n"
        deadline = self._timeout if timeout is None else timeout
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(deadline)
                sock.connect(str(self._path))
                sock.sendall(payload)
                data = _read_line(sock)
        except FileNotFoundError:
            raise AgentUnavailableError(
                f"the agent is not running (no socket at {self._path})"
            ) from None
        except ConnectionRefusedError:
            raise AgentUnavailableError("the agent is not running (connection refused)") from None
        except PermissionError:
            raise AgentUnavailableError(
                f"no permission to open {self._path} (root only)"
            ) from None
        except TimeoutError:
            raise AgentUnavailableError(f"the agent did not answer within {deadline:g}s") from None
        except OSError as exc:
            raise AgentUnavailableError(f"cannot reach the agent: {exc}") from None
        try:
            reply = json.loads(data)
        except json.JSONDecodeError:
            raise AgentUnavailableError("the agent sent an unreadable reply") from None
        if not isinstance(reply, dict):
            raise AgentUnavailableError("the agent sent an unreadable reply")
        if reply.get("ok"):
            return reply.get("result")
        raise ControlError(str(reply.get("code", INTERNAL)), str(reply.get("error", "failed")))

    def status(self) -> dict[str, Any]:
        """The agent's status."""
        return self.call("status")

    def pause(self) -> dict[str, Any]:
        """Pause the agent."""
        return self.call("pause")

    def resume(self) -> dict[str, Any]:
        """Resume the agent."""
        return self.call("resume")

    def history(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest operations, newest first."""
        return self.call("history", limit=limit)

    def replace_now(self, request: ReplaceNowRequest, timeout: float | None = None) -> Any:
        """Ask for one replacement now; with `wait`, block until it has finished."""
        args: dict[str, Any] = {"service": request.service, "wait": request.wait}
        if request.unit is not None:
            args["unit"] = request.unit
        if request.dry_run is not None:
            args["dry-run"] = request.dry_run
        return self.call("replace-now", timeout=timeout, **args)


def _read_line(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n") or size > MAX_MESSAGE:
            break
    return b"".join(chunks)

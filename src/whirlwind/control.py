"""Local control API: JSON lines over a root-only unix socket, used by actions and `ctl`.

One request line in, one reply line out, then the connection closes. The server bounds what a
misbehaving local client can cost the agent:

- a client has `READ_TIMEOUT` seconds to send its request line (and to take its reply); the
  time the agent needs to answer (a `replace-now` that waits: minutes) is not limited;
- at most `MAX_CLIENTS` connections are served at once (each is one file descriptor). When all
  are taken, the client that has waited longest without sending its request is dropped to make
  room; when every one is waiting for an answer, a new connection gets one `busy` reply line
  and is closed at once;
- a request line may be `MAX_REQUEST` bytes long; a longer one gets a `bad-request` reply and is
  never buffered past the limit;
- request arguments are logged cut to `LOG_ARGS_MAX` characters;
- accept errors (out of file descriptors) back off up to `ACCEPT_RETRY_MAX` seconds; they and
  refused or dropped clients are a warning at most every `WARN_INTERVAL` seconds, and never
  a traceback.

The client clamps its timeout to `MAX_CLIENT_TIMEOUT` so that no derived timeout can overflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import logging
import os
import pathlib
import socket
from typing import Any, Protocol

from whirlwind import pausing, settings
from whirlwind.chaos import arming

logger = logging.getLogger(__name__)

COMMANDS = (
    "status", "pause", "resume", "history", "replace-now", "plan", "arm-chaos", "disarm-chaos"
)  # fmt: skip
# `history`: how many operations one request may ask for, and how many it gets by default.
MAX_HISTORY = 1000
DEFAULT_HISTORY = 20

# Server limits (see the module docstring).
READ_TIMEOUT = 10.0
# Waiting replace-now actions (one per in-flight replacement), the charm's status queries
# (one per hook) and a few operators' `ctl` calls fit easily; 32 descriptors are nothing.
MAX_CLIENTS = 32
MAX_REQUEST = 64 * 1024
LOG_ARGS_MAX = 200
LISTEN_BACKLOG = 100
ACCEPT_RETRY_MIN = 0.1
ACCEPT_RETRY_MAX = 5.0
# Trouble that can repeat per connection (accept errors, a full server) is a warning at most
# this often (seconds); the repeats in between are debug lines.
WARN_INTERVAL = 60.0
# Accept errors that mean "out of resources, try later" rather than one bad connection.
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# Client limits. The longest call is a waiting replace-now: the charm waits settle-timeout +
# remove-timeout + 300 s, and the settings cap each timeout at 7 days (interval at 30 days), so
# a legitimate wait is at most 14 days + 300 s. 15 days covers it, and is far inside what
# socket.settimeout accepts; anything longer (10**10, inf) is clamped, never an OverflowError.
MAX_CLIENT_TIMEOUT = 15 * 24 * 3600.0
MAX_REPLY = 1024 * 1024

# Error codes the server may answer with; the charm maps them to `event.fail` messages.
NOT_IMPLEMENTED = "not-implemented"
BAD_REQUEST = "bad-request"
UNKNOWN_SERVICE = "unknown-service"
UNKNOWN_UNIT = "unknown-unit"
UNKNOWN_OPERATION = "unknown-operation"
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

    async def pause(self, duration: int | None = None, reason: str = "") -> dict[str, Any]:
        """Stop starting new work (for `duration` seconds); say whether anything changed."""
        ...

    async def get_plan(self) -> dict[str, Any]:
        """What happens next for every target, from the planner; changes nothing."""
        ...

    async def resume(self) -> dict[str, Any]:
        """Start new work again; say whether anything changed."""
        ...

    async def get_history(
        self, limit: int, *, service: str | None = None, op_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest `limit` operations (of `service`), newest first; with `op_id` that one.

        An unknown `op_id` (or one of another service) raises ControlError UNKNOWN_OPERATION.
        """
        ...

    async def replace_now(self, request: ReplaceNowRequest) -> dict[str, Any]:
        """Start (and with `wait`, finish) one replacement; raise ControlError to refuse."""
        ...


class ChaosHandler(Protocol):
    """Arming failure injection; a handler without these answers `not-implemented`."""

    async def arm_chaos(
        self, duration: int, confirm: str, dry_run: bool = False, by: str = ""
    ) -> dict[str, Any]:
        """Arm for `duration` seconds if `confirm` is the model's name; raise ControlError."""
        ...

    async def disarm_chaos(self) -> dict[str, Any]:
        """End the arming now; say whether anything changed."""
        ...


def _parse_request(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    command = message.get("command")
    args = message.get("args") or {}
    if command not in COMMANDS:
        raise ControlError(BAD_REQUEST, f"unknown command {shorten(repr(command), 60)}")
    if not isinstance(args, dict):
        raise ControlError(BAD_REQUEST, "args must be an object")
    return command, args


async def _dispatch(handler: ControlHandler, command: str, args: dict[str, Any]) -> Any:
    if command == "status":
        return await handler.get_status()
    if command == "pause":
        duration, reason = args.get("duration"), args.get("reason", "")
        try:
            duration = None if duration is None else pausing.check_duration(duration)
            reason = pausing.check_reason(reason)
        except pausing.PauseError as exc:
            raise ControlError(BAD_REQUEST, str(exc)) from None
        if duration is None and not reason:
            return await handler.pause()  # as older agents and handlers know it
        return await handler.pause(duration=duration, reason=reason)
    if command == "plan":
        return await handler.get_plan()
    if command == "resume":
        return await handler.resume()
    if command == "history":
        return await _dispatch_history(handler, args)
    if command in ("arm-chaos", "disarm-chaos"):
        return await _dispatch_chaos(handler, command, args)
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


def is_application_name(value: object) -> bool:
    """Whether `value` is one valid application name (as `services` accepts it)."""
    if not isinstance(value, str):
        return False
    try:
        return settings.parse_services(value) == (value,)
    except settings.SettingsError:
        return False


async def _dispatch_chaos(handler: ControlHandler, command: str, args: dict[str, Any]) -> Any:
    # Optional in the protocol (ChaosHandler): handlers written before it keep working.
    method = getattr(handler, command.replace("-", "_"), None)
    if method is None:
        raise ControlError(NOT_IMPLEMENTED, f"{command} is not supported by this agent")
    if command == "disarm-chaos":
        return await method()
    confirm, dry_run = args.get("confirm"), args.get("dry-run", False)
    if not isinstance(confirm, str) or not confirm:
        raise ControlError(BAD_REQUEST, "confirm is required: the model's name, exactly")
    if not isinstance(dry_run, bool):
        raise ControlError(BAD_REQUEST, "dry-run must be true or false")
    try:
        duration = arming.check_duration(args.get("duration"))
        by = arming.check_by(args.get("by", ""))
    except arming.ArmingError as exc:
        raise ControlError(BAD_REQUEST, str(exc)) from None
    return await method(duration=duration, confirm=confirm, dry_run=dry_run, by=by)


async def _dispatch_history(handler: ControlHandler, args: dict[str, Any]) -> Any:
    limit = args.get("limit", DEFAULT_HISTORY)
    service = args.get("service")
    op_id = args.get("id")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY:
        raise ControlError(BAD_REQUEST, f"limit must be a whole number from 1 to {MAX_HISTORY}")
    if service is not None and not is_application_name(service):
        raise ControlError(BAD_REQUEST, "service must be one application name such as app-1")
    if op_id is not None and (not isinstance(op_id, str) or not op_id):
        raise ControlError(BAD_REQUEST, "id must be an operation id such as 12-a1b2c3")
    filters: dict[str, str] = {}
    if service is not None:
        filters["service"] = service
    if op_id is not None:
        filters["op_id"] = op_id
    # Without filters, exactly the call of the protocol before `service` and `id` existed.
    return await handler.get_history(limit, **filters)


def shorten(text: str, limit: int = LOG_ARGS_MAX) -> str:
    """`text` cut to `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def _encode(reply: dict[str, Any]) -> bytes:
    return json.dumps(reply).encode() + b"\n"


def _send_quietly(conn: socket.socket, data: bytes) -> None:
    """Best effort, never blocks: a short line fits the empty send buffer of a new socket."""
    with contextlib.suppress(OSError):
        conn.send(data)


class _RequestTooLongError(Exception):
    """The client sent more than the request limit without a newline."""


class ControlServer:
    """Serves the control API on a unix socket only root (the owner) can open."""

    def __init__(
        self,
        path: pathlib.Path,
        handler: ControlHandler,
        *,
        read_timeout: float = READ_TIMEOUT,
        max_clients: int = MAX_CLIENTS,
        max_request: int = MAX_REQUEST,
    ) -> None:
        self._path = path
        self._handler = handler
        self._read_timeout = read_timeout
        self._max_clients = max_clients
        self._max_request = max_request
        self._listener: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        # Every client task still running (asyncio keeps only weak references); those counted
        # against the cap; and those still reading their request, oldest first (the ones that
        # may be dropped to make room).
        self._tasks: set[asyncio.Task[None]] = set()
        self._clients: set[asyncio.Task[None]] = set()
        self._reading: dict[asyncio.Task[None], socket.socket] = {}
        self._warned_at: dict[str, float] = {}

    @property
    def path(self) -> pathlib.Path:
        """Where the socket lives."""
        return self._path

    @property
    def client_count(self) -> int:
        """How many connections are being served now."""
        return len(self._clients)

    async def start(self) -> None:
        """Bind the socket (replacing a stale one) with mode 0600 in a 0700 folder."""
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_umask = os.umask(0o177)
            try:
                listener.bind(str(self._path))
            finally:
                os.umask(old_umask)
            os.chmod(self._path, 0o600)
            listener.listen(LISTEN_BACKLOG)
            listener.setblocking(False)
        except BaseException:  # closed on any failure, then raised as it was
            listener.close()
            raise
        self._listener = listener
        self._accept_task = asyncio.ensure_future(self._accept_loop(listener))

    async def stop(self) -> None:
        """Stop accepting requests and remove the socket; answers being awaited still go out."""
        if self._accept_task is not None:
            self._accept_task.cancel()
            await asyncio.wait([self._accept_task])
            self._accept_task = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        # A client still sending its request has asked for nothing yet: drop it. One waiting for
        # an answer (replace-now with wait) keeps its connection until the answer is written.
        idle = list(self._reading)
        for task in idle:
            task.cancel()
        if idle:
            await asyncio.wait(idle, timeout=5)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except (ConnectionAbortedError, InterruptedError):
                continue  # that one connection is gone; the next may be fine
            except OSError as exc:
                # Out of descriptors (or worse): the socket stays readable, so wait, or this
                # loop would spin; a warning at most every WARN_INTERVAL, without a traceback.
                failures += 1
                delay = min(ACCEPT_RETRY_MAX, ACCEPT_RETRY_MIN * 2 ** min(failures - 1, 16))
                self._warn("accept", "control socket cannot accept connections: %s", exc)
                if exc.errno in _RESOURCE_ERRNOS and self._reading:
                    self._drop_oldest_idle("the agent is out of file descriptors")
                await asyncio.sleep(delay)
                continue
            failures = 0
            self._admit(conn)
            # Let the new client read its request before the next accept.
            await asyncio.sleep(0)

    def _admit(self, conn: socket.socket) -> None:
        if len(self._clients) >= self._max_clients:
            limit = f"the agent serves {self._max_clients} control clients already"
            if self._reading:
                self._warn("full", "%s: dropping the one idle longest", limit)
                self._drop_oldest_idle(limit)
            else:
                self._warn("full", "%s: refusing a new connection", limit)
                _send_quietly(conn, self._busy_line())
                conn.close()
                return
        task = asyncio.ensure_future(self._serve(conn))
        self._tasks.add(task)
        self._clients.add(task)
        self._reading[task] = conn
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._clients.discard(task)
        self._reading.pop(task, None)

    def _busy_line(self) -> bytes:
        return _encode(
            {
                "ok": False,
                "code": BUSY,
                "error": (
                    f"the agent serves {self._max_clients} control clients already; "
                    "try again shortly"
                ),
            }
        )

    def _warn(self, kind: str, message: str, *args: object) -> None:
        """A warning, unless one of this kind went out within WARN_INTERVAL; then debug."""
        now = asyncio.get_running_loop().time()
        last = self._warned_at.get(kind)
        if last is None or now - last >= WARN_INTERVAL:
            self._warned_at[kind] = now
            logger.warning(message, *args)
        else:
            logger.debug(message, *args)

    def _drop_oldest_idle(self, reason: str) -> None:
        """Make room: drop the client that has waited longest without sending its request."""
        task, conn = next(iter(self._reading.items()))
        del self._reading[task]
        self._clients.discard(task)
        error = f"{reason}; connection dropped: no request received"
        _send_quietly(conn, _encode({"ok": False, "code": BUSY, "error": error}))
        task.cancel()  # its own `finally` closes the socket once the loop is out of its read

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            try:
                line = await asyncio.wait_for(self._read_request(conn), self._read_timeout)
            except asyncio.TimeoutError:
                logger.debug("control client sent no request within %gs", self._read_timeout)
                error = f"no request line within {self._read_timeout:g}s"
                _send_quietly(conn, _encode({"ok": False, "code": BAD_REQUEST, "error": error}))
                return
            except _RequestTooLongError:
                logger.debug("control request longer than %d bytes refused", self._max_request)
                error = f"request line longer than {self._max_request} bytes"
                reply: dict[str, Any] = {"ok": False, "code": BAD_REQUEST, "error": error}
            else:
                self._stop_reading()
                if not line:
                    return  # connected and went away without a word
                # No timeout here: a replace-now with wait takes as long as the replacement.
                reply = await self._answer(line)
            self._stop_reading()
            await asyncio.wait_for(loop.sock_sendall(conn, _encode(reply)), self._read_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            logger.debug("control client went away: %r", exc)
        finally:
            conn.close()

    def _stop_reading(self) -> None:
        """The current client has its request: it can no longer be dropped to make room."""
        task = asyncio.current_task()
        if task is not None:
            self._reading.pop(task, None)

    async def _read_request(self, conn: socket.socket) -> bytes:
        """The first line (up to the limit), or what came before the client shut its side."""
        loop = asyncio.get_running_loop()
        data = bytearray()
        while True:
            chunk = await loop.sock_recv(conn, self._max_request + 1 - len(data))
            if not chunk:
                return bytes(data)
            end = chunk.find(b"\n")
            if end >= 0:
                data += chunk[: end + 1]  # anything after the first line is ignored
                return bytes(data)
            data += chunk
            if len(data) > self._max_request:
                raise _RequestTooLongError

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):  # not JSON or UTF-8, a huge number, nested too deep
            return {"ok": False, "code": BAD_REQUEST, "error": "request is not valid JSON"}
        try:
            if not isinstance(message, dict):
                raise ControlError(BAD_REQUEST, "request must be a JSON object")
            command, args = _parse_request(message)
            # Queries come every few seconds (charm status, demos); changes are worth a line.
            level = logging.DEBUG if command in ("status", "history") else logging.INFO
            logger.log(
                level, "control request: %s %s", command, shorten(json.dumps(args, sort_keys=True))
            )
            result = await _dispatch(self._handler, command, args)
        except ControlError as exc:
            return {"ok": False, "code": exc.code, "error": exc.message}
        except Exception as exc:  # one bad request must not take the agent down
            logger.exception("control request failed")
            return {"ok": False, "code": INTERNAL, "error": f"internal error: {shorten(str(exc))}"}
        return {"ok": True, "result": result}


def get_socket_timeout(timeout: float) -> float:
    """`timeout` clamped to MAX_CLIENT_TIMEOUT; ValueError unless it is more than 0 seconds."""
    if timeout > MAX_CLIENT_TIMEOUT:  # also infinity, and ints too big for a float
        return MAX_CLIENT_TIMEOUT
    if not timeout > 0:  # also NaN
        raise ValueError("it must be a number of seconds greater than 0")
    return float(timeout)


class ControlClient:
    """Synchronous client for the control API (the charm's actions and `ctl` use it)."""

    def __init__(self, path: pathlib.Path, timeout: float = 10.0) -> None:
        self._path = path
        self._timeout = timeout

    def call(self, command: str, timeout: float | None = None, **args: Any) -> Any:
        """Send one request and return its result; raise ControlError or AgentUnavailableError."""
        payload = json.dumps({"command": command, "args": args}).encode() + b"\n"
        wanted = self._timeout if timeout is None else timeout
        try:
            deadline = get_socket_timeout(wanted)
        except (OverflowError, ValueError, TypeError) as exc:
            raise AgentUnavailableError(
                f"unusable timeout {shorten(repr(wanted), 40)}: {exc}"
            ) from None
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(deadline)
                sock.connect(str(self._path))
                # Refused at once (busy, too long): its one-line reply is still readable.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
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
        except (OSError, OverflowError, ValueError) as exc:  # also a path socket refuses
            raise AgentUnavailableError(f"cannot reach the agent: {exc}") from None
        if not data:
            raise AgentUnavailableError("the agent closed the connection without an answer")
        try:
            reply = json.loads(data)
        except ValueError:  # not JSON, or not UTF-8
            raise AgentUnavailableError("the agent sent an unreadable reply") from None
        if not isinstance(reply, dict):
            raise AgentUnavailableError("the agent sent an unreadable reply")
        if reply.get("ok"):
            return reply.get("result")
        raise ControlError(str(reply.get("code", INTERNAL)), str(reply.get("error", "failed")))

    def status(self) -> dict[str, Any]:
        """The agent's status."""
        return self.call("status")

    def pause(self, duration: int | None = None, reason: str = "") -> dict[str, Any]:
        """Pause the agent (for `duration` seconds; None: until resumed)."""
        args: dict[str, Any] = {}
        if duration is not None:
            args["duration"] = duration
        if reason:
            args["reason"] = reason
        return self.call("pause", **args)

    def plan(self) -> dict[str, Any]:
        """What the agent will do next, for every target."""
        return self.call("plan")

    def resume(self) -> dict[str, Any]:
        """Resume the agent."""
        return self.call("resume")

    def history(
        self, limit: int = DEFAULT_HISTORY, *, service: str | None = None, op_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest operations (of `service`), newest first; with `op_id` just that one."""
        args: dict[str, Any] = {"limit": limit}
        if service is not None:
            args["service"] = service
        if op_id is not None:
            args["id"] = op_id
        return self.call("history", **args)

    def arm_chaos(
        self, duration: int, confirm: str, dry_run: bool = False, by: str = ""
    ) -> dict[str, Any]:
        """Arm failure injection for `duration` seconds; `confirm` is the model's name."""
        args = {"duration": duration, "confirm": confirm, "dry-run": dry_run, "by": by}
        return self.call("arm-chaos", **args)

    def disarm_chaos(self) -> dict[str, Any]:
        """End the arming now."""
        return self.call("disarm-chaos")

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
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # closed with our request unread: like an end of file
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n") or size > MAX_REPLY:
            break
    return b"".join(chunks)

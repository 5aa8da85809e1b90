"""JujuBackend on python-libjuju's low-level Connection: own reconnects, watcher and deadlines.

This is the only module that imports `juju` (and its `websockets`); the engine imports it
lazily because importing libjuju costs about 0.6 s. It deliberately avoids libjuju's
high-level `Model` (see JUJU_API.md): one `Connection` per session, raw `rpc` calls with
explicit facade versions, an AllWatcher loop feeding the bounded ModelView, periodic
`Client.FullStatus` polls, and a supervisor that re-dials every endpoint with jittered
exponential backoff.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import logging
import random
import ssl
from collections.abc import Mapping
from typing import Any

import tenacity
import websockets
import websockets.exceptions
from juju import errors as juju_errors
from juju.client import connection as juju_connection

from whirlwind import backend
from whirlwind import model as model_view
from whirlwind import settings as agent_settings

logger = logging.getLogger(__name__)

# At DEBUG these loggers print request frames, the Login password included: libjuju's
# connection logger every request, websockets every frame it sends or receives.
_FRAME_LOGGERS = (
    "juju.client.connection",
    "juju.client.connector",
    "websockets",
    "websockets.client",
    "websockets.protocol",
    "websockets.asyncio.client",
    "websockets.legacy",
    "websockets.legacy.protocol",
    "websockets.legacy.client",
)
# Juju controller certificates carry this name (besides addresses that may change): the
# certificate must chain to the configured CA and be issued for it.
CONTROLLER_CERT_NAME = "juju-apiserver"

# Facade versions this module speaks (JUJU_API.md); start-up fails clearly if one is missing.
REQUIRED_FACADES: Mapping[str, int] = {
    "Application": 20,
    "Client": 8,
    "AllWatcher": 3,
    "MachineManager": 10,
    "Annotations": 2,
    # Run/Actions, as `juju exec` and libjuju's Unit.run use them (failure injection only).
    "Action": 7,
}

# Error codes Juju really sends for conditions that clear up on their own (rpc/params
# apierror.go: CodeExcessiveContention, CodeUpgradeInProgress, CodeDeadlineExceeded,
# CodeNotYetAvailable, CodeTryAgain). They are retried, never a reason to roll back; codes
# Juju never sends to clients (retry, lease error) are not reasons for anything.
_TRANSIENT_CODES = frozenset(
    {
        "excessive contention",
        "upgrade in progress",
        "deadline exceeded",
        "not yet available; try again later",
        "try again",
    }
)
# A call that arrives while the connection closes (rpc.ErrShutdown): no code at all.
_TRANSIENT_MESSAGES = ("connection is shut down",)
_LOGIN_REFUSED_CODES = frozenset({"unauthorized access", "permission denied"})
_NOT_FOUND_CODES = frozenset({"not found", "model not found"})
# Many "no such entity" errors carry no code (DestroyUnit: `unit "app/9" does not exist`).
_NOT_FOUND_MESSAGES = ("not found", "does not exist")
# Final states of an action (rpc/params/actions.go; libjuju's Unit.run waits only for the
# first two and would wait for ever on the others).
_ACTION_FINAL = frozenset({"completed", "failed", "cancelled", "aborted", "error"})


@dataclasses.dataclass(frozen=True)
class BackendTimings:
    """Backoff and deadline parameters (seconds); the defaults suit production."""

    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    backoff_multiplier: float = 2.0
    # Each delay is scaled by uniform(1 - jitter, 1): spreads agents out, never exceeds max.
    backoff_jitter: float = 0.25
    # A session that lasted this long resets the backoff to backoff_initial.
    stable_after: float = 60.0
    # Dial + TLS + login, per endpoint (websockets gives up on the dial itself after 10 s).
    connect_timeout: float = 30.0
    # First AllWatcher.Next after WatchAll: the whole model.
    snapshot_timeout: float = 120.0
    # Each verb (AddUnits, DestroyUnit, Annotations.Set, StatusHistory, ...).
    call_timeout: float = 30.0
    status_timeout: float = 120.0
    # None: use AgentSettings.status_poll_interval.
    status_poll_interval: float | None = None
    # Between Action.Actions polls while a command runs on a unit (libjuju's Unit.run: 1 s).
    exec_poll_interval: float = 1.0
    # Closing one connection, and stopping the watcher on shutdown.
    close_timeout: float = 5.0
    # Upper bound on the whole of stop().
    stop_timeout: float = 10.0

    def backoff_delay(self, attempt: int, rng: random.Random) -> float:
        """Delay before connection attempt number `attempt + 1` (0-based), jittered."""
        # Cap the exponent: a days-long outage must not overflow the float.
        growth = self.backoff_multiplier ** min(attempt, 64)
        base = min(self.backoff_max, self.backoff_initial * growth)
        return base * rng.uniform(1.0 - self.backoff_jitter, 1.0)

    def max_delay(self, rng: random.Random) -> float:
        """The longest delay, jittered: used after errors that retrying soon cannot fix."""
        return self.backoff_max * rng.uniform(1.0 - self.backoff_jitter, 1.0)


class _DropBelowInfo(logging.Filter):
    """Refuse DEBUG records whatever level is set later, and libjuju's reconnect chatter.

    libjuju says it is reconnecting (and then that it failed) because its own reconnect is
    disabled here; the supervisor logs what really happens.
    """

    _MISLEADING = (
        "Receiver: Connection closed, reconnecting",
        "RPC: Connection closed, reconnecting",
        "RPC: Automatic reconnect failed",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO and record.msg not in self._MISLEADING


_DROP_BELOW_INFO = _DropBelowInfo()


def quiet_frame_loggers() -> None:
    """Keep every logger that sees frames at INFO or above: at DEBUG they log the password.

    The level is raised and a filter refuses DEBUG records too, so a later setLevel (or a
    debug log level for the whole agent) cannot bring them back.
    """
    for name in _FRAME_LOGGERS:
        frame_logger = logging.getLogger(name)
        if frame_logger.level < logging.INFO:
            frame_logger.setLevel(logging.INFO)
        if _DROP_BELOW_INFO not in frame_logger.filters:
            frame_logger.addFilter(_DROP_BELOW_INFO)


quiet_frame_loggers()


class ClosingConnection(juju_connection.Connection):
    """libjuju's Connection that also closes its TLS transport when it closes.

    The fake controller's tests use it too, for libjuju's own connections.
    """

    async def close(self, to_reconnect: bool = False) -> None:
        """Close like libjuju, then close the websocket's TLS transport as well.

        Every connection ends here: ours, and libjuju's own clean-up after a refused login.
        The server ends the TCP connection (closing handshake, drop, outage) and websockets'
        client never closes its transport after that; Python 3.10's asyncio then does not
        count that SSL transport as closed and warns "unclosed transport" when it is
        collected (3.11's rewritten sslproto does). Closing it again is a no-op otherwise.
        """
        ws = self._ws
        try:
            await super().close(to_reconnect)
        finally:
            if ws is not None:
                ws.transport.close()


class _Connection(ClosingConnection):
    """libjuju's Connection without its own reconnect, with error codes, checking the name.

    libjuju re-dials in the background when the socket drops, behind our back and only to
    the endpoint it last used; our supervisor owns reconnecting, so this is a no-op. And
    libjuju raises a bare message list for bulk results, dropping the error codes we map.
    With a CA given, libjuju turns hostname checking off; here the certificate must also be
    issued for `juju-apiserver`, so one for any other host signed by a broad CA is refused.
    """

    def _get_ssl(self, cert: str | None = None) -> ssl.SSLContext:
        context = super()._get_ssl(cert)
        if cert:
            context.check_hostname = True
        return context

    async def _open(self, endpoint: str, cacert: str) -> Any:
        if self.proxy is not None or not cacert:
            return await super()._open(endpoint, cacert)
        url = f"wss://{endpoint}/model/{self.uuid}/api" if self.uuid else f"wss://{endpoint}/api"
        ws = await websockets.connect(
            url,
            ssl=self._get_ssl(cacert),
            max_size=self.max_frame_size,
            server_hostname=CONTROLLER_CERT_NAME,
        )
        return ws, url, endpoint, cacert

    def __init__(self) -> None:
        super().__init__()
        self.item_errors: dict[int, list[Mapping[str, Any]]] = {}

    async def reconnect(self) -> None:
        """Do nothing: the backend's supervisor makes a new connection instead."""
        return

    async def _recv(self, request_id: int) -> dict[str, Any]:
        result = await super()._recv(request_id)
        response = result.get("response") if isinstance(result, dict) else None
        if isinstance(response, dict):
            found = [
                item["error"]
                for item in response.get("results") or []
                if isinstance(item, dict) and isinstance(item.get("error"), dict)
            ]
            if isinstance(response.get("error"), dict):
                found.append(response["error"])
            if found:
                self.item_errors[request_id] = found
        return result


@dataclasses.dataclass(frozen=True)
class _Session:
    """One logged-in connection and its watcher."""

    conn: _Connection
    endpoint: str
    watcher_id: str


class _SessionEndedError(Exception):
    """The watcher or the status poller found the session unusable."""


def classify_error(what: str, message: str, code: str | None) -> backend.BackendError:
    """Our error type for one of Juju's error answers (message text plus error code)."""
    text = f"{what}: {message}" + (f" ({code})" if code else "")
    if code in _NOT_FOUND_CODES or (
        not code and any(marker in message for marker in _NOT_FOUND_MESSAGES)
    ):
        return backend.NotFoundError(text)
    transient = code in _TRANSIENT_CODES or (
        not code and any(marker in message for marker in _TRANSIENT_MESSAGES)
    )
    return backend.BackendError(text, transient=transient)


def _output_text(output: Mapping[str, Any], key: str) -> str:
    """The stdout or stderr text of an exec action (decoded if the uniter sent base64)."""
    value = output.get(key)
    text = value if isinstance(value, str) else ""
    # worker/uniter/runner/runner.go updateActionResults: output that is not valid UTF-8 is
    # sent base64-encoded, with `<key>-encoding: base64`.
    if output.get(f"{key}-encoding") == "base64":
        try:
            return base64.b64decode(text).decode("utf-8", errors="replace")
        except binascii.Error:
            return text
    return text


def _first_entry(reply: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The first entry of a bulk reply's list `key` (an empty dict if there is none)."""
    entries = reply.get(key) or []
    return entries[0] if entries and isinstance(entries[0], dict) else {}


def _raise_entry_error(what: str, entry: Mapping[str, Any]) -> None:
    """Raise the error a bulk reply's entry carries (Juju answers per entity), if any."""
    error = entry.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        raise classify_error(what, str(error.get("message") or ""), str(code) if code else None)


def exec_result(unit: str, action: Mapping[str, Any]) -> backend.ExecResult:
    """The ExecResult of a finished `juju exec` action (an Action.Actions result).

    A command that exits non-zero still completes (utils/exec Wait: no error); an action
    that did not complete (cancelled at Juju's timeout, aborted, its agent gone) is an error
    unless it carries a non-zero code: a cancelled one says `return-code: 0`.
    """
    output = action.get("output")
    output = output if isinstance(output, dict) else {}
    status = str(action.get("status") or "")
    raw_code = output.get("return-code", 0)
    try:
        # An int from runner.go, but the string "1" when the uniter's flush failed
        # (worker/uniter/runner/context/context.go Flush).
        code = int(raw_code)
    except (TypeError, ValueError):
        raise backend.BackendError(
            f"exec on {unit}: unexpected return-code {raw_code!r}"
        ) from None
    if status != "completed" and code == 0:
        message = str(action.get("message") or "no message")
        raise backend.BackendError(f"exec on {unit}: action {status}: {message}")
    return backend.ExecResult(
        code=code, stdout=_output_text(output, "stdout"), stderr=_output_text(output, "stderr")
    )


def _login_info(conn: _Connection) -> Mapping[str, Any]:
    info: Any = conn.info
    return info if isinstance(info, dict) else {}


def _machine_tag(machine_id: str) -> str:
    return "machine-" + machine_id.replace("/", "-")


class LibjujuBackend:
    """backend.JujuBackend on libjuju's Connection with our own supervisor and watcher."""

    def __init__(
        self,
        settings: agent_settings.AgentSettings,
        *,
        timings: BackendTimings | None = None,
        rng: random.Random | None = None,
        view: model_view.ModelView | None = None,
    ) -> None:
        self._settings = settings
        self._timings = timings or BackendTimings()
        self._rng = rng or random.Random()
        self._model = view or model_view.ModelView()
        self._session: _Session | None = None
        self._synced = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_error: backend.BackendError | None = None
        self._preferred_endpoint = 0
        self.connect_attempts = 0
        self.sessions = 0
        # Read by the metrics (metrics.py): AllWatcher deltas received, FullStatus polls made.
        self.watcher_deltas = 0
        self.status_polls = 0

    # -- state -------------------------------------------------------------------------------

    @property
    def model(self) -> model_view.ModelView:
        """The current view of the model (watcher deltas + status polls)."""
        return self._model

    @property
    def connected(self) -> bool:
        """Whether the controller connection is up and the view is in sync."""
        return self._session is not None and self._synced.is_set()

    @property
    def endpoint(self) -> str | None:
        """The controller endpoint in use, if connected."""
        return self._session.endpoint if self._session is not None else None

    @property
    def last_error(self) -> backend.BackendError | None:
        """Why the last connection attempt or session failed (LoginError: bad credentials)."""
        return self._last_error

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting, watching and polling in the background."""
        if self._supervisor is not None:
            return
        quiet_frame_loggers()
        self._stopping = False
        self._supervisor = asyncio.create_task(self._supervise(), name="whirlwind-backend")

    async def stop(self) -> None:
        """Stop the watcher, close the connection and end every task, within stop_timeout."""
        self._stopping = True
        task, self._supervisor = self._supervisor, None
        if task is None:
            return
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=self._timings.stop_timeout)
        if not done:
            logger.warning(
                "backend did not stop within %ss; abandoning it", self._timings.stop_timeout
            )
        elif not task.cancelled() and task.exception() is not None:
            logger.error("backend supervisor had failed: %s", task.exception())

    async def wait_synced(self, timeout: float) -> bool:
        """Wait until connected with a fresh snapshot; return whether that happened in time."""
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    # -- supervisor --------------------------------------------------------------------------

    async def _supervise(self) -> None:
        backoff = 0  # backoff exponent of the next failed dial
        flaps = 0  # sessions in a row that ended before stable_after
        while not self._stopping:
            session = await self._connect_with_backoff(backoff)
            loop = asyncio.get_running_loop()
            began = loop.time()
            try:
                await self._run_session(session)
            except Exception:  # keep supervising whatever went wrong in one session
                logger.exception("unexpected error in the controller session")
            if self._stopping:
                break
            # A connection that keeps dropping right after login backs off like failed dials.
            flaps = 0 if loop.time() - began >= self._timings.stable_after else flaps + 1
            delay = self._timings.backoff_delay(flaps, self._rng)
            backoff = flaps + 1
            logger.info("reconnecting in %.2fs", delay)
            await asyncio.sleep(delay)

    async def _connect_with_backoff(self, backoff: int) -> _Session:
        """Dial until a session is up; tenacity retries every failure with jittered backoff.

        Transient failures back off exponentially from exponent `backoff`; a refusal that
        retrying soon cannot fix (bad credentials, missing facades) waits the longest delay.
        """
        failures = 0

        def wait(state: tenacity.RetryCallState) -> float:
            nonlocal failures
            exc = state.outcome.exception() if state.outcome is not None else None
            if isinstance(exc, backend.BackendError) and not exc.transient:
                return self._timings.max_delay(self._rng)
            failures += 1
            return self._timings.backoff_delay(backoff + failures - 1, self._rng)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            transient = isinstance(exc, backend.BackendError) and exc.transient
            log = logger.warning if transient else logger.error
            log("cannot connect: %s; retrying in %.2fs", exc, delay)

        async for attempt in tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(backend.BackendError),
            wait=wait,
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt:
                return await self._connect_once()
        raise AssertionError("unreachable: tenacity never stops here")  # pragma: no cover

    async def _connect_once(self) -> _Session:
        """One pass over the endpoints; every failure becomes a BackendError (and last_error)."""
        try:
            return await self._connect()
        except backend.BackendError as exc:
            self._last_error = exc
            raise
        except Exception as exc:  # the supervisor must outlive any one failed attempt
            logger.exception("unexpected error while connecting")
            error = backend.BackendError(f"unexpected error: {exc!r}", transient=True)
            self._last_error = error
            raise error from None

    async def _connect(self) -> _Session:
        """Log in through the first endpoint that works, starting with the last good one."""
        endpoints = self._settings.controller.endpoints
        start = self._preferred_endpoint % len(endpoints)
        failures: list[str] = []
        refused: backend.BackendError | None = None
        for index in [*range(start, len(endpoints)), *range(start)]:
            endpoint = endpoints[index]
            self.connect_attempts += 1
            try:
                conn = await self._login(endpoint)
            except backend.LoginError:
                # Every controller of a cluster checks the same credentials: stop here.
                raise
            except backend.BackendError as exc:
                failures.append(f"{endpoint}: {exc}")
                if not exc.transient:
                    refused = exc
                continue
            self._preferred_endpoint = index
            try:
                return await self._open_session(conn, endpoint)
            except BaseException:
                self._model.synced = False
                await self._close_connection(conn)
                raise
        summary = "; ".join(failures)
        if refused is not None and len(failures) == 1:
            raise refused
        raise backend.BackendError(
            f"no controller endpoint reachable: {summary}", transient=refused is None
        )

    async def _login(self, endpoint: str) -> _Connection:
        controller = self._settings.controller
        logger.debug("connecting to %s as %s", endpoint, controller.username)
        try:
            conn = await asyncio.wait_for(
                _Connection.connect(
                    endpoint=endpoint,
                    uuid=self._settings.model_uuid,
                    username=controller.username,
                    password=controller.password,
                    cacert=controller.ca_cert,
                    retries=0,
                ),
                self._timings.connect_timeout,
            )
        except asyncio.TimeoutError:
            raise backend.BackendError(
                f"timed out connecting or logging in (limit {self._timings.connect_timeout:g}s)",
                transient=True,
            ) from None
        except juju_errors.JujuAPIError as exc:
            if exc.error_code in _LOGIN_REFUSED_CODES:
                raise backend.LoginError(
                    f"controller refused the credentials of user {controller.username!r} "
                    f"({exc.error_code})"
                ) from None
            if exc.error_code in _NOT_FOUND_CODES:
                raise backend.BackendError(
                    f"model {self._settings.model_uuid} not found on the controller "
                    f"({exc.message})"
                ) from None
            raise classify_error("login", exc.message, exc.error_code) from None
        except ssl.SSLCertVerificationError as exc:
            raise backend.BackendError(
                f"TLS verification failed ({exc.verify_message}): the controller certificate "
                "does not chain to the configured ca-cert"
            ) from None
        except ssl.SSLError as exc:
            raise backend.BackendError(f"TLS error: {exc.reason or exc}") from None
        except juju_errors.JujuAuthError as exc:
            raise backend.LoginError(f"controller refused the login: {exc}") from None
        except (
            websockets.exceptions.WebSocketException,
            juju_errors.JujuConnectionError,
            OSError,
        ) as exc:
            raise backend.BackendError(
                f"connection failed: {exc or type(exc).__name__}", transient=True
            ) from None
        except juju_errors.JujuError as exc:
            raise backend.BackendError(f"login failed: {exc}", transient=True) from None
        return conn

    async def _open_session(self, conn: _Connection, endpoint: str) -> _Session:
        """Check facades, start the watcher, take the snapshot and poll status once."""
        self._check_facades(conn)
        info = _login_info(conn)
        logger.info(
            "logged in to %s (juju %s) as %s",
            endpoint,
            info.get("server-version", "?"),
            self._settings.controller.username,
        )
        watch = await self._rpc(conn, "Client", "WatchAll", {}, timeout=self._timings.call_timeout)
        watcher_id = str(watch.get("watcher-id") or "")
        if not watcher_id:
            raise backend.BackendError("Client.WatchAll returned no watcher id", transient=True)
        snapshot = await self._rpc(
            conn,
            "AllWatcher",
            "Next",
            {},
            timeout=self._timings.snapshot_timeout,
            watcher_id=watcher_id,
        )
        deltas = snapshot.get("deltas") or []
        self.watcher_deltas += len(deltas)
        self._model.apply_deltas(deltas, snapshot=True)
        logger.info("model snapshot received: %s entities", len(deltas))
        # Lost/down agents only show in full status: know them before claiming to be synced.
        await self._poll_status_once(conn)
        session = _Session(conn=conn, endpoint=endpoint, watcher_id=watcher_id)
        self._session = session
        self.sessions += 1
        self._last_error = None
        self._synced.set()
        return session

    def _check_facades(self, conn: _Connection) -> None:
        missing = [
            (name, version)
            for name, version in REQUIRED_FACADES.items()
            if conn.facades.get(name) != version
        ]
        if not missing:
            return
        info = _login_info(conn)
        offered = {
            str(item.get("name")): item.get("versions")
            for item in info.get("facades") or []
            if isinstance(item, dict)
        }
        detail = ", ".join(
            f"{name} v{version} (controller offers {offered.get(name) or 'none'})"
            for name, version in missing
        )
        raise backend.BackendError(f"controller lacks facade versions we need: {detail}")

    async def _run_session(self, session: _Session) -> None:
        """Feed the view until the connection fails (or stop()); then tear the session down."""
        watcher = asyncio.create_task(self._watch(session), name="whirlwind-watcher")
        poller = asyncio.create_task(self._poll_status(session), name="whirlwind-status")
        try:
            done, _ = await asyncio.wait({watcher, poller}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                reason = exc if exc is not None else _SessionEndedError("task ended")
                if exc is not None and not isinstance(exc, backend.BackendError):
                    logger.error("watcher or status poll failed: %r", exc, exc_info=exc)
                logger.warning("lost the controller connection: %s", reason)
                self._last_error = backend.NotConnectedError(f"connection lost: {reason}")
        finally:
            self._session = None
            self._synced.clear()
            self._model.synced = False
            for task in (watcher, poller):
                task.cancel()
            await asyncio.gather(watcher, poller, return_exceptions=True)
            if self._stopping:
                await self._stop_watcher(session)
            await self._close_connection(session.conn)

    async def _watch(self, session: _Session) -> None:
        while True:
            result = await self._rpc(
                session.conn,
                "AllWatcher",
                "Next",
                {},
                timeout=None,
                watcher_id=session.watcher_id,
            )
            deltas = result.get("deltas") or []
            self.watcher_deltas += len(deltas)
            self._model.apply_deltas(deltas)

    async def _poll_status(self, session: _Session) -> None:
        interval = self._timings.status_poll_interval or self._settings.status_poll_interval
        while True:
            await asyncio.sleep(interval)
            await self._poll_status_once(session.conn)

    async def _poll_status_once(self, conn: _Connection) -> None:
        """One FullStatus into the view; only a lost connection propagates."""
        request = self._model.begin_status_poll()
        self.status_polls += 1
        try:
            status = await self._rpc(
                conn,
                "Client",
                "FullStatus",
                # With storage: voluntary work skips units with attached storage.
                {"patterns": None, "include-storage": True},
                timeout=self._timings.status_timeout,
            )
        except backend.NotConnectedError:
            raise
        except backend.BackendError as exc:
            logger.warning("status poll failed: %s", exc)
            return
        self._model.apply_full_status(status, request)

    async def _stop_watcher(self, session: _Session) -> None:
        with contextlib.suppress(backend.BackendError):
            await self._rpc(
                session.conn,
                "AllWatcher",
                "Stop",
                {},
                timeout=self._timings.close_timeout,
                watcher_id=session.watcher_id,
            )

    async def _close_connection(self, conn: _Connection) -> None:
        try:
            await asyncio.wait_for(conn.close(), self._timings.close_timeout)
        except asyncio.TimeoutError:
            logger.warning("closing the connection took over %ss", self._timings.close_timeout)
        except (websockets.exceptions.WebSocketException, OSError) as exc:
            logger.debug("error while closing the connection: %s", exc)
        # libjuju never answers requests still waiting when it closes: fail them now.
        await conn.messages.put_all(ConnectionResetError("connection closed"))

    # -- calls -------------------------------------------------------------------------------

    async def _rpc(
        self,
        conn: _Connection,
        facade: str,
        request: str,
        params: Mapping[str, Any],
        *,
        timeout: float | None,
        watcher_id: str | None = None,
    ) -> Mapping[str, Any]:
        """One request with a deadline; every failure becomes a backend error."""
        what = f"{facade}.{request}"
        msg: dict[str, Any] = {
            "type": facade,
            "request": request,
            "version": REQUIRED_FACADES[facade],
            "params": dict(params),
        }
        if watcher_id is not None:
            msg["Id"] = watcher_id
        try:
            reply = await asyncio.wait_for(conn.rpc(msg), timeout)
        except asyncio.TimeoutError:
            raise backend.BackendError(
                f"{what}: no answer within {timeout:g}s", transient=True
            ) from None
        except juju_errors.JujuAPIError as exc:
            raise classify_error(what, exc.message, exc.error_code) from None
        except juju_errors.JujuConnectionError as exc:
            raise backend.NotConnectedError(f"{what}: connection lost ({exc})") from None
        except juju_errors.JujuError as exc:
            items = conn.item_errors.pop(msg.get("request-id", -1), [])
            first = items[0] if items else {}
            message = str(first.get("message") or exc.message)
            code = first.get("code")
            raise classify_error(what, message, str(code) if code else None) from None
        except (websockets.exceptions.WebSocketException, ssl.SSLError, OSError) as exc:
            raise backend.NotConnectedError(
                f"{what}: connection lost ({exc or type(exc).__name__})"
            ) from None
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise backend.BackendError(f"{what}: unexpected answer ({exc!r})") from None
        finally:
            conn.item_errors.pop(msg.get("request-id", -1), None)
        response = reply.get("response") if isinstance(reply, dict) else None
        return response if isinstance(response, dict) else {}

    async def _call(
        self, facade: str, request: str, params: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        session = self._session
        if session is None or not self._synced.is_set():
            raise backend.NotConnectedError()
        return await self._rpc(
            session.conn, facade, request, params, timeout=self._timings.call_timeout
        )

    async def add_unit(self, application: str) -> str:
        """Add one unit to `application`; return its name (it is only allocating then)."""
        result = await self._call(
            "Application",
            "AddUnits",
            {
                "application": application,
                "num-units": 1,
                "placement": None,
                "attach-storage": [],
                "policy": None,
            },
        )
        units = result.get("units") or []
        if len(units) != 1 or not isinstance(units[0], str):
            raise backend.BackendError(f"Application.AddUnits: unexpected units {units!r}")
        logger.info("added unit %s", units[0])
        return units[0]

    async def destroy_unit(
        self, unit: str, *, force: bool = False, max_wait: float | None = None
    ) -> None:
        """Ask Juju to remove `unit`; returns at once, the removal shows in `model` later."""
        await self._call(
            "Application",
            "DestroyUnit",
            {
                "units": [
                    {
                        "unit-tag": model_view.unit_tag(unit),
                        "destroy-storage": False,
                        "force": force,
                        # Integer nanoseconds; Juju only honours it with force.
                        "max-wait": (
                            int(max_wait * 1e9) if force and max_wait is not None else None
                        ),
                        "dry-run": False,
                    }
                ]
            },
        )
        logger.info("asked to remove unit %s (force=%s)", unit, force)

    async def destroy_machine(self, machine_id: str, *, force: bool = False) -> None:
        """Ask Juju to remove machine `machine_id` (refused if it still hosts units)."""
        await self._call(
            "MachineManager",
            "DestroyMachineWithParams",
            {
                "machine-tags": [_machine_tag(machine_id)],
                "force": force,
                "keep": None,
                "dry-run": None,
                "max-wait": None,
            },
        )
        logger.info("asked to remove machine %s (force=%s)", machine_id, force)

    async def set_unit_annotations(self, unit: str, annotations: Mapping[str, str]) -> None:
        """Set annotations on `unit` (keys like whirlwind/born)."""
        values = {str(key): str(value) for key, value in annotations.items()}
        await self._call(
            "Annotations",
            "Set",
            {"annotations": [{"entity": model_view.unit_tag(unit), "annotations": values}]},
        )
        self._model.set_annotations(unit, values)

    async def refresh_status(self) -> None:
        """Poll FullStatus now (lost/down agents) instead of waiting for the next period."""
        session = self._session
        if session is None or not self._synced.is_set():
            raise backend.NotConnectedError()
        await self._poll_status_once(session.conn)

    async def run_on_unit(self, unit: str, command: str, *, timeout: float) -> backend.ExecResult:
        """Run `command` on `unit`'s machine as libjuju 3.6's Unit.run(block=True) does.

        Action.Run (apiserver/facades/client/action/run.go: it enqueues one `juju-exec`
        action for the unit, with Juju's own timeout) and then Action.Actions every
        exec_poll_interval until the action is final, as libjuju's Model._get_completed_action
        does (it skips Unit.run's wait for the action's watcher delta: Actions answers as
        soon as Run has). The whole of it has the deadline `timeout`. An action still not
        final then is cancelled (Action.Cancel, best effort): Juju would otherwise run a
        queued one whenever the unit's agent comes back, long after the caller gave up.
        """
        session = self._session
        if session is None or not self._synced.is_set():
            raise backend.NotConnectedError()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        late = backend.BackendError(
            f"exec on {unit}: no result within {timeout:g}s", transient=True
        )
        try:
            tag = await asyncio.wait_for(self._enqueue(session, unit, command, timeout), timeout)
        except asyncio.TimeoutError:
            raise late from None
        try:
            return await asyncio.wait_for(
                self._await_action(session, unit, tag), max(0.0, deadline - loop.time())
            )
        except asyncio.TimeoutError:
            await self._cancel_action(session, unit, tag)
            raise late from None

    async def _enqueue(self, session: _Session, unit: str, command: str, timeout: float) -> str:
        """Action.Run for one unit; the tag of the action it enqueued."""
        enqueued = await self._rpc(
            session.conn,
            "Action",
            "Run",
            {
                # As libjuju's Unit.run sends it (ActionFacade.Run, client/_client7.py).
                "applications": [],
                "commands": command,
                "execution-group": None,
                "machines": [],
                "parallel": None,
                # Nanoseconds: the uniter kills the command after it (runner.go).
                "timeout": int(timeout * 1e9),
                "units": [unit],
                "workload-context": None,
            },
            timeout=self._timings.call_timeout,
        )
        first = _first_entry(enqueued, "actions")
        _raise_entry_error(f"exec on {unit}", first)
        action = first.get("action")
        tag = action.get("tag") if isinstance(action, dict) else None
        if not isinstance(tag, str) or not tag.startswith("action-"):
            raise backend.BackendError(f"Action.Run: unexpected answer {enqueued!r}")
        logger.debug("exec on %s enqueued as %s", unit, tag)
        return tag

    async def _await_action(self, session: _Session, unit: str, tag: str) -> backend.ExecResult:
        """Action.Actions every exec_poll_interval until the action is final."""
        while True:
            found = await self._rpc(
                session.conn,
                "Action",
                "Actions",
                {"entities": [{"tag": tag}]},
                timeout=self._timings.call_timeout,
            )
            result = _first_entry(found, "results")
            _raise_entry_error(f"exec on {unit} ({tag})", result)
            if result.get("status") in _ACTION_FINAL:
                return exec_result(unit, result)
            await asyncio.sleep(self._timings.exec_poll_interval)

    async def _cancel_action(self, session: _Session, unit: str, tag: str) -> None:
        """Action.Cancel of an action given up on; a failure is only logged."""
        try:
            await self._rpc(
                session.conn,
                "Action",
                "Cancel",
                {"entities": [{"tag": tag}]},
                timeout=self._timings.call_timeout,
            )
        except (backend.BackendError, asyncio.TimeoutError) as exc:
            logger.warning("exec on %s: could not cancel %s: %s", unit, tag, exc)
        else:
            logger.info("exec on %s: cancelled %s (no result in time)", unit, tag)

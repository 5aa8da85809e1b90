"""FakeJujuController: the TLS websocket server, its faults and its inspection API."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http
import json
import logging
import random
import secrets
import uuid
from collections.abc import Collection, Mapping
from typing import Any

import websockets
import websockets.asyncio.server as ws_server

from tests.fakejuju import clock as clock_mod
from tests.fakejuju import contract as contract_mod
from tests.fakejuju import execs as execs_mod
from tests.fakejuju import lifecycle as lifecycle_mod
from tests.fakejuju import model as model_mod
from tests.fakejuju import protocol as protocol_mod
from tests.fakejuju import tls as tls_mod

log = logging.getLogger(__name__)

MAX_FRAME_SIZE = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class CallRecord:
    """One RPC the fake received."""

    facade: str
    version: int
    method: str
    time: float
    connection: int
    error_code: str | None
    # The request's params (Admin.Login's credentials left out).
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the /calls form."""
        return {
            "facade": self.facade,
            "version": self.version,
            "method": self.method,
            "time": self.time,
            "connection": self.connection,
            "error-code": self.error_code,
            "params": dict(self.params),
        }


@dataclasses.dataclass
class CallErrorFault:
    """Fail the next `remaining` calls of facade.method with message/code."""

    facade: str
    method: str
    remaining: int
    message: str
    code: str


@dataclasses.dataclass
class Session:
    """One websocket connection and what was negotiated on it."""

    id: int
    ws: ws_server.ServerConnection
    is_controller: bool
    model_uuid: str | None
    logged_in: bool = False
    watchers: set[str] = dataclasses.field(default_factory=set)
    tasks: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)


class FakeJujuController:
    """A fake Juju 3.6 controller hosting one model, for the unmodified libjuju client."""

    def __init__(
        self,
        applications: Mapping[str, int] | None = None,
        *,
        step_delay: float = 1.0,
        realtime: bool = False,
        strict: bool = True,
        username: str = "admin",
        password: str | None = None,
        model_name: str = "whirlwind-test",
        host: str = "127.0.0.1",
        admin_api: bool = True,
        delta_lag: float | tuple[float, float] = model_mod.DEFAULT_DELTA_LAG,
        seed: int | None = None,
        unset_status: Collection[str] = (),
        spare_machines: int = 0,
        storage: Collection[str] = (),
        controller_model: bool = False,
        cert_names: tuple[str, ...] = tls_mod.CONTROLLER_NAMES,
        allow_exec: bool = False,
    ) -> None:
        self.host = host
        self.port = 0
        self.username = username
        self.password = password if password is not None else secrets.token_hex(16)
        self.strict = strict
        self.step_delay = step_delay
        # Every random choice of the fake comes from here: the same seed, the same choices.
        self.seed = random.randrange(2**32) if seed is None else seed
        self.rng = random.Random(self.seed)
        log.info("fake juju: random seed %s", self.seed)
        self.clock: clock_mod.Clock = (
            clock_mod.RealClock() if realtime else clock_mod.ManualClock()
        )
        low, high = delta_lag if isinstance(delta_lag, tuple) else (delta_lag, delta_lag)
        self.model = model_mod.ModelState(
            str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            model_name,
            username,
            self.clock.now(),
            rng=self.rng,
            delta_lag=(low, high),
            is_controller=controller_model,
        )
        self.unit_faults = lifecycle_mod.UnitFaults()
        self.lifecycle = lifecycle_mod.Lifecycle(
            self.model,
            self.clock,
            step_delay,
            self.unit_faults,
            rng=self.rng,
            unset_status=unset_status,
        )
        # Exec (Action.Run): refused unless allowed, so no test injects by accident.
        self.execs = execs_mod.ExecEngine(
            self.model, self.lifecycle, self.clock, step_delay, allow_exec=allow_exec
        )
        self._initial_lag = (low, high)
        unknown = sorted(set(storage) - set(applications or {}))
        if unknown:
            raise ValueError(f"storage for unknown application {unknown[0]!r}")
        for name, count in (applications or {}).items():
            self.lifecycle.seed_application(name, count, storage=name in storage)
        for _ in range(spare_machines):
            self.lifecycle.seed_machine()
        # The seeded model is the past: every watcher starts from all of it.
        self.model.feed.flush()
        self.calls: list[CallRecord] = []
        self.contract_violations: list[str] = []
        self.call_errors: list[CallErrorFault] = []
        self.latency: dict[str, float] = {}
        self._tls = tls_mod.generate(host, cert_names)
        self._ssl = self._tls.server_context()
        self._server: ws_server.Server | None = None
        self._sessions: dict[int, Session] = {}
        self._next_session = 1
        self._outage_until: float | None = None
        self._outage_timer: clock_mod._Timer | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._admin_enabled = admin_api
        self._admin: Any = None
        self._call_event = asyncio.Event()

    # -- properties -----------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """Return host:port of the API."""
        return f"{self.host}:{self.port}"

    @property
    def model_uuid(self) -> str:
        """Return the UUID of the hosted model."""
        return self.model.uuid

    @property
    def ca_cert(self) -> str:
        """Return the PEM CA certificate clients must trust."""
        return self._tls.ca_cert

    @property
    def admin_url(self) -> str | None:
        """Return the base URL of the admin HTTP API, if started."""
        return self._admin.url if self._admin is not None else None

    @property
    def connection_count(self) -> int:
        """Return the number of open websocket connections."""
        return len(self._sessions)

    @property
    def in_outage(self) -> bool:
        """Return whether a controller outage is in progress."""
        return self._outage_until is not None

    def connect_kwargs(self) -> dict[str, Any]:
        """Return keyword arguments for libjuju's Model.connect / Connection.connect."""
        return {
            "endpoint": self.endpoint,
            "uuid": self.model_uuid,
            "username": self.username,
            "password": self.password,
            "cacert": self.ca_cert,
        }

    def info(self) -> dict[str, str]:
        """Return the connection details the CLI prints."""
        info = {
            "endpoint": self.endpoint,
            "model-uuid": self.model_uuid,
            "username": self.username,
            "password": self.password,
            "ca-cert": self.ca_cert,
            "seed": str(self.seed),
        }
        if self.admin_url:
            info["admin-url"] = self.admin_url
        return info

    # -- start / stop -----------------------------------------------------------

    async def start(self) -> None:
        """Start listening (API and, if enabled, the admin HTTP API)."""
        await self._listen()
        if self._admin_enabled:
            from tests.fakejuju import admin as admin_mod

            self._admin = admin_mod.AdminServer(self)
            await self._admin.start()
        log.info("fake juju listening on %s, model %s", self.endpoint, self.model_uuid)

    async def stop(self) -> None:
        """Stop everything; connections are closed cleanly."""
        if self._outage_timer is not None:
            self._outage_timer.cancel()
        self.clock.close()
        self.model.feed.close()
        for task in list(self._background):
            task.cancel()
        await self.drop_connections("clean")
        await self._close_listener()
        if self._admin is not None:
            await self._admin.stop()
            self._admin = None

    async def _listen(self) -> None:
        server = await ws_server.serve(
            self._handle,
            self.host,
            self.port,
            ssl=self._ssl,
            process_request=self._process_request,
            max_size=MAX_FRAME_SIZE,
            ping_interval=None,
            compression=None,
        )
        self._server = server
        sockets = list(server.sockets)
        if self.port == 0 and sockets:
            self.port = sockets[0].getsockname()[1]

    async def _close_listener(self, abort: bool = False) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        # Stop accepting first, so no client slips in while the others are dropped.
        server.close(close_connections=False)
        await self._settle_io()
        if abort:
            await self.drop_connections("abrupt")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2.0)

    # -- clock ----------------------------------------------------------------------

    def _manual_clock(self) -> clock_mod.ManualClock:
        if not isinstance(self.clock, clock_mod.ManualClock):
            raise RuntimeError("the fake runs on real time; advance() needs the manual clock")
        return self.clock

    async def advance(self, seconds: float) -> None:
        """Move the manual clock forward, firing lifecycle steps, then let I/O run."""
        clock = self._manual_clock()
        remaining = seconds
        while True:
            due = clock.next_due()
            if due is None or due > clock.now() + remaining:
                break
            step = max(0.0, due - clock.now())
            clock.advance_sync(step)
            remaining -= step
            await self._settle_io()
        clock.advance_sync(remaining)
        await self._settle_io()

    async def run_until_settled(self, max_seconds: float = 3600.0) -> float:
        """Advance the manual clock until no lifecycle step is pending; return the time used."""
        clock = self._manual_clock()
        start = clock.now()
        while True:
            due = clock.next_due()
            if due is None or due - start > max_seconds:
                break
            await self.advance(due - clock.now())
        return clock.now() - start

    async def _settle_io(self) -> None:
        # Let woken watchers send their deltas before the next step fires.
        for _ in range(5):
            await asyncio.sleep(0)

    # -- faults -----------------------------------------------------------------------

    def fail_new_units(self, application: str, mode: str) -> None:
        """Make new units of an application fail: hook-error, provisioning-error, never-idle."""
        if mode not in lifecycle_mod.FAIL_MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {lifecycle_mod.FAIL_MODES}")
        if application not in self.model.applications:
            raise ValueError(f"unknown application {application!r}")
        self.unit_faults.fail_new_units[application] = mode

    def set_delta_lag(self, low: float, high: float | None = None) -> None:
        """Watcher deltas reach clients `low`..`high` seconds (real time) after the change."""
        self.model.feed.set_lag(low, high)

    def set_unset_status(self, application: str) -> None:
        """The application's charm never calls status-set: settled units show `unknown`."""
        if application not in self.model.applications:
            raise ValueError(f"unknown application {application!r}")
        self.lifecycle.unset_status.add(application)

    def add_machine(self) -> str:
        """A new, clean machine (`juju add-machine`); AddUnits may place a unit on it."""
        return self.lifecycle.add_machine()

    def lose_unit(self, unit: str, lost: bool = True) -> None:
        """Make a unit agent lost (FullStatus only) or bring it back."""
        try:
            self.lifecycle.set_unit_lost(unit, lost)
        except lifecycle_mod.LifecycleError as exc:
            raise ValueError(exc.message) from None

    def machine_down(self, machine_id: str, down: bool = True) -> None:
        """Make a machine agent down (FullStatus only) or bring it back."""
        try:
            self.lifecycle.set_machine_down(machine_id, down)
        except lifecycle_mod.LifecycleError as exc:
            raise ValueError(exc.message) from None

    def stuck_dying(self, unit: str) -> None:
        """Make a unit never finish dying unless destroyed with force."""
        if unit not in self.model.units:
            raise ValueError(f"unknown unit {unit!r}")
        self.unit_faults.stuck_dying.add(unit)

    def error_unit(self, unit: str, hook: str = lifecycle_mod.UPDATE_STATUS) -> None:
        """Fail a hook on a settled unit: workload error, agent idle, retried with backoff."""
        try:
            self.lifecycle.error_unit(unit, hook)
        except lifecycle_mod.LifecycleError as exc:
            raise ValueError(exc.message) from None

    def resolve_unit(self, unit: str) -> None:
        """`juju resolve` a unit in error: the hook runs again and succeeds."""
        try:
            self.lifecycle.resolve_unit(unit)
        except lifecycle_mod.LifecycleError as exc:
            raise ValueError(exc.message) from None

    def remove_unit(self, unit: str) -> None:
        """An operator's `juju remove-unit` (DestroyUnit without force, storage detached)."""
        try:
            self.lifecycle.destroy_unit(unit, force=False, max_wait=None)
        except lifecycle_mod.LifecycleError as exc:
            raise ValueError(exc.message) from None

    def set_leader(self, unit: str) -> None:
        """Move the leadership of the unit's application to that unit."""
        try:
            self.lifecycle.set_leader(unit)
        except lifecycle_mod.LifecycleError as exc:
            raise ValueError(exc.message) from None

    def set_allow_exec(self, allow: bool) -> None:
        """Serve Action.Run (exec) or refuse it with Juju's permission error (the default)."""
        self.execs.allow_exec = allow
        log.info("fake juju: exec %s", "allowed" if allow else "refused")

    def exec_fault(self, unit: str, mode: str) -> None:
        """Make execs on a unit fail (exit 1), hang, overrun their timeout, or "ok" again."""
        self.execs.set_mode(unit, mode)

    def call_error(
        self,
        facade: str,
        method: str,
        count: int = 1,
        message: str = "fake failure",
        code: str = "",
    ) -> None:
        """Fail the next count calls of facade.method with Juju's error envelope."""
        if count < 1:
            raise ValueError("count must be at least 1")
        self.call_errors.append(CallErrorFault(facade, method, count, message, code))

    def set_latency(self, seconds: float, facade: str = "*", method: str = "*") -> None:
        """Delay replies to facade.method (or every call) by seconds of real time."""
        if seconds < 0:
            raise ValueError("latency must not be negative")
        self.latency[f"{facade}.{method}"] = seconds

    async def drop_connections(self, mode: str = "abrupt") -> int:
        """Drop every connection: abrupt (TCP reset, no close frame) or clean (close frame)."""
        if mode not in ("abrupt", "clean"):
            raise ValueError("mode must be abrupt or clean")
        sessions = list(self._sessions.values())
        for session in sessions:
            if mode == "abrupt":
                session.ws.transport.abort()
            else:
                with contextlib.suppress(websockets.ConnectionClosed):
                    await session.ws.close(1001, "fake juju: going away")
        await self._settle_io()
        log.info("fake juju: dropped %s connections (%s)", len(sessions), mode)
        return len(sessions)

    async def outage(self, seconds: float) -> None:
        """Drop every connection and refuse new ones for seconds (fake clock)."""
        if seconds <= 0:
            raise ValueError("seconds must be positive")
        self._outage_until = self.clock.now() + seconds
        await self._close_listener(abort=True)
        if self._outage_timer is not None:
            self._outage_timer.cancel()
        self._outage_timer = self.clock.call_later(seconds, self._schedule_outage_end)
        log.info("fake juju: outage for %s seconds", seconds)

    def _schedule_outage_end(self) -> None:
        task = asyncio.get_running_loop().create_task(self.end_outage())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def end_outage(self) -> None:
        """End an outage now: accept connections again."""
        if self._outage_timer is not None:
            self._outage_timer.cancel()
            self._outage_timer = None
        if self._outage_until is None:
            return
        self._outage_until = None
        await self._listen()
        log.info("fake juju: outage over")

    async def clear_faults(self) -> None:
        """Clear every fault: failing units, lost/down agents, stuck units, errors, latency."""
        self.unit_faults.clear()
        self.execs.clear()
        self.call_errors.clear()
        self.latency.clear()
        self.set_delta_lag(*self._initial_lag)
        for name in list(self.model.units):
            self.lifecycle.set_unit_lost(name, False)
        for machine_id in list(self.model.machines):
            self.lifecycle.set_machine_down(machine_id, False)
        await self.end_outage()

    # -- inspection ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Return the model as GET /state shows it."""
        model = self.model

        def status(value: model_mod.Status) -> dict[str, Any]:
            return {"current": value.current, "message": value.message, "since": value.since}

        units = {}
        for unit in sorted(model.units.values(), key=lambda u: (u.application, u.number)):
            units[unit.name] = {
                "application": unit.application,
                "machine": unit.machine_id,
                "life": unit.life,
                "workload-status": status(unit.workload),
                "agent-status": status(unit.agent),
                "agent-lost": unit.agent_lost,
                "annotations": dict(model.annotations.get(unit.tag, {})),
            }
        machines = {}
        for machine in sorted(model.machines.values(), key=lambda m: int(m.id)):
            machines[machine.id] = {
                "life": machine.life,
                "instance-id": machine.instance_id,
                "agent-status": status(machine.agent),
                "instance-status": status(machine.instance),
                "agent-down": machine.agent_down,
                "units": sorted(u.name for u in model.units_on(machine.id)),
                "chaos": self.execs.chaos_of(machine.id),
            }
        applications = {
            name: {
                "charm-url": app.charm_url,
                "life": app.life,
                "status": status(model.application_status(name)),
                "units": [n for n, u in units.items() if u["application"] == name],
                "leader": model.leaders.get(name, ""),
                "storage": app.storage,
            }
            for name, app in model.applications.items()
        }
        storage = {
            s.id: {
                "owner": s.owner,
                "life": s.life,
                "status": status(s.status),
                "attached-to": s.attached_unit,
                "machine": s.machine_id,
                "location": s.location,
                "filesystem": s.filesystem_id,
            }
            for s in sorted(model.storage.values(), key=lambda s: s.number)
        }
        return {
            "model": {"uuid": model.uuid, "name": model.name, "time": self.clock.now()},
            "applications": applications,
            "units": units,
            "machines": machines,
            "storage": storage,
            "faults": {
                "fail-new-units": dict(self.unit_faults.fail_new_units),
                "stuck-dying": sorted(self.unit_faults.stuck_dying),
                "call-errors": [dataclasses.asdict(f) for f in self.call_errors],
                "latency": dict(self.latency),
                "outage": self.in_outage,
                "delta-lag": {"min": self.model.feed.lag[0], "max": self.model.feed.lag[1]},
                "unset-status": sorted(self.lifecycle.unset_status),
                "allow-exec": self.execs.allow_exec,
                "exec": dict(self.execs.modes),
            },
            "exec-log": self.execs.to_json(),
            "seed": self.seed,
            "connections": self.connection_count,
        }

    async def wait_delivered(self, timeout: float = 5.0) -> None:
        """Wait (real time, bounded) until every change so far has reached the watchers."""

        async def wait() -> None:
            # The feed delivers from loop timers and has no event to wait on.
            while self.model.feed.pending:  # noqa: ASYNC110
                await asyncio.sleep(0.005)

        await asyncio.wait_for(wait(), timeout)

    def calls_to(self, facade: str, method: str) -> list[CallRecord]:
        """Return the recorded calls of facade.method."""
        return [c for c in self.calls if c.facade == facade and c.method == method]

    async def wait_for_call(
        self, facade: str, method: str, count: int = 1, timeout: float = 5.0
    ) -> None:
        """Wait (real time, bounded) until facade.method was called count times."""

        async def wait() -> None:
            while len(self.calls_to(facade, method)) < count:
                self._call_event.clear()
                await self._call_event.wait()

        await asyncio.wait_for(wait(), timeout)

    def raise_contract_violations(self) -> None:
        """Raise if any message broke the contract with libjuju's types."""
        if self.contract_violations:
            raise contract_mod.ContractViolationError(
                "fake juju contract violations:\n" + "\n".join(self.contract_violations)
            )

    # -- websocket handling ---------------------------------------------------------------

    def _process_request(self, connection: ws_server.ServerConnection, request: Any) -> Any:
        path = request.path
        if path == "/api" or (path.startswith("/model/") and path.endswith("/api")):
            return None
        return connection.respond(http.HTTPStatus.NOT_FOUND, f"no handler for {path}\n")

    async def _handle(self, ws: ws_server.ServerConnection) -> None:
        assert ws.request is not None
        path = ws.request.path
        model_uuid = None if path == "/api" else path[len("/model/") : -len("/api")]
        session = Session(self._next_session, ws, model_uuid is None, model_uuid)
        self._next_session += 1
        self._sessions[session.id] = session
        try:
            async for raw in ws:
                task = asyncio.get_running_loop().create_task(self._serve(session, raw))
                session.tasks.add(task)
                task.add_done_callback(session.tasks.discard)
        except websockets.ConnectionClosed:
            pass
        finally:
            self._sessions.pop(session.id, None)
            for task in list(session.tasks):
                task.cancel()
            for watcher_id in session.watchers:
                self.model.stop_watcher(watcher_id)

    def _violation(self, message: str) -> None:
        self.contract_violations.append(message)
        log.error("fake juju contract violation: %s", message)

    async def _serve(self, session: Session, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            self._violation(f"request is not JSON: {raw[:200]!r}")
            return
        request_id = message.get("request-id", 0)
        call = protocol_mod.Call(
            facade=str(message.get("type", "")),
            version=int(message.get("version") or 0),
            method=str(message.get("request", "")),
            params=message.get("params") or {},
            watcher_id=message.get("Id"),
        )
        if self.strict and contract_mod.method_spec(call.facade, call.version, call.method):
            for problem in contract_mod.check_request(
                call.facade, call.version, call.method, message.get("params") or {}
            ):
                self._violation(problem)
        params = dict(call.params)
        if call.facade == "Admin":
            params.pop("credentials", None)
            params.pop("macaroons", None)
        record = CallRecord(
            call.facade, call.version, call.method, self.clock.now(), session.id, None, params
        )
        index = len(self.calls)
        self.calls.append(record)
        self._call_event.set()
        delay = max(
            self.latency.get(key, 0.0)
            for key in ("*.*", f"{call.facade}.*", f"{call.facade}.{call.method}")
        )
        if delay:
            await asyncio.sleep(delay)
        hold = model_mod.Hold()
        token = model_mod.CURRENT_HOLD.set(hold)
        try:
            await self._answer(session, call, request_id, record, index)
        finally:
            # Juju answers first; the watchers hear of what the call changed later.
            model_mod.CURRENT_HOLD.reset(token)
            self.model.feed.release(hold)

    async def _answer(
        self,
        session: Session,
        call: protocol_mod.Call,
        request_id: Any,
        record: CallRecord,
        index: int,
    ) -> None:
        error: protocol_mod.RpcError | None = None
        response: dict[str, Any] = {}
        try:
            injected = self._injected_error(call)
            if injected is not None:
                raise injected
            protocol_mod.check_route(session, call, self)
            handler = protocol_mod.HANDLERS.get((call.facade, call.method))
            if handler is None:
                raise protocol_mod.not_implemented(call)
            response = await handler(self, session, call)
        except protocol_mod.RpcError as exc:
            error = exc
        if error is not None:
            # Recorded on arrival (long polls must be visible); the outcome is filled in here.
            self.calls[index] = dataclasses.replace(record, error_code=error.code)
        if error is not None:
            reply: dict[str, Any] = {
                "request-id": request_id,
                "error": error.message,
                "response": {},
            }
            # rpc/jsoncodec outMsgV1: error-code is omitempty, so no code means no key.
            if error.code:
                reply["error-code"] = error.code
            if self.strict:
                for problem in contract_mod.check_error_envelope(reply):
                    self._violation(problem)
        else:
            reply = {"request-id": request_id, "response": response}
            if self.strict and contract_mod.method_spec(call.facade, call.version, call.method):
                for problem in contract_mod.check_response(
                    call.facade, call.version, call.method, response
                ):
                    self._violation(problem)
        with contextlib.suppress(websockets.ConnectionClosed):
            await session.ws.send(json.dumps(reply))

    def _injected_error(self, call: protocol_mod.Call) -> protocol_mod.RpcError | None:
        for fault in self.call_errors:
            if fault.facade == call.facade and fault.method == call.method:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.call_errors.remove(fault)
                return protocol_mod.RpcError(fault.message, fault.code)
        return None

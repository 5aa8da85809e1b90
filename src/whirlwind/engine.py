"""Asyncio orchestration: triggers, one lock, interruptible sleep, recovery, control handler."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import random
from collections.abc import Callable
from typing import Any

import whirlwind
from whirlwind import backend as backend_mod
from whirlwind import control, policy, provenance, recovery, replacer
from whirlwind import journal as journal_mod
from whirlwind import model as model_view
from whirlwind import settings as settings_mod

logger = logging.getLogger(__name__)

INTERVAL = "interval"
REPLACE_NOW = "replace-now"
RECOVERY = "recovery"

# Longest sleep of the main loop: the view is looked at again at least this often (seconds).
IDLE = 300.0
# How often to look again while waiting for a connection or for a target to become ready.
RECHECK = 30.0
# An operation that raised unexpectedly is picked up again from the journal this many times.
MAX_ATTEMPTS = 3
RETRY_DELAY = 30.0

_PAUSE_KEY = "pause"
_INTERVAL_KEY = "interval"

Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    """The wall clock, timezone-aware (UTC)."""
    return datetime.datetime.now(datetime.timezone.utc)


@dataclasses.dataclass(frozen=True)
class _InFlight:
    op_id: str
    task: asyncio.Task[journal_mod.Operation]


class Engine:
    """Runs the agent: interval timer, replace-now, pause/resume, reload, recovery, history.

    Implements control.ControlHandler. The backend is started and stopped by the caller;
    `run()` waits for it to connect, recovers unfinished operations, then loops until `stop()`.
    """

    def __init__(
        self,
        settings: settings_mod.AgentSettings,
        backend: backend_mod.JujuBackend,
        journal: journal_mod.Journal,
        *,
        now: Clock = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._backend = backend
        self._journal = journal
        self._now = now
        self._rng = rng or random.Random()
        self._op_key = settings.op_key.encode() or provenance.local_key(settings.state_dir)
        self._replacer = replacer.Replacer(
            backend, journal, lambda: self._settings, now, lambda: self._op_key
        )
        # Whether operations left in flight still wait to be taken up (pause, dry-run).
        self._recovery_due = True
        self._noted: set[str] = set()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = False
        self._ready = False
        self._started_at: datetime.datetime | None = None
        self._in_flight: dict[str, _InFlight] = {}
        self._tasks: set[asyncio.Task[journal_mod.Operation]] = set()
        saved = journal.get_state(_PAUSE_KEY) or {}
        self._paused = bool(saved.get("paused", False))
        self._paused_since = journal_mod.from_iso(saved.get("since"))
        if settings.paused is not None:
            self._apply_pause(settings.paused)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def settings(self) -> settings_mod.AgentSettings:
        """The settings in effect."""
        return self._settings

    @property
    def paused(self) -> bool:
        """Whether new work is paused."""
        return self._paused

    async def run(self, *, once: bool = False) -> bool:
        """Recover, then run until stop() (True); with `once`, one replacement (True if ok)."""
        self._started_at = self._now()
        logger.info("engine started: whirlwind %s", whirlwind.__version__)
        try:
            if not await self._wait_for_connection():
                return not once
            self._recover()
            self._ready = True
            if once:
                return await self._run_once()
            while not self._stopping:
                self._wake.clear()
                try:
                    await self._cycle()
                except journal_mod.JournalCorruptError:
                    # The agent stops; its next start moves the damaged journal aside.
                    raise
                except Exception:
                    logger.exception("replacement cycle failed; trying again later")
                await self._sleep(self._get_sleep())
            return True
        finally:
            self._ready = False
            await self._cancel_tasks()
            logger.info("engine stopped")

    def stop(self) -> None:
        """Ask run() to return soon; operations in flight stop and are recovered next start."""
        self._stopping = True
        self._wake.set()

    def reload(self, new: settings_mod.AgentSettings) -> bool:
        """Apply new settings without losing work; return whether the controller changed."""
        old = self._settings
        self._settings = new
        reconnect = new.controller != old.controller or new.model_uuid != old.model_uuid
        if new.op_key and new.op_key != old.op_key:
            self._op_key = new.op_key.encode()
        if new != old:
            # A configuration change is the operator's answer to a tripped breaker.
            if self._journal.get_breakers():
                logger.info("settings changed: resetting the circuit breakers")
                self._journal.clear_breakers()
            logger.info("settings reloaded: %s", new.describe())
        if new.paused is not None:
            self._apply_pause(new.paused)
        self._wake.set()
        return reconnect

    async def _wait_for_connection(self) -> bool:
        while not self._stopping:
            if await self._backend.wait_synced(RECHECK):
                return True
            logger.info("waiting for the controller connection")
        return False

    async def _sleep(self, timeout: float) -> None:
        """Sleep until `timeout` passes or something calls for attention (`_wake`)."""
        # Not asyncio.wait_for: before Python 3.12 it swallows a cancellation that arrives
        # together with the event (the property test found that), and the agent must stop.
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait([waiter], timeout=timeout)
        finally:
            waiter.cancel()

    def _get_sleep(self) -> float:
        if self._paused:
            return IDLE
        if not self._backend.connected:
            return RECHECK
        wait = (self._get_next_due() - self._now()).total_seconds()
        if wait <= 0:
            # Due, but nothing ready or no slot free: a finishing operation wakes us sooner.
            return RECHECK
        return min(wait, IDLE)

    async def _cancel_tasks(self) -> None:
        pending = {t for t in self._tasks if not t.done()}
        while pending:
            # Cancel again until they end: asyncio.wait_for before Python 3.12 may swallow one.
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=1.0)
        self._tasks.clear()
        self._in_flight.clear()

    # -- the loop --------------------------------------------------------------------------

    def _recover(self) -> None:
        """Finish or roll back what was left in flight, when allowed; else say what waits.

        Own operations come from the journal; another leader's from the model, adopted only
        on target applications and only when signed with Whirlwind's key. Pause and dry-run
        hold both (this runs again every cycle until it could act).
        """
        view = self._backend.model
        unfinished = [
            op for op in self._journal.get_unfinished() if op.service not in self._in_flight
        ]
        known = {op.id for op in self._journal.get_history(1000)}
        busy = set(self._in_flight) | {op.service for op in unfinished}
        adoptable: list[policy.ForeignOperation] = []
        for foreign in recovery.find_foreign(view, known, busy):
            refusal = recovery.why_not_adopt(foreign, view, self._settings, self._op_key)
            if refusal is None:
                adoptable.append(foreign)
            else:
                self._note(
                    f"not adopting operation {foreign.op_id} on {foreign.service} "
                    f"({foreign.old_unit.name} -> {foreign.new_unit.name}): {refusal}"
                )
        hold = recovery.get_hold(self._settings, self._paused, view)
        if hold is not None:
            waiting = [f"{op.id} on {op.service} at step {op.step}" for op in unfinished]
            waiting += [f"{f.op_id} on {f.service} (another agent's)" for f in adoptable]
            if waiting:
                prefix = "DRY-RUN: would take up" if hold == recovery.DRY_RUN else "not taking up"
                self._note(f"{prefix} operation(s) left in flight ({hold}): {', '.join(waiting)}")
            self._recovery_due = bool(waiting)
            return
        self._recovery_due = False
        for op in unfinished:
            logger.warning(
                "recovering operation %s on %s (%s) at step %s",
                op.id,
                op.service,
                op.trigger,
                op.step,
            )
            op = self._journal.update(op, self._now(), log="recover", trigger=RECOVERY)
            self._launch(op, recovering=True)
        for foreign in adoptable:
            plan = recovery.plan_adoption(foreign, view, self._settings, self._now())
            logger.warning(
                "adopting operation %s on %s left by another agent: %s -> %s at step %s",
                plan.op_id,
                plan.service,
                plan.old_unit,
                plan.new_unit,
                plan.step,
            )
            op = self._journal.adopt_operation(at=self._now(), **dataclasses.asdict(plan))
            self._launch(op, recovering=True)

    def _note(self, message: str) -> None:
        """Log a warning once (recovery runs every cycle while held)."""
        if message not in self._noted:
            self._noted.add(message)
            logger.warning("%s", message)

    async def _cycle(self) -> None:
        self._reap()
        if not self._backend.connected:
            return
        if self._recovery_due:
            self._recover()
        if self._paused or self._now() < self._get_next_due():
            return
        async with self._lock:
            if len(self._in_flight) >= self._settings.max_in_flight:
                return
            service = policy.get_next_service(
                self._settings.services, self._get_ready(), self._get_last_service()
            )
            if service is None:
                logger.debug("interval due but no target is ready")
                return
            op = await self._plan(service, INTERVAL, None, self._settings.dry_run)
            if op is None:
                return
            self._journal.set_state(
                _INTERVAL_KEY,
                {"last-run": journal_mod.to_iso(self._now()), "last-service": service},
            )
            self._launch(op)

    async def _run_once(self) -> bool:
        while self._in_flight:
            await asyncio.wait([f.task for f in self._in_flight.values()])
            self._reap()
        if self._paused:
            logger.warning("the agent is paused: nothing to do")
            return False
        async with self._lock:
            service = policy.get_next_service(
                self._settings.services, self._get_ready(), self._get_last_service()
            )
            if service is None:
                logger.warning("no target service is ready: nothing to do")
                return False
            op = await self._plan(service, INTERVAL, None, self._settings.dry_run)
            if op is None:
                return False
            self._journal.set_state(
                _INTERVAL_KEY,
                {"last-run": journal_mod.to_iso(self._now()), "last-service": service},
            )
            task = self._launch(op)
        final = await task
        return final.result in (journal_mod.OK, journal_mod.DRY_RUN)

    def _reap(self) -> None:
        for task in [t for t in self._tasks if t.done()]:
            self._tasks.discard(task)
            if task.cancelled():
                continue
            exc = task.exception()
            if exc is not None and (
                not isinstance(exc, Exception) or isinstance(exc, journal_mod.JournalCorruptError)
            ):
                # KeyboardInterrupt and the like, and a journal gone corrupt, end the agent.
                raise exc
            if exc is not None:
                logger.error("operation task failed: %s", exc)

    def _launch(
        self, op: journal_mod.Operation, *, recovering: bool = False
    ) -> asyncio.Task[journal_mod.Operation]:
        task = asyncio.ensure_future(self._execute(op, recovering))
        self._in_flight[op.service] = _InFlight(op.id, task)
        self._tasks.add(task)
        task.add_done_callback(lambda _: self._wake.set())
        return task

    async def _execute(self, op: journal_mod.Operation, recovering: bool) -> journal_mod.Operation:
        attempts = 0
        # Only an operation that ended (or was stopped) frees its slot: after anything else the
        # agent is going down, and nothing new may start on the application meanwhile.
        release = False
        try:
            while True:
                try:
                    final = await self._replacer.run(op, recovering=recovering)
                    break
                except journal_mod.JournalCorruptError:
                    raise
                except Exception as exc:
                    attempts += 1
                    logger.exception(
                        "operation %s on %s failed unexpectedly (attempt %d of %d)",
                        op.id,
                        op.service,
                        attempts,
                        MAX_ATTEMPTS,
                    )
                    op = self._journal.get_operation(op.id) or op
                    if attempts >= MAX_ATTEMPTS:
                        final = self._journal.finish(
                            op, self._now(), journal_mod.FAILED, f"internal error: {exc}"
                        )
                        break
                    await asyncio.sleep(RETRY_DELAY)
                    recovering = True
            self._after_operation(final)
            release = True
            return final
        except asyncio.CancelledError:
            release = True
            raise
        finally:
            current = self._in_flight.get(op.service)
            if release and current is not None and current.op_id == op.id:
                del self._in_flight[op.service]

    def _after_operation(self, op: journal_mod.Operation) -> None:
        interrupted = op.trigger == RECOVERY and op.new_unit is None
        if op.result == journal_mod.DRY_RUN or interrupted:
            return
        breakers = self._journal.get_breakers()
        before = breakers.get(op.service, policy.BreakerState())
        after = policy.record_result(before, op.result, op.reason)
        if after != before:
            self._journal.set_breaker(op.service, after)
        limit = self._settings.max_consecutive_failures
        if after.is_open(limit) and not before.is_open(limit):
            logger.error(
                "stopping replacements of %s until resume or a configuration change: %s",
                op.service,
                policy.describe_breaker(after),
            )

    # -- decisions -------------------------------------------------------------------------

    def _get_busy_units(self) -> set[str]:
        return {
            unit
            for op in self._journal.get_unfinished()
            for unit in (op.old_unit, op.new_unit)
            if unit is not None
        }

    def _get_ready(self) -> list[str]:
        return policy.get_ready_services(
            self._backend.model,
            self._settings,
            breakers=self._journal.get_breakers(),
            busy_units=self._get_busy_units(),
            in_flight_apps=set(self._in_flight),
        )

    def _get_last_service(self) -> str | None:
        state = self._journal.get_state(_INTERVAL_KEY) or {}
        return state.get("last-service")

    def _get_next_due(self) -> datetime.datetime:
        state = self._journal.get_state(_INTERVAL_KEY) or {}
        last_run = journal_mod.from_iso(state.get("last-run"))
        return policy.get_next_due(
            last_run, self._started_at or self._now(), self._settings.interval
        )

    async def _plan(
        self, service: str, trigger: str, unit: str | None, dry_run: bool
    ) -> journal_mod.Operation | None:
        """Choose the victim and journal PLAN (caller holds the lock)."""
        view = self._backend.model
        candidates = policy.get_candidates(view.get_units(service), self._get_busy_units())
        if unit is not None:
            victim = next((u for u in candidates if u.name == unit), None)
        else:
            victim = policy.choose_victim(candidates, self._settings.strategy, self._rng)
        if victim is None:
            return None
        return replacer.create_plan(
            self._journal,
            view,
            service=service,
            victim=victim,
            trigger=trigger,
            dry_run=dry_run,
            token=f"{self._rng.getrandbits(24):06x}",
            now=self._now(),
        )

    # -- pause -----------------------------------------------------------------------------

    def _apply_pause(self, paused: bool) -> bool:
        if paused == self._paused:
            return False
        self._paused = paused
        self._paused_since = self._now() if paused else None
        self._journal.set_state(
            _PAUSE_KEY, {"paused": paused, "since": journal_mod.to_iso(self._paused_since)}
        )
        logger.info("%s", "paused: no new replacements" if paused else "resumed")
        self._wake.set()
        return True

    def _pause_result(self, changed: bool) -> dict[str, Any]:
        return {
            "paused": self._paused,
            "changed": changed,
            "paused-since": journal_mod.to_iso(self._paused_since),
        }

    # -- control.ControlHandler --------------------------------------------------------------

    async def pause(self) -> dict[str, Any]:
        """Stop starting new work (in-flight work finishes); say whether anything changed."""
        return self._pause_result(self._apply_pause(True))

    async def resume(self) -> dict[str, Any]:
        """Start new work again and reset the circuit breakers."""
        changed = self._apply_pause(False)
        if self._journal.get_breakers():
            logger.info("resume: resetting the circuit breakers")
            self._journal.clear_breakers()
        self._wake.set()
        return self._pause_result(changed)

    async def get_history(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` operations, newest first."""
        return [op.to_dict() for op in self._journal.get_history(limit)]

    async def get_status(self) -> dict[str, Any]:
        """Agent state for `status`: connection, pause, targets, in-flight, next due, last."""
        settings = self._settings
        view = self._backend.model
        limit = settings.max_consecutive_failures
        breakers = self._journal.get_breakers()
        unfinished = self._journal.get_unfinished()
        in_flight = None
        if unfinished:
            op = unfinished[0]
            in_flight = {
                "id": op.id,
                "service": op.service,
                "old-unit": op.old_unit,
                "new-unit": op.new_unit,
                "step": op.step,
                "started": journal_mod.to_iso(op.started),
            }
        next_due = next_service = None
        if not self._paused and self._ready:
            next_due = journal_mod.to_iso(max(self._get_next_due(), self._now()))
            next_service = policy.get_next_service(
                settings.services, self._get_ready(), self._get_last_service()
            )
        last = self._journal.get_last_finished()
        return {
            "version": whirlwind.__version__,
            "connected": self._backend.connected,
            "paused": self._paused,
            "paused-since": journal_mod.to_iso(self._paused_since),
            "dry-run": settings.dry_run,
            "services": list(settings.services),
            "unknown-services": [s for s in settings.services if s not in view.applications]
            if view.synced
            else [],
            "blocked-services": {
                app: policy.describe_breaker(b) for app, b in breakers.items() if b.is_open(limit)
            },
            "interval": settings.interval,
            "next-due": next_due,
            "next-service": next_service,
            "in-flight": in_flight,
            "last": last.to_dict() if last is not None else None,
        }

    async def replace_now(self, request: control.ReplaceNowRequest) -> dict[str, Any]:
        """Start one replacement now (any application but our own); with wait, finish it."""
        if not self._ready or not self._backend.connected:
            raise control.ControlError(control.NOT_READY, "not connected to the controller yet")
        service = request.service
        view = self._backend.model
        refusal = policy.get_refusal(service, view, self._settings)
        if refusal == policy.NOT_IN_MODEL:
            raise control.ControlError(
                control.UNKNOWN_SERVICE, f"no application {service!r} in the model"
            )
        if refusal is not None:
            raise control.ControlError(control.REFUSED, f"{service}: {refusal}")
        if self._paused:
            raise control.ControlError(control.PAUSED, "the agent is paused; resume it first")
        if self._settings.dry_run and request.dry_run is False:
            # dry-run in the settings is a lock: an operator set it to be safe.
            raise control.ControlError(
                control.REFUSED,
                "dry-run is on in the settings, and it is a lock: turn it off first "
                "(juju config <whirlwind> dry-run=false)",
            )
        dry_run = self._settings.dry_run or bool(request.dry_run)
        async with self._lock:
            current = self._in_flight.get(service)
            if current is not None:
                raise control.ControlError(
                    control.BUSY, f"replacement {current.op_id} of {service} is in flight"
                )
            if len(self._in_flight) >= self._settings.max_in_flight:
                raise control.ControlError(
                    control.BUSY,
                    f"{len(self._in_flight)} replacement(s) in flight (max-in-flight reached)",
                )
            if request.unit is not None:
                unit = view.get_unit(request.unit)
                if unit is None or unit.application != service:
                    raise control.ControlError(
                        control.UNKNOWN_UNIT, f"no unit {request.unit!r} of {service}"
                    )
                if unit.life != model_view.ALIVE:
                    raise control.ControlError(control.REFUSED, f"{unit.name} is {unit.life}")
            if view.count_healthy(service) < 1:
                raise control.ControlError(control.NOT_READY, f"{service} has no healthy unit")
            op = await self._plan(service, REPLACE_NOW, request.unit, dry_run)
            if op is None:
                raise control.ControlError(control.BUSY, f"no unit of {service} can be replaced")
            task = self._launch(op)
        if not request.wait:
            return {"id": op.id, "service": service, "old-unit": op.old_unit, "result": "started"}
        # Shielded: a client that goes away must not cancel the replacement.
        final = await asyncio.shield(task)
        return final.to_dict()

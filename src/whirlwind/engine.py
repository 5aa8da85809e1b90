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
from whirlwind import (
    alerts,
    control,
    notify,
    pausing,
    planner,
    planview,
    policy,
    provenance,
    recovery,
    replacer,
)
from whirlwind import backend as backend_mod
from whirlwind import journal as journal_mod
from whirlwind import model as model_view
from whirlwind import settings as settings_mod
from whirlwind import windows as windows_mod
from whirlwind.chaos import arming as arming_mod
from whirlwind.chaos import runner as chaos_runner
from whirlwind.planner import health, victims

logger = logging.getLogger(__name__)

INTERVAL = "interval"
REPLACE_NOW = "replace-now"
RECOVERY = "recovery"
TRIGGER_NAMES = planview.TRIGGER_NAMES
# After a model change wakes the loop, let a burst of deltas land first (seconds).
SETTLE_DELTAS = 0.2

# Longest sleep of the main loop: the view is looked at again at least this often (seconds).
IDLE = 300.0
# How often to look again while waiting for a connection or for a target to become ready.
RECHECK = 30.0
# An operation that raised unexpectedly is picked up again from the journal this many times.
MAX_ATTEMPTS = 3
RETRY_DELAY = 30.0

_PAUSE_KEY = "pause"
_INTERVAL_KEY = "interval"
_VOLUNTARY_KEY = "voluntary"
_WATCH_KEY = "watches"
# The chaos arming in effect (with the seed), and the charm's arming last applied from settings.
_CHAOS_KEY = "chaos"
_CHAOS_SETTINGS_KEY = "chaos-settings"

Clock = Callable[[], datetime.datetime]


def _format_time(value: datetime.datetime | None) -> str:
    return pausing.format_time(value) if value is not None else "-"


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
        # What the planner remembers between cycles: units not healthy, units first seen.
        self._watches = health.from_state(journal.get_state(_WATCH_KEY))
        # When the loop last woke for a change of the model: what it finds broken then has
        # been broken since that moment (not since the loop looked, a settle pause later).
        self._changed_at: datetime.datetime | None = None
        self._first_seen: dict[str, datetime.datetime] = {}
        self._plan: planner.Plan | None = None
        self._plan_notes: set[str] = set()
        # Dry-run proposals already logged (heal and count would repeat every cycle).
        self._dry_runs: dict[tuple[str, str, str | None], datetime.datetime] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        # block-on-alerts: Alertmanager's answer, asked again before planning when stale.
        self._alerts = alerts.AlertGate(lambda: self._settings.block_on_alerts, now)
        self._stopping = False
        self._ready = False
        self._started_at: datetime.datetime | None = None
        self._in_flight: dict[str, _InFlight] = {}
        self._tasks: set[asyncio.Task[journal_mod.Operation]] = set()
        self._pause = pausing.Pause.from_state(journal.get_state(_PAUSE_KEY))
        self._apply_settings_pause(settings)
        # Failure injection: the seed and the draws, the injections and their reverts.
        self._chaos = chaos_runner.ChaosRunner(backend, journal, now=now, seed=settings.chaos_seed)
        self._arming = arming_mod.Arming.from_state(journal.get_state(_CHAOS_KEY))
        seen = journal.get_state(_CHAOS_SETTINGS_KEY)
        self._settings_arming = None if seen is None else arming_mod.Arming.from_state(seen)
        self._apply_settings_arming(settings)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def settings(self) -> settings_mod.AgentSettings:
        """The settings in effect."""
        return self._settings

    @property
    def plan(self) -> planner.Plan | None:
        """The planner's latest plan: what is due, what holds work back, what comes next."""
        return self._plan

    @property
    def paused(self) -> bool:
        """Whether new work is paused."""
        return self._paused

    @property
    def arming(self) -> arming_mod.Arming:
        """The chaos arming in effect (none once expired, none on the controller model)."""
        if self._backend.model.is_controller_model or not self._arming.is_armed(self._now()):
            return arming_mod.Arming()
        return self._arming

    @property
    def _paused(self) -> bool:
        return self._pause.is_paused(self._now())

    async def run(self, *, once: bool = False) -> bool:
        """Recover, then run until stop() (True); with `once`, one replacement (True if ok)."""
        self._started_at = self._now()
        logger.info("engine started: whirlwind %s", whirlwind.__version__)
        # The charm's status follows the agent: what an operator sees touches the trigger.
        notifier = notify.Notifier(self._settings.state_dir / notify.TRIGGER_FILE, self._now)
        self._journal.add_listener(notifier.on_commit)
        try:
            if not await self._wait_for_connection():
                return not once
            self._recover()
            self._ready = True
            notifier.notify()  # connected: the status no longer says "connecting"
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
            await self._chaos.stop()  # revert what can be reverted early, with a deadline
            self._journal.remove_listener(notifier.on_commit)
            notifier.close()
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
        self._apply_settings_pause(new)
        self._apply_settings_arming(new)
        self._chaos.follow_settings(new.chaos_seed)
        self._wake.set()
        return reconnect

    async def _wait_for_connection(self) -> bool:
        while not self._stopping:
            if await self._backend.wait_synced(RECHECK):
                return True
            logger.info("waiting for the controller connection")
        return False

    async def _sleep(self, timeout: float) -> None:
        """Sleep until `timeout` passes, something calls for attention, or the model changes.

        A change of the model (an error arrives as a delta, a status poll shows a lost agent)
        wakes the loop, so healing reacts to the watcher and does not wait for a timer.
        """
        # Not asyncio.wait_for: before Python 3.12 it swallows a cancellation that arrives
        # together with the event (the property test found that), and the agent must stop.
        waiter = asyncio.ensure_future(self._wake.wait())
        changed = asyncio.ensure_future(self._backend.model.wait_for_change(timeout))
        try:
            done, _ = await asyncio.wait(
                [waiter, changed], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if changed in done and waiter not in done:
                self._changed_at = self._now()
                await asyncio.sleep(SETTLE_DELTAS)
        finally:
            waiter.cancel()
            changed.cancel()

    def _get_sleep(self) -> float:
        if not self._backend.connected:
            return RECHECK
        plan = self._plan
        times = [plan.next_event() if plan is not None else None]
        if self._paused:
            times.append(self._pause.until)  # a timed pause ends by itself
        if self._arming.armed:
            times.append(self._arming.until)  # and so does an arming
        # A timed injection is reverted when its duration ends, not at the next status poll.
        times += [found.revert_due for found in self._chaos.pending]
        upcoming = min((t for t in times if t is not None), default=None)
        if upcoming is None:
            return IDLE
        wait = (upcoming - self._now()).total_seconds()
        if wait <= 0:
            # Due, but held or no slot free: a finishing operation or a change wakes us sooner.
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
        if hold == recovery.PAUSED:
            # Healing goes on while paused (it has its own switch): so does finishing a heal.
            healing = [
                op for op in unfinished if recovery.may_heal_while_paused(op, self._settings)
            ]
            unfinished = [op for op in unfinished if op not in healing]
            self._take_up(healing, [])
        if hold is not None:
            waiting = [f"{op.id} on {op.service} at step {op.step}" for op in unfinished]
            waiting += [f"{f.op_id} on {f.service} (another agent's)" for f in adoptable]
            if waiting:
                prefix = "DRY-RUN: would take up" if hold == recovery.DRY_RUN else "not taking up"
                self._note(f"{prefix} operation(s) left in flight ({hold}): {', '.join(waiting)}")
            self._recovery_due = bool(waiting)
            return
        self._recovery_due = False
        self._take_up(unfinished, adoptable)

    def _take_up(
        self, unfinished: list[journal_mod.Operation], adoptable: list[policy.ForeignOperation]
    ) -> None:
        """Launch our own operations left in flight and adopt another agent's."""
        view = self._backend.model
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
        self._expire_pause()
        self._apply_arming(arming_mod.expire(self._arming, self._now()))  # ends by itself
        if not self._backend.connected:
            return
        if self._recovery_due:
            self._recover()
        await self._alerts.refresh()
        plan = self._make_plan()
        async with self._lock:
            busy = self._get_busy_services()
            for proposal in plan.due():
                if len(busy) >= self._settings.max_in_flight:
                    break
                if proposal.service not in busy and self._start(proposal) is not None:
                    busy.add(proposal.service)
            # Chaos after the replacements: an application they just took is busy for it.
            self._chaos.start(plan.chaos_plans(), busy, lambda: f"{self._rng.getrandbits(24):06x}")
        await self._chaos.revert_due()

    async def _run_once(self) -> bool:
        while self._in_flight:
            await asyncio.wait([f.task for f in self._in_flight.values()])
            self._reap()
        if self._paused:
            logger.warning("the agent is paused: nothing to do")
            return False
        # Once: as if the rotation (or what else is due) were due now.
        await self._alerts.refresh()
        plan = self._make_plan(rotation_due=True)
        async with self._lock:
            due = plan.due()
            if not due:
                logger.warning("no target service is ready: nothing to do")
                return False
            task = self._start(due[0])
        if task is None:
            return True
        final = await task
        return final.result in (journal_mod.OK, journal_mod.DRY_RUN)

    # -- planning --------------------------------------------------------------------------

    def _make_plan(self, *, rotation_due: bool = False) -> planner.Plan:
        """Ask the planner what is due, keeping its memory (watches, first seen) current."""
        view = self._backend.model
        settings = self._settings
        now = self._now()
        busy = self._get_busy_units()
        seen, self._changed_at = min(now, self._changed_at or now), None
        watches = health.track(
            self._watches,
            view,
            settings.services,
            seen,
            lambda app: settings.policy_for(app).settle_timeout,
            busy,
        )
        if watches != self._watches:
            self._journal.set_state(_WATCH_KEY, health.to_state(watches))
        self._watches = watches
        live = {u for app in settings.services for u in (x.name for x in view.get_units(app))}
        self._first_seen = {u: self._first_seen.get(u, now) for u in live}
        rotation = self._journal.get_state(_INTERVAL_KEY) or {}
        voluntary = self._journal.get_state(_VOLUNTARY_KEY) or {}
        started = self._started_at or now
        facts = planner.Facts(
            now=now,
            agent_started=started - datetime.timedelta(seconds=settings.interval)
            if rotation_due
            else started,
            paused=self._paused,
            pause_text=self._pause.describe(),
            breakers=self._journal.get_breakers(),
            in_flight=self._get_busy_services(),
            busy_units=busy,
            watches=self._watches,
            first_seen=self._first_seen,
            last_voluntary={
                app: when
                for app, text in voluntary.items()
                if (when := journal_mod.from_iso(text)) is not None
            },
            rotation_last_run=None
            if rotation_due
            else journal_mod.from_iso(rotation.get("last-run")),
            rotation_last_service=rotation.get("last-service"),
            **alerts.get_facts(self._alerts.state),
        )
        plan = planner.make_plan(
            view, settings, facts, arming=self.arming, chaos_facts=self._chaos.facts()
        )
        self._plan = plan
        # Each note once, when it appears (a mass failure, a skipped unit, too many units).
        notes = {f"{t.service}: {n}" for t in plan.targets for n in t.notes}
        for key in sorted(notes - self._plan_notes):
            level = logging.WARNING if "mass failure" in key else logging.INFO
            logger.log(level, "%s", key)
        self._plan_notes = notes
        return plan

    def _start(self, proposal: planner.Proposal) -> asyncio.Task[journal_mod.Operation] | None:
        """Journal PLAN for a proposal and launch it (caller holds the lock)."""
        settings = self._settings
        view = self._backend.model
        now = self._now()
        if settings.dry_run:
            key = (proposal.trigger, proposal.service, proposal.victim)
            last = self._dry_runs.get(key)
            if last is not None and now - last < datetime.timedelta(seconds=settings.interval):
                return None
            self._dry_runs[key] = now
        victim = view.get_unit(proposal.victim) if proposal.victim is not None else None
        logger.info(
            "%s on %s: %s", TRIGGER_NAMES[proposal.trigger], proposal.service, proposal.reason
        )
        op = replacer.create_plan(
            self._journal,
            view,
            service=proposal.service,
            victim=victim,
            trigger=TRIGGER_NAMES[proposal.trigger],
            dry_run=settings.dry_run,
            token=f"{self._rng.getrandbits(24):06x}",
            now=now,
        )
        if (
            proposal.trigger == planner.ROTATE
            and not settings.policy_for(proposal.service).own_interval
        ):
            self._journal.set_state(
                _INTERVAL_KEY,
                {"last-run": journal_mod.to_iso(now), "last-service": proposal.service},
            )
        if proposal.voluntary:
            voluntary = self._journal.get_state(_VOLUNTARY_KEY) or {}
            voluntary[proposal.service] = journal_mod.to_iso(now)
            self._journal.set_state(_VOLUNTARY_KEY, voluntary)
        return self._launch(op)

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

    def _get_busy_services(self) -> set[str]:
        """Applications with an operation running, or left in flight and not taken up yet."""
        unfinished = {op.service for op in self._journal.get_unfinished()}
        return set(self._in_flight) | unfinished | self._chaos.busy()

    def _choose_victim(
        self, service: str, unit: str | None
    ) -> tuple[model_view.UnitState | None, list[str]]:
        """replace-now's unit, and why units were skipped.

        The one asked for, else as voluntary work chooses it: the oldest (with
        `strategy: random`, any), storage skipped unless allowed, the leader last.
        """
        view = self._backend.model
        busy = self._get_busy_units()
        candidates = sorted(
            (
                u
                for u in view.get_units(service)
                if u.life == model_view.ALIVE and not u.subordinate and u.name not in busy
            ),
            key=lambda u: u.number,
        )
        if unit is not None:
            return next((u for u in candidates if u.name == unit), None), []
        if self._settings.strategy == "random":
            candidates = self._rng.sample(candidates, len(candidates))
        now = self._now()
        facts = planner.Facts(now=now, agent_started=now, busy_units=busy)
        context = planner.make_context(service, view, self._settings, facts)
        return victims.choose(context, candidates)

    # -- pause -----------------------------------------------------------------------------

    def _apply_pause(self, new: pausing.Pause) -> bool:
        """Switch to `new` (journaled); return whether anything changed."""
        if new == self._pause:
            return False
        was = self._paused
        self._pause = new
        self._journal.set_state(_PAUSE_KEY, new.to_state())
        if self._paused:
            logger.info("%s: no new replacements", new.describe())
        elif was:
            logger.info("resumed")
        self._wake.set()
        return True

    def _apply_settings_pause(self, settings: settings_mod.AgentSettings) -> None:
        """The charm's pause (peer data) is authoritative when the settings carry one."""
        if settings.paused is None:
            return
        if not settings.paused:
            self._apply_pause(pausing.Pause())
            return
        since = self._pause.since if self._pause.paused else None
        self._apply_pause(
            pausing.Pause(True, since or self._now(), settings.paused_until, settings.pause_reason)
        )

    def _expire_pause(self) -> None:
        """A timed pause whose time is up ends by itself."""
        until = self._pause.until
        if self._pause.paused and until is not None and not self._paused:
            logger.info("the pause until %s has ended", pausing.format_time(until))
            self._apply_pause(pausing.Pause())

    def _pause_result(self, changed: bool) -> dict[str, Any]:
        pause = self._pause
        return {
            "paused": self._paused,
            "changed": changed,
            "paused-since": journal_mod.to_iso(pause.since) if self._paused else None,
            "paused-until": journal_mod.to_iso(pause.until) if self._paused else None,
            "pause-reason": pause.reason if self._paused else "",
        }

    # -- chaos arming ------------------------------------------------------------------------

    def _apply_arming(self, new: arming_mod.Arming) -> bool:
        """Switch chaos to `new` (journaled with the seed); return whether anything changed."""
        if new == self._arming:
            return False
        was, self._arming = self._arming, new
        seed = self._chaos.seed
        self._journal.set_state(_CHAOS_KEY, {**new.to_state(), "seed": seed})
        if new.armed:
            logger.warning(
                "chaos armed until %s by %s (dry-run: %s, seed: %s)",
                _format_time(new.until), new.by or "?", new.dry_run, seed,
            )  # fmt: skip
        elif was.armed:
            logger.warning("chaos disarmed (it was armed until %s)", _format_time(was.until))
        self._wake.set()
        return True

    def _apply_settings_arming(self, settings: settings_mod.AgentSettings) -> None:
        """The charm's arming (peer data) wins when the settings carry a new one."""
        new, seen = arming_mod.follow_settings(
            self._arming, self._settings_arming, settings.chaos_arming
        )
        if seen != self._settings_arming:
            self._settings_arming = seen
            self._journal.set_state(_CHAOS_SETTINGS_KEY, seen.to_state() if seen else None)
        self._apply_arming(new)

    async def arm_chaos(
        self, duration: int | str, confirm: str, dry_run: bool = False, by: str = ""
    ) -> dict[str, Any]:
        """Arm failure injection for `duration`; `confirm` must be the model's name."""
        view = self._backend.model
        if not view.model_seen:
            raise control.ControlError(control.NOT_READY, "the model's name has not arrived yet")
        try:
            new = arming_mod.arm(
                self._now(), duration, by, dry_run, confirm, view.model_name,
                controller_model=view.is_controller_model,
            )  # fmt: skip
        except arming_mod.ArmingError as exc:
            code = control.REFUSED if view.is_controller_model else control.BAD_REQUEST
            raise control.ControlError(code, str(exc)) from None
        changed = self._apply_arming(new)
        return {**arming_mod.to_status(self.arming, self._now()), "changed": changed}

    async def disarm_chaos(self) -> dict[str, Any]:
        """End the arming now; say whether anything changed."""
        self._apply_arming(arming_mod.expire(self._arming, self._now()))
        changed = self._apply_arming(arming_mod.Arming())
        return {**arming_mod.to_status(self.arming, self._now()), "changed": changed}

    # -- control.ControlHandler --------------------------------------------------------------

    async def pause(self, duration: int | None = None, reason: str = "") -> dict[str, Any]:
        """Stop starting new work (in-flight work finishes); say whether anything changed.

        With `duration` (seconds) the pause ends by itself; else it lasts until resumed.
        """
        self._expire_pause()
        new = pausing.pause(self._pause, self._now(), duration=duration, reason=reason)
        return self._pause_result(self._apply_pause(new))

    async def resume(self) -> dict[str, Any]:
        """Start new work again and reset the circuit breakers."""
        self._expire_pause()
        changed = self._apply_pause(pausing.Pause())
        if self._journal.get_breakers():
            logger.info("resume: resetting the circuit breakers")
            self._journal.clear_breakers()
        self._wake.set()
        return self._pause_result(changed)

    async def get_history(
        self, limit: int, *, service: str | None = None, op_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest `limit` operations (of `service`), newest first; with `op_id` that one."""
        if op_id is None:
            return [op.to_dict() for op in self._journal.get_history(limit, service=service)]
        op = self._journal.get_operation(op_id)
        if op is None or (service is not None and op.service != service):
            where = "" if service is None else f" for service {service!r}"
            raise control.ControlError(
                control.UNKNOWN_OPERATION, f"operation {op_id!r} not found{where}"
            )
        return [op.to_dict()]

    async def get_plan(self) -> dict[str, Any]:
        """What happens next for every target, from a fresh plan; changes nothing."""
        if not self._ready or not self._backend.connected:
            raise control.ControlError(control.NOT_READY, "not connected to the controller yet")
        self._expire_pause()
        return planview.describe_plan(self._make_plan(), paused=self._paused)

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
        next_due = next_service = next_trigger = None
        notes: dict[str, list[str]] = {}
        if self._ready and self._backend.connected:
            plan = self._make_plan()
            notes = {t.service: list(t.notes) for t in plan.targets if t.notes}
            # While paused only healing goes on (it has its own switch).
            allowed = {planner.HEAL} if self._paused else set(planner.PRIORITY)
            due = [p for p in plan.due() if p.trigger in allowed]
            upcoming = [
                (u, t.service) for t in plan.targets for u in t.upcoming if u.trigger in allowed
            ]
            if due:
                next_due, next_service = journal_mod.to_iso(self._now()), due[0].service
                next_trigger = TRIGGER_NAMES[due[0].trigger]
            elif upcoming:
                first, next_service = min(upcoming, key=lambda item: item[0].at)
                next_due = journal_mod.to_iso(max(first.at, self._now()))
                next_trigger = TRIGGER_NAMES[first.trigger]
            elif plan.rotation_due is not None and not self._paused:
                # Held now (in flight, breaker, health): the rotation's own time.
                next_due = journal_mod.to_iso(max(plan.rotation_due, self._now()))
                next_trigger = TRIGGER_NAMES[planner.ROTATE]
        last = self._journal.get_last_finished()
        return {
            "version": whirlwind.__version__,
            "connected": self._backend.connected,
            # Connected once, and what was left in flight looked at: taking requests.
            "ready": self._ready,
            "paused": self._paused,
            "paused-since": journal_mod.to_iso(self._pause.since) if self._paused else None,
            "paused-until": journal_mod.to_iso(self._pause.until) if self._paused else None,
            "pause-reason": self._pause.reason if self._paused else "",
            "window": planview.describe_window(
                windows_mod.get_schedule(settings.windows), self._now()
            ),
            "dry-run": settings.dry_run,
            **arming_mod.to_status(self.arming, self._now()),
            "chaos-seed": self._chaos.seed,
            "chaos-pending-reverts": [
                f"{found.id}: {found.kind} on {found.unit}" for found in self._chaos.pending
            ],
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
            "next-trigger": next_trigger,
            # What the planner has to say per application (mass failure, too many units, ...).
            "notes": notes,
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
            busy = self._get_busy_services()
            if service in busy:
                raise control.ControlError(
                    control.BUSY,
                    f"an operation on {service} was left in flight and is still to be taken up",
                )
            if len(busy) >= self._settings.max_in_flight:
                raise control.ControlError(
                    control.BUSY,
                    f"{len(busy)} replacement(s) in flight (max-in-flight reached)",
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
            victim, skipped = self._choose_victim(service, request.unit)
            if victim is None and skipped:
                raise control.ControlError(
                    control.REFUSED,
                    f"no unit of {service} can be replaced: {', '.join(skipped)} "
                    "(a policy with storage: allow lets units with storage go)",
                )
            if victim is None:
                raise control.ControlError(control.BUSY, f"no unit of {service} can be replaced")
            op = replacer.create_plan(
                self._journal,
                view,
                service=service,
                victim=victim,
                trigger=REPLACE_NOW,
                dry_run=dry_run,
                token=f"{self._rng.getrandbits(24):06x}",
                now=self._now(),
            )
            task = self._launch(op)
        if not request.wait:
            return {"id": op.id, "service": service, "old-unit": op.old_unit, "result": "started"}
        # Shielded: a client that goes away must not cancel the replacement.
        final = await asyncio.shield(task)
        return final.to_dict()

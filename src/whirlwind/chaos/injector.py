"""Make one failure injection happen, journaled before it is made, and undo those with a duration.

The injector acts; it decides nothing: the planner (policy, draws, guard) chose the victim
and the kind. Every injection is journaled first, then made through the backend (kill-unit
and kill-machine as removals, the others as a script run on the unit's machine, see
`commands`), then its result is journaled. Injections with a duration stay pending until
reverted: at the end of the duration (`revert_due`), early when the agent stops
(`revert_all`), and after a restart they are read back from the journal. The machine's own
timer (scheduled by the injection script) undoes each change anyway, so a failed revert here
never leaves a unit slowed or stopped for ever.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import math
from collections.abc import Callable
from typing import Any

from whirlwind import backend
from whirlwind import journal as journal_mod
from whirlwind.chaos import commands

logger = logging.getLogger(__name__)

KILL_UNIT = "kill-unit"
KILL_MACHINE = "kill-machine"
STOP_AGENT = commands.STOP_AGENT
SLOW_NETWORK = commands.SLOW_NETWORK
WRENCH = commands.WRENCH
KINDS = (KILL_UNIT, KILL_MACHINE, STOP_AGENT, SLOW_NETWORK, WRENCH)
# Kinds with a duration, undone by a script run on the unit (stop-agent by the unit only).
TIMED_KINDS = commands.EXEC_KINDS

# revert_result values (besides "failed: <why>").
REVERT_OK = "ok"
REVERT_UNIT_SIDE = "unit-side"
REVERT_UNIT_GONE = "unit-gone"
_MAX_REASON = 300


@dataclasses.dataclass(frozen=True)
class InjectionRequest:
    """One injection the planner decided on (values as the policy gives them)."""

    op_id: str
    kind: str
    service: str
    unit: str
    machine_id: str | None = None
    # Seconds the failure lasts (stop-agent, slow-network, wrench); rounded up to whole s.
    duration: float = 0.0
    # Network delay in seconds (slow-network); sent in whole milliseconds.
    delay: float = 0.0
    wrench_category: str | None = None
    wrench_feature: str | None = None
    dry_run: bool = False
    # What the chance or pattern drew (anything JSON can hold; a dataclass is converted).
    draw: Any = None


@dataclasses.dataclass(frozen=True)
class InjectorTimings:
    """Deadlines (seconds) of the injector's calls."""

    # A script waits behind a running hook on the unit (the uniter runs one thing at a time).
    exec_timeout: float = 120.0
    revert_timeout: float = 60.0
    # After its due time a revert that keeps failing is retried this long, then left to
    # the unit's own timer (which has fired by then).
    revert_grace: float = 600.0


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What a request becomes: the values journaled and the script to run, if any."""

    params: dict[str, Any]
    duration: int
    script: str | None
    description: str


def _jsonable(draw: Any) -> Any:
    if dataclasses.is_dataclass(draw) and not isinstance(draw, type):
        return dataclasses.asdict(draw)
    return draw


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 3] + "..."


def _exec_failure(result: backend.ExecResult) -> str:
    detail = result.stderr.strip().splitlines()[-1:] or result.stdout.strip().splitlines()[-1:]
    return _one_line(f"exit code {result.code}" + (f": {detail[0]}" if detail else ""))


def plan(request: InjectionRequest) -> _Plan:
    """Check a request and build its script; InvalidChaosValueError names a bad value."""
    kind = request.kind
    if kind not in KINDS:
        raise commands.InvalidChaosValueError(f"invalid chaos kind {kind!r}: one of {KINDS}")
    unit = request.unit
    if kind == KILL_UNIT:
        return _Plan({}, 0, None, f"remove unit {unit}")
    machine = request.machine_id
    if kind in (KILL_MACHINE, STOP_AGENT) and not machine:
        raise commands.InvalidChaosValueError(f"invalid machine id {machine!r}: {kind} needs one")
    if kind == KILL_MACHINE:
        assert machine is not None
        return _Plan({}, 0, None, f"force-remove machine {machine} of unit {unit}")
    if not math.isfinite(request.duration) or request.duration <= 0:
        raise commands.InvalidChaosValueError(
            f"invalid duration {request.duration!r}: {kind} needs a positive duration"
        )
    duration = math.ceil(request.duration)
    op_id = request.op_id
    if kind == STOP_AGENT:
        assert machine is not None
        script = commands.stop_agent_inject(op_id, machine, duration)
        return _Plan(
            {"duration": duration},
            duration,
            script,
            f"stop the machine agent of {unit} (machine {machine}) for {duration}s",
        )
    if kind == SLOW_NETWORK:
        delay_ms = round(request.delay * 1000) if math.isfinite(request.delay) else 0
        script = commands.slow_network_inject(op_id, duration, delay_ms)
        return _Plan(
            {"duration": duration, "delay-ms": delay_ms},
            duration,
            script,
            f"delay the network of {unit} by {delay_ms}ms for {duration}s",
        )
    category, feature = request.wrench_category or "", request.wrench_feature or ""
    script = commands.wrench_inject(op_id, duration, category, feature)
    return _Plan(
        {"duration": duration, "category": category, "feature": feature},
        duration,
        script,
        f"drop wrench {category}/{feature} on {unit} for {duration}s",
    )


def revert_script(injection: journal_mod.ChaosInjection) -> str | None:
    """The script that undoes `injection` now (None for stop-agent: only the unit can)."""
    if injection.kind == SLOW_NETWORK:
        return commands.slow_network_revert(injection.id)
    if injection.kind == WRENCH:
        return commands.wrench_revert(injection.id, str(injection.params.get("category", "")))
    return None


def _revert_delay(kind: str, duration: int) -> float:
    """Seconds from the script's reply to the unit's own revert."""
    return duration + (commands.STOP_AGENT_DELAY if kind == STOP_AGENT else 0)


class ChaosInjector:
    """Makes injections through a JujuBackend, journals them and keeps their reverts."""

    def __init__(
        self,
        juju: backend.JujuBackend,
        journal: journal_mod.Journal,
        *,
        now: Callable[[], datetime.datetime],
        timings: InjectorTimings | None = None,
    ) -> None:
        self._backend = juju
        self._journal = journal
        self._now = now
        self._timings = timings or InjectorTimings()
        # Read back: a restarted agent still reverts what its previous run injected.
        self._pending: dict[str, journal_mod.ChaosInjection] = {
            found.id: found for found in journal.get_pending_reverts()
        }
        if self._pending:
            logger.info(
                "chaos: %s injection(s) from before the restart still to revert: %s",
                len(self._pending),
                ", ".join(sorted(self._pending)),
            )

    @property
    def pending(self) -> tuple[journal_mod.ChaosInjection, ...]:
        """Injections not yet reverted, oldest first."""
        return tuple(sorted(self._pending.values(), key=lambda found: found.seq))

    async def inject(self, request: InjectionRequest) -> journal_mod.ChaosInjection:
        """Journal the injection, make it (unless dry-run) and journal its result.

        A failed call is journaled as FAILED, not raised; a bad value raises
        InvalidChaosValueError before anything is journaled.
        """
        planned = plan(request)
        timed = request.kind in TIMED_KINDS
        at = self._now()
        delay = _revert_delay(request.kind, planned.duration)
        # Due already before acting: a crash right after the call still reverts it.
        due = at + datetime.timedelta(seconds=delay) if timed and not request.dry_run else None
        injection = self._journal.create_injection(
            op_id=request.op_id,
            kind=request.kind,
            service=request.service,
            unit=request.unit,
            machine=request.machine_id,
            draw=_jsonable(request.draw),
            params=planned.params,
            dry_run=request.dry_run,
            at=at,
            revert_due=due,
        )
        if request.dry_run:
            logger.info("DRY-RUN: chaos %s would %s", request.op_id, planned.description)
            return injection
        if due is not None:
            self._pending[injection.id] = injection
        logger.info("chaos %s: about to %s", request.op_id, planned.description)
        try:
            reason = await self._act(request, planned)
        except asyncio.CancelledError:
            # The agent stops before the controller answered: the change may or may not be
            # made, so its revert stays due (revert_all or the next start makes it).
            reason = "the agent stopped before the controller answered"
            self._journal.finish_injection(
                injection, self._now(), journal_mod.FAILED, reason=reason, revert_due=due
            )
            raise
        done = self._now()
        result = journal_mod.FAILED if reason else journal_mod.OK
        # A failed script may still have changed something (or may still run, after a
        # deadline): its revert stays due; the revert scripts touch only what is theirs.
        due = done + datetime.timedelta(seconds=delay) if timed else None
        injection = self._journal.finish_injection(
            injection, done, result, reason=reason, revert_due=due
        )
        # Unless revert_all reverted it meanwhile (the agent stopping during the call).
        if due is not None and injection.id in self._pending:
            self._pending[injection.id] = injection
        if reason:
            logger.error("chaos %s: could not %s: %s", request.op_id, planned.description, reason)
        else:
            logger.warning("chaos %s: done: %s", request.op_id, planned.description)
        return injection

    async def _act(self, request: InjectionRequest, planned: _Plan) -> str:
        """Make the injection; the reason it failed, or "" when it was made."""
        try:
            if request.kind == KILL_UNIT:
                await self._backend.destroy_unit(request.unit)
                return ""
            if request.kind == KILL_MACHINE:
                assert request.machine_id is not None
                await self._backend.destroy_machine(request.machine_id, force=True)
                return ""
            assert planned.script is not None
            result = await self._backend.run_on_unit(
                request.unit, planned.script, timeout=self._timings.exec_timeout
            )
        except backend.BackendError as exc:
            return _one_line(str(exc))
        return _exec_failure(result) if result.code != 0 else ""

    async def revert_due(self, now: datetime.datetime) -> list[journal_mod.ChaosInjection]:
        """Revert the injections whose duration has ended; return what was journaled."""
        due = [
            found
            for found in self.pending
            if found.revert_due is not None and found.revert_due <= now
        ]
        changed: list[journal_mod.ChaosInjection] = []
        for injection in due:
            recorded = await self._revert(injection, now, early=False)
            if recorded is not None:
                changed.append(recorded)
        return changed

    async def revert_all(self) -> list[journal_mod.ChaosInjection]:
        """Revert every pending injection now (the agent stops), each with its own deadline.

        Best effort: what fails stays pending in the journal for the next start, and the
        unit's own timer undoes it at the end of its duration anyway. Stop-agent injections
        cannot be reverted early (their agent is the one stopped).
        """
        pending = self.pending
        if not pending:
            return []
        now = self._now()
        outcomes = await asyncio.gather(
            *(self._revert_safely(injection, now) for injection in pending)
        )
        return [recorded for recorded in outcomes if recorded is not None]

    async def _revert_safely(
        self, injection: journal_mod.ChaosInjection, now: datetime.datetime
    ) -> journal_mod.ChaosInjection | None:
        try:
            return await self._revert(injection, now, early=True)
        except journal_mod.JournalError as exc:
            logger.error("chaos %s: could not journal its revert: %s", injection.id, exc)
            return None

    async def _revert(
        self, injection: journal_mod.ChaosInjection, now: datetime.datetime, *, early: bool
    ) -> journal_mod.ChaosInjection | None:
        """Undo one injection and journal the attempt; None when nothing was attempted."""
        script = revert_script(injection)
        if script is None:
            if early:
                logger.info(
                    "chaos %s: the agent of %s starts again by itself at %s",
                    injection.id,
                    injection.unit,
                    journal_mod.to_iso(injection.revert_due),
                )
                return None
            return self._record(injection, REVERT_UNIT_SIDE, done=True)
        try:
            result = await self._backend.run_on_unit(
                injection.unit, script, timeout=self._timings.revert_timeout
            )
        except backend.NotFoundError:
            # The unit went (healed, removed): its machine's timer is the backstop.
            return self._record(injection, REVERT_UNIT_GONE, done=True)
        except backend.BackendError as exc:
            reason = _one_line(str(exc))
        else:
            if result.code == 0:
                return self._record(injection, REVERT_OK, done=True)
            reason = _exec_failure(result)
        due = injection.revert_due or now
        give_up = not early and now >= due + datetime.timedelta(seconds=self._timings.revert_grace)
        if give_up:
            logger.error(
                "chaos %s: revert on %s failed (%s); left to the unit's own timer",
                injection.id,
                injection.unit,
                reason,
            )
            return self._record(
                injection, f"failed: {reason}; left to the unit's timer", done=True
            )
        logger.warning(
            "chaos %s: revert on %s failed (%s); trying again later",
            injection.id,
            injection.unit,
            reason,
        )
        return self._record(injection, f"failed: {reason}", done=False)

    def _record(
        self, injection: journal_mod.ChaosInjection, revert_result: str, *, done: bool
    ) -> journal_mod.ChaosInjection:
        recorded = self._journal.record_revert(injection, self._now(), revert_result, done=done)
        if done:
            self._pending.pop(injection.id, None)
            logger.info("chaos %s: reverted (%s)", injection.id, revert_result)
        else:
            self._pending[injection.id] = recorded
        return recorded

"""One replacement as a journaled state machine: PLAN, ADD, SETTLE, REMOVE, CLEANUP or ROLLBACK.

Every step is written to the journal before it acts, and every handler can be entered again
from what the journal says, so an agent that stopped anywhere finishes or rolls back the
operation on its next start (`Replacer.run(op, recovering=True)`).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from whirlwind import backend as backend_mod
from whirlwind import journal as journal_mod
from whirlwind import model as model_view
from whirlwind import policy, provenance, retrying
from whirlwind import settings as settings_mod

logger = logging.getLogger(__name__)

# Seconds Juju gets to remove a dedicated machine by itself before we do.
CLEANUP_GRACE = 60.0
# Juju's max-wait for a forced removal of a unit whose agent may still do it properly.
FORCE_MAX_WAIT = 60.0
# A unit whose hook failed or whose agent is lost never runs its stop hooks: no waiting
# (`juju remove-unit --force --no-wait`).
FORCE_NO_WAIT = 0.0
# worker/cleaner's period: each of a forced removal's two cleanups may run this late.
JUJU_CLEANUP_PERIOD = 30.0
# While disconnected the view may be stale: look again at least this often (seconds).
RECHECK = retrying.RECHECK
# Deadline of the status poll that confirms a settled unit (seconds).
STATUS_TIMEOUT = 30.0
# After a settled unit was not confirmed by that poll: look again after this long at least.
CONFIRM_PAUSE = 1.0

Clock = Callable[[], datetime.datetime]
DeadlineError = retrying.DeadlineError


def create_plan(
    journal: journal_mod.Journal,
    view: model_view.ModelView,
    *,
    service: str,
    victim: model_view.UnitState | None,
    trigger: str,
    dry_run: bool,
    token: str,
    now: datetime.datetime,
) -> journal_mod.Operation:
    """Journal step PLAN: the victim and the facts recovery needs (numbers, machine, health).

    Without a victim the operation only adds a unit (the unit count was short).
    """
    units = view.get_units(service)
    machine = victim.machine_id if victim is not None else None
    op = journal.create_operation(
        token=token,
        trigger=trigger,
        service=service,
        old_unit=victim.name if victim is not None else None,
        at=now,
        dry_run=dry_run,
        max_unit_number=max((u.number for u in units), default=-1),
        healthy_at_start=view.count_healthy(service),
        old_machine=machine,
        old_machine_dedicated=(
            victim is not None
            and machine is not None
            and policy.is_dedicated_machine(view, machine, victim.name)
        ),
    )
    what = f"replace {victim.name}" if victim is not None else "add a unit"
    logger.info(
        "operation %s (%s): %s of %s (%d healthy)",
        op.id,
        trigger,
        what,
        service,
        op.healthy_at_start,
    )
    return op


class Replacer:
    """Runs operations through their steps against a backend, journaling each step first."""

    def __init__(
        self,
        backend: backend_mod.JujuBackend,
        journal: journal_mod.Journal,
        get_settings: Callable[[], settings_mod.AgentSettings],
        now: Clock,
        get_op_key: Callable[[], bytes],
    ) -> None:
        self._backend = backend
        self._journal = journal
        self._get_settings = get_settings
        self._now = now
        self._get_op_key = get_op_key

    @property
    def _view(self) -> model_view.ModelView:
        return self._backend.model

    async def run(
        self, op: journal_mod.Operation, *, recovering: bool = False
    ) -> journal_mod.Operation:
        """Drive `op` from its journaled step to a final result; return the finished operation."""
        handlers: dict[
            str, Callable[[journal_mod.Operation], Awaitable[journal_mod.Operation]]
        ] = {
            journal_mod.PLAN: self._plan,
            journal_mod.ADD: self._add_recovering if recovering else self._add,
            journal_mod.SETTLE: self._settle_recovering if recovering else self._settle,
            journal_mod.REMOVE: self._remove,
            journal_mod.CLEANUP: self._cleanup,
            journal_mod.ROLLBACK: self._rollback,
        }
        while not op.is_finished:
            handler = handlers.get(op.step)
            if handler is None:
                return self._finish(op, journal_mod.FAILED, f"unknown step {op.step!r}")
            op = await handler(op)
        await self._clear_marks(op)
        return op

    async def _clear_marks(self, op: journal_mod.Operation) -> None:
        """Take the finished operation's marks off the units that stay (best effort).

        A unit still marked with a finished operation (a rollback that could not remove the
        new unit, say) must not look like work in flight to the next leader.
        """
        for unit in (op.old_unit, op.new_unit):
            if (
                unit is None
                or self._view.get_unit_annotations(unit).get(policy.OP_ANNOTATION) != op.id
            ):
                continue
            cleared = {policy.OP_ANNOTATION: "", provenance.SIG_ANNOTATION: ""}
            try:
                await self._call(
                    f"clear the marks of {unit}",
                    functools.partial(self._backend.set_unit_annotations, unit, cleared),
                    self._in(CLEANUP_GRACE),
                )
            except (DeadlineError, backend_mod.BackendError) as exc:
                logger.warning("operation %s: cannot clear the marks of %s: %s", op.id, unit, exc)

    # -- helpers ---------------------------------------------------------------------------

    def _remaining(self, deadline: datetime.datetime | None) -> float:
        if deadline is None:
            return 0.0
        return max(0.0, (deadline - self._now()).total_seconds())

    def _in(self, seconds: float) -> datetime.datetime:
        return self._now() + datetime.timedelta(seconds=seconds)

    def _step(self, op: journal_mod.Operation, step: str, **changes: Any) -> journal_mod.Operation:
        logger.info("operation %s: %s", op.id, step)
        return self._journal.update(op, self._now(), step=step, **changes)

    def _finish(
        self, op: journal_mod.Operation, result: str, reason: str = ""
    ) -> journal_mod.Operation:
        log = logger.info if result in (journal_mod.OK, journal_mod.DRY_RUN) else logger.warning
        log(
            "operation %s on %s finished: %s%s",
            op.id,
            op.service,
            result,
            f" ({reason})" if reason else "",
        )
        return self._journal.finish(op, self._now(), result, reason)

    def _start_rollback(
        self, op: journal_mod.Operation, reason: str, *, force: bool = False
    ) -> journal_mod.Operation:
        """Journal ROLLBACK; `force` when the new unit can never run its stop hooks."""
        logger.warning("operation %s: rolling back: %s", op.id, reason)
        if force:
            deadline = self._in(self._force_wait(FORCE_NO_WAIT))
        else:
            deadline = self._in(self._get_settings().remove_timeout)
        return self._step(op, journal_mod.ROLLBACK, reason=reason, deadline=deadline, forced=force)

    async def _call(
        self, what: str, call: Callable[[], Awaitable[object]], deadline: datetime.datetime | None
    ) -> None:
        """Make a controller call, retrying transient errors with backoff until `deadline`."""
        await retrying.call(what, self._backend, deadline, self._now, call)

    async def _wait_view(
        self, predicate: Callable[[model_view.ModelView], bool], deadline: datetime.datetime | None
    ) -> bool:
        """Wait (event-driven) until `predicate` holds on a connected view, or the deadline.

        A deadline that passes while disconnected is judged after one fresh look at the
        reconnected view: a stale view must not turn into a failed (or leaking) operation.
        """
        while True:
            if self._backend.connected and predicate(self._view):
                return True
            remaining = self._remaining(deadline)
            if remaining <= 0:
                if self._backend.connected:
                    return False
                await self._backend.wait_synced(RECHECK)
                continue
            wait = remaining if self._backend.connected else min(remaining, RECHECK)
            await self._view.wait_for_change(wait)

    # -- steps -----------------------------------------------------------------------------

    async def _plan(self, op: journal_mod.Operation) -> journal_mod.Operation:
        if op.dry_run:
            if op.old_unit is None:
                logger.info("DRY-RUN: would add a unit to %s", op.service)
            else:
                logger.info("DRY-RUN: would replace %s with a new unit", op.old_unit)
            return self._finish(op, journal_mod.DRY_RUN, "dry run: nothing changed")
        settle_timeout = self._get_settings().policy_for(op.service).settle_timeout
        return self._step(op, journal_mod.ADD, deadline=self._in(settle_timeout))

    async def _add_recovering(self, op: journal_mod.Operation) -> journal_mod.Operation:
        """ADD after a restart: adopt a unit the interrupted call may have created."""
        if op.new_unit is None:
            if not await self._wait_view(lambda _: True, op.deadline):
                return self._start_rollback(op, "not connected before the deadline")
            adopted = await self._find_added(op)
            if adopted is not None:
                logger.info("operation %s: adopting %s added before the restart", op.id, adopted)
                op = self._journal.update(op, self._now(), new_unit=adopted, born=self._now())
            elif self._remaining(op.deadline) <= 0:
                # Stopped before a unit was added, and its time is up: add nothing now.
                return self._start_rollback(
                    op, "the agent stopped before the unit was added and the add deadline passed"
                )
        return await self._add(op)

    async def _find_added(self, op: journal_mod.Operation) -> str | None:
        """The unit an ADD whose answer was lost created, if any, from a fresh FullStatus.

        Watcher deltas come late, so only a status poll made now (Juju reads its database
        for it) can tell whether the call took effect. A poll that fails raises: adding
        another unit without knowing could leak one.
        """
        await self._backend.refresh_status()
        return policy.find_adopted_unit(self._view, op.service, op.id, op.max_unit_number)

    async def _settle_recovering(self, op: journal_mod.Operation) -> journal_mod.Operation:
        """SETTLE after a restart: the original deadline, but time to watch one settle period."""
        least = self._get_settings().policy_for(op.service).settle_period + RECHECK
        if self._remaining(op.deadline) < least:
            op = self._journal.update(op, self._now(), deadline=self._in(least))
        return await self._settle(op)

    async def _add(self, op: journal_mod.Operation) -> journal_mod.Operation:
        if op.new_unit is None:
            try:
                name = await self._add_unit(op)
            except DeadlineError as exc:
                return self._start_rollback(op, f"could not add a unit in time: {exc}")
            except backend_mod.BackendError as exc:
                return self._start_rollback(op, f"add-unit failed: {exc}")
            now = self._now()
            op = self._journal.update(op, now, new_unit=name, born=now)
            logger.info("operation %s: added %s", op.id, name)
        assert op.new_unit is not None
        born = journal_mod.to_iso(op.born or self._now()) or ""
        marks = {policy.OP_ANNOTATION: op.id}
        if op.old_unit is not None:
            # Signed, so that only Whirlwind's own units can take over what is left in flight.
            marks[provenance.SIG_ANNOTATION] = provenance.sign(
                self._get_op_key(),
                op_id=op.id,
                service=op.service,
                old_unit=op.old_unit,
                new_unit=op.new_unit,
                born=born,
            )
        await self._annotate(op, op.new_unit, {policy.BORN_ANNOTATION: born, **marks})
        if op.old_unit is not None:
            await self._annotate(op, op.old_unit, marks)
        return self._step(op, journal_mod.SETTLE)

    async def _add_unit(self, op: journal_mod.Operation) -> str:
        """AddUnits, retried on transient errors; after one, adopt the unit if it was added."""
        async for attempt in retrying.until_deadline(
            f"add-unit {op.service}", self._backend, op.deadline, self._now
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    # The failed call may have reached the controller: look before adding.
                    adopted = await self._find_added(op)
                    if adopted is not None:
                        logger.info("operation %s: the failed add-unit created %s", op.id, adopted)
                        return adopted
                return await self._backend.add_unit(op.service)
        raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover

    async def _annotate(
        self, op: journal_mod.Operation, unit: str, values: dict[str, str]
    ) -> None:
        current = self._view.get_unit_annotations(unit)
        if all(current.get(k) == v for k, v in values.items()):
            return
        try:
            await self._call(
                f"annotate {unit}",
                lambda: self._backend.set_unit_annotations(unit, values),
                op.deadline,
            )
        except (DeadlineError, backend_mod.BackendError) as exc:
            # Annotations help recovery; the journal already knows the unit, so go on.
            logger.warning("operation %s: cannot annotate %s: %s", op.id, unit, exc)

    async def _settle(self, op: journal_mod.Operation) -> journal_mod.Operation:
        new = op.new_unit
        if new is None:
            return self._start_rollback(op, "no new unit to settle")
        state = policy.SettleState()
        # A unit added but not seen yet is pending: its delta comes after AddUnits answered.
        # A status poll made after now that does not list it means it is gone.
        seen = False
        mark = self._view.status_requests
        while True:
            now = self._now()
            settle_period = self._get_settings().policy_for(op.service).settle_period
            if self._backend.connected:
                view = self._view
                unit = view.get_unit(new)
                seen = seen or unit is not None
                absent = unit is None and view.polled_since(mark) and new not in view.status_units
                machine_id = unit.machine_id if unit is not None else None
                machine = view.machines.get(machine_id) if machine_id is not None else None
                if machine_id is not None and op.new_machine != machine_id:
                    op = self._journal.update(op, now, new_machine=machine_id)
                failure = policy.get_settle_failure(
                    unit, machine, name=new, lost=view.is_lost(new), seen=seen or absent
                )
                if failure is not None:
                    return self._start_rollback(op, failure.reason, force=failure.needs_force)
                marker = unit.status_marker if unit is not None else None
                state = state.observe(view.is_healthy(new), now, marker)
            else:
                # Blind while disconnected: health must be seen again, continuously.
                state = policy.SettleState()
            if state.is_settled(now, settle_period):
                if await self._is_still_healthy(new):
                    logger.info("operation %s: %s is healthy and settled", op.id, new)
                    remove_timeout = self._get_settings().remove_timeout
                    return self._step(op, journal_mod.REMOVE, deadline=self._in(remove_timeout))
                # Not confirmed: health must be seen again for a whole settle period.
                state = policy.SettleState()
                await asyncio.sleep(CONFIRM_PAUSE)
                continue
            remaining = self._remaining(op.deadline)
            if remaining <= 0 and not self._backend.connected:
                await self._backend.wait_synced(RECHECK)
                continue
            if remaining <= 0:
                timeout = self._get_settings().policy_for(op.service).settle_timeout
                reason = f"new unit {new} did not settle within {timeout}s"
                if not seen:
                    reason = f"new unit {new} never showed up within {timeout}s"
                return self._start_rollback(op, reason, force=self._view.is_broken(new))
            wait = remaining
            left = state.remaining(now, settle_period)
            if left is not None:
                wait = min(wait, left)
            if not self._backend.connected:
                wait = min(wait, RECHECK)
            await self._view.wait_for_change(wait)

    async def _is_still_healthy(self, unit: str) -> bool:
        """Confirm health with a fresh status poll.

        Lost agents never show in watcher deltas, and deltas come late: the poll reads
        Juju's database now, so a unit that broke since its last delta is not accepted.
        """
        try:
            await asyncio.wait_for(self._backend.refresh_status(), STATUS_TIMEOUT)
        except (backend_mod.BackendError, asyncio.TimeoutError) as exc:
            logger.info("cannot confirm %s with a status poll (%s); looking again", unit, exc)
            return False
        if self._view.is_healthy(unit) and self._view.is_healthy_in_status(unit):
            return True
        logger.info("%s is not healthy in a fresh status poll; settling again", unit)
        return False

    async def _remove(self, op: journal_mod.Operation) -> journal_mod.Operation:
        old = op.old_unit
        unit = self._view.get_unit(old) if old is not None else None
        if old is not None and unit is not None:
            if unit.life == model_view.ALIVE and not op.forced:
                # Never leave fewer healthy units than there were when we began.
                safe = await self._wait_view(
                    lambda v: (
                        policy.healthy_after_removal(v, op.service, old) >= op.healthy_at_start
                    ),
                    op.deadline,
                )
                if not safe:
                    return self._finish(
                        op,
                        journal_mod.FAILED,
                        f"kept {old} and {op.new_unit}: removing {old} would leave fewer than "
                        f"{op.healthy_at_start} healthy units of {op.service}",
                    )
            op, gone = await self._remove_unit(op, old)
            if not gone:
                return self._finish(
                    op, journal_mod.FAILED, f"old unit {old} is still there after forced removal"
                )
        return self._step(op, journal_mod.CLEANUP, deadline=self._in(CLEANUP_GRACE))

    async def _remove_unit(
        self, op: journal_mod.Operation, name: str
    ) -> tuple[journal_mod.Operation, bool]:
        """Destroy `name` and wait; escalate to force at the step's deadline, or at once.

        A unit in hook error or with a lost agent never runs its stop hooks, so waiting for
        it is wasted time: it is removed with force (and no max-wait) straight away. Juju
        answers DestroyUnit of a unit that does not exist with an error: it is gone already.
        """
        if not op.forced and self._view.is_broken(name):
            op = self._escalate(op, name, "its agent cannot run the stop hooks")
        if not op.forced:
            unit = self._view.get_unit(name)
            # A unit not in the view may still be on its way (deltas are late): ask Juju.
            if unit is None or unit.life == model_view.ALIVE:
                try:
                    await self._call(
                        f"destroy {name}", lambda: self._backend.destroy_unit(name), op.deadline
                    )
                except backend_mod.NotFoundError:
                    self._view.forget_unit(name)
                    return op, True
                except (DeadlineError, backend_mod.BackendError) as exc:
                    logger.warning("operation %s: cannot destroy %s: %s", op.id, name, exc)
            if await self._wait_gone(name, op.deadline, until_broken=True):
                return op, True
            why = f"still there after {self._get_settings().remove_timeout}s"
            if self._view.is_broken(name):
                why = "its agent cannot run the stop hooks"
            op = self._escalate(op, name, why)
        max_wait = FORCE_NO_WAIT if self._view.is_broken(name) else FORCE_MAX_WAIT
        if self._remaining(op.deadline) <= 0:
            # The deadline passed while the agent was down: the forced removal gets its time.
            op = self._journal.update(
                op, self._now(), deadline=self._in(self._force_wait(max_wait))
            )
        try:
            await self._call(
                f"destroy {name} with force",
                lambda: self._backend.destroy_unit(name, force=True, max_wait=max_wait),
                op.deadline,
            )
        except backend_mod.NotFoundError:
            self._view.forget_unit(name)
            return op, True
        except (DeadlineError, backend_mod.BackendError) as exc:
            logger.warning("operation %s: cannot force-destroy %s: %s", op.id, name, exc)
        return op, await self._wait_gone(name, op.deadline)

    async def _wait_gone(
        self, name: str, deadline: datetime.datetime | None, *, until_broken: bool = False
    ) -> bool:
        """Wait until `name` is gone (True), or until the deadline or it breaks (False).

        With `until_broken` the wait also ends when the unit cannot run hooks any more.
        Gone means the view showed the unit and then its removal, or, for a unit the view
        never showed (its deltas still on their way), a status poll made after now does not
        list it; such a unit is looked for with a status poll every RECHECK seconds.
        """
        seen = self._view.get_unit(name) is not None
        mark = self._view.status_requests

        def settled(view: model_view.ModelView) -> bool:
            nonlocal seen
            if view.get_unit(name) is not None:
                seen = True
                return until_broken and view.is_broken(name)
            return seen or (view.polled_since(mark) and name not in view.status_units)

        while True:
            limit = deadline
            if not seen:
                limit = min(deadline or self._now(), self._in(RECHECK))
            if await self._wait_view(settled, limit):
                return self._view.get_unit(name) is None
            if self._remaining(deadline) <= 0:
                return False
            try:
                await self._backend.refresh_status()
            except backend_mod.BackendError as exc:
                logger.info("cannot poll status while waiting for %s to go: %s", name, exc)

    def _escalate(self, op: journal_mod.Operation, name: str, why: str) -> journal_mod.Operation:
        """Journal the switch to a forced removal of `name`, with the deadline that needs."""
        logger.warning("operation %s: removing %s with force: %s", op.id, name, why)
        max_wait = FORCE_NO_WAIT if self._view.is_broken(name) else FORCE_MAX_WAIT
        return self._journal.update(
            op,
            self._now(),
            log=f"{op.step}-force",
            forced=True,
            deadline=self._in(self._force_wait(max_wait)),
        )

    def _force_wait(self, max_wait: float) -> float:
        """How long a forced removal may take.

        state/cleanup.go: the unit is forced dead one max-wait after the request and removed
        one max-wait after that; each cleanup may run up to the cleaner's period late. The
        operator's remove-timeout comes on top as the margin.
        """
        return 2 * (max_wait + JUJU_CLEANUP_PERIOD) + self._get_settings().remove_timeout

    async def _cleanup(self, op: journal_mod.Operation) -> journal_mod.Operation:
        note = ""
        if op.old_machine is not None and op.old_machine_dedicated:
            note = await self._cleanup_machine(op, op.old_machine, op.deadline)
        return self._finish(op, journal_mod.OK, note)

    async def _cleanup_machine(
        self, op: journal_mod.Operation, machine_id: str, grace: datetime.datetime | None
    ) -> str:
        """Remove the old unit's emptied machine if Juju did not; return a note if kept.

        Only a machine seen dedicated to the old unit at PLAN gets here. Juju removes such a
        machine itself (state/unit.go destroyHostOps); this is the fallback.
        """
        if await self._wait_view(lambda v: machine_id not in v.machines, grace):
            return ""
        machine = self._view.machines.get(machine_id)
        if machine is None or machine.life != model_view.ALIVE:
            return ""
        if machine.is_controller:
            return f"machine {machine_id} kept: it is a controller"
        if self._view.get_units_on_machine(machine_id):
            return f"machine {machine_id} kept: it hosts other units"
        # A machine whose agent is down cannot take itself down: only force removes it.
        force = machine_id in self._view.down_machines
        logger.info("operation %s: removing empty machine %s (force=%s)", op.id, machine_id, force)
        deadline = self._in(min(CLEANUP_GRACE, self._get_settings().remove_timeout))
        try:
            await self._call(
                f"destroy machine {machine_id}",
                lambda: self._backend.destroy_machine(machine_id, force=force),
                deadline,
            )
        except backend_mod.NotFoundError:
            return ""
        except (DeadlineError, backend_mod.BackendError) as exc:
            logger.warning("operation %s: cannot remove machine %s: %s", op.id, machine_id, exc)
            return f"machine {machine_id} kept: {exc}"
        if not await self._wait_view(lambda v: machine_id not in v.machines, deadline):
            return f"machine {machine_id} still being removed"
        return ""

    async def _rollback(self, op: journal_mod.Operation) -> journal_mod.Operation:
        """Remove the new unit; its machine is Juju's to remove (destroyHostOps), never ours.

        The new unit may have landed on a clean machine that existed before (AddUnits places
        units with AssignCleanEmpty): Whirlwind never removes a machine it did not see being
        dedicated to the old unit.
        """
        reason = op.reason or "rolled back"
        # The ADD may have reached the controller although we never learnt the name.
        if op.new_unit is None and await self._wait_view(lambda _: True, op.deadline):
            try:
                adopted = await self._find_added(op)
            except backend_mod.BackendError as exc:
                logger.warning("operation %s: cannot look for an added unit: %s", op.id, exc)
                adopted = policy.find_adopted_unit(
                    self._view, op.service, op.id, op.max_unit_number
                )
            if adopted is not None:
                op = self._journal.update(op, self._now(), new_unit=adopted)
        new = op.new_unit
        if new is None:
            return self._finish(op, journal_mod.ROLLED_BACK, f"{reason}; no unit was added")
        unit = self._view.get_unit(new)
        machine_id = op.new_machine or (unit.machine_id if unit is not None else None)
        if machine_id is not None and machine_id != op.new_machine:
            op = self._journal.update(op, self._now(), new_machine=machine_id)
        op, gone = await self._remove_unit(op, new)
        if not gone:
            return self._finish(
                op, journal_mod.FAILED, f"{reason}; new unit {new} could not be removed"
            )
        if machine_id is not None and not await self._wait_view(
            lambda v: machine_id not in v.machines, self._in(CLEANUP_GRACE)
        ):
            reason += f"; machine {machine_id} is still there (left to Juju)"
        return self._finish(op, journal_mod.ROLLED_BACK, reason)

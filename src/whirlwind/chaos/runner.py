"""Chaos in the agent: record the planner's draws, start its injections, revert on time.

The planner decides (planner/chaos.py: guard, draws, victim); the injector acts and journals
(chaos/injector.py). This runner is the glue the engine holds: it keeps the seed and the
recorded draws in the journal (replay needs every decided tick, pattern positions and
max-per-day need the recent ones), starts at most one injection per application at a time,
reverts timed injections when their duration ends, and reverts what it can when the agent
stops, each step with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

from whirlwind import backend as backend_mod
from whirlwind import journal as journal_mod
from whirlwind.chaos import draws as draws_mod
from whirlwind.chaos import injector as injector_mod
from whirlwind.planner import chaos as planner_chaos

logger = logging.getLogger(__name__)

SEED_KEY = "chaos-seed"
DRAWS_KEY = "chaos-draws"
# Draws kept: the last day's (max-per-day) and those of the current arming (pattern).
KEEP = datetime.timedelta(hours=24)
MAX_DRAWS = 5000
# Deadline for reverting everything when the agent stops: with the 5 s for injections being
# made to end, well within the unit's TimeoutStopSec=60 (workload.py).
STOP_TIMEOUT = 30.0


def keep_draws(
    draws: Iterable[draws_mod.Draw], now: datetime.datetime
) -> tuple[draws_mod.Draw, ...]:
    """The draws still needed: the last 24 h, and every one of the newest arming."""
    found = list(draws)
    newest = max((d.armed_at for d in found), default=None)
    kept = [d for d in found if now - d.at <= KEEP or d.armed_at == newest]
    return tuple(kept[-MAX_DRAWS:])


class ChaosRunner:
    """The engine's chaos: seed and draws kept in the journal, injections, reverts."""

    def __init__(
        self,
        juju: backend_mod.JujuBackend,
        journal: journal_mod.Journal,
        *,
        now: Callable[[], datetime.datetime],
        seed: int | None = None,
        injector: injector_mod.ChaosInjector | None = None,
    ) -> None:
        self._journal = journal
        self._now = now
        self._injector = injector or injector_mod.ChaosInjector(juju, journal, now=now)
        kept = journal.get_state(SEED_KEY)
        self._saved = isinstance(kept, int) and not isinstance(kept, bool)
        self._seed = self._choose_seed(seed, kept if self._saved else None)
        loaded = journal.get_state(DRAWS_KEY)
        found = (
            [draws_mod.Draw.from_state(d) for d in loaded or []]
            if isinstance(loaded, list)
            else []
        )
        self._draws = tuple(d for d in found if d is not None)
        self._tasks: dict[str, asyncio.Task[journal_mod.ChaosInjection | None]] = {}

    @property
    def seed(self) -> int:
        """The seed of the draws (the settings' chaos-seed, else one chosen and journaled)."""
        return self._seed

    @property
    def draws(self) -> tuple[draws_mod.Draw, ...]:
        """The draws kept (oldest first)."""
        return self._draws

    @property
    def pending(self) -> tuple[journal_mod.ChaosInjection, ...]:
        """Timed injections not yet reverted."""
        return self._injector.pending

    def busy(self) -> set[str]:
        """Applications with an injection being made right now."""
        return {service for service, task in self._tasks.items() if not task.done()}

    def facts(self) -> planner_chaos.ChaosFacts:
        """What the chaos planner needs: the seed and the recorded draws.

        A draw's `until` counts its duration from the decision, but the injection starts
        only once its exec ran (seconds later, more behind a busy uniter) and is undone at
        its revert: while that is pending, the draw stays in effect until the revert is due,
        so the guard's `active` gate never lets a new injection overlap it.
        """
        due: dict[tuple[Any, Any, Any], datetime.datetime] = {}
        for found in self.pending:
            data = found.draw if isinstance(found.draw, dict) else {}
            if found.revert_due is not None:
                due[(data.get("service"), data.get("tick"), data.get("armed-at"))] = (
                    found.revert_due
                )
        draws = []
        for draw in self._draws:
            end = due.get((draw.service, draw.tick, draw.armed_at.isoformat()))
            if end is not None and draw.until is not None and end > draw.until:
                draw = dataclasses.replace(draw, until=end)
            draws.append(draw)
        return planner_chaos.ChaosFacts(seed=self._seed, draws=tuple(draws))

    def follow_settings(self, seed: int | None) -> None:
        """A chaos-seed in the settings replaces the seed (a replay); journaled at next draw."""
        if seed is not None and seed != self._seed:
            logger.info("chaos: seed %s from the settings", seed)
            self._seed = seed
            self._saved = False

    def _choose_seed(self, seed: int | None, kept: int | None) -> int:
        """The settings' seed, else the journal's, else a new one (journaled at the first draw)."""
        if seed is not None:
            if seed != kept:
                self._saved = False
            return seed
        if kept is not None:
            return kept
        return random.SystemRandom().getrandbits(31)

    def record(self, draw: draws_mod.Draw) -> None:
        """Journal one decided tick (whether it injects or not), before anything acts."""
        if not self._saved:
            self._journal.set_state(SEED_KEY, self._seed)
            self._saved = True
        self._draws = keep_draws((*self._draws, draw), self._now())
        self._journal.set_state(DRAWS_KEY, [d.to_state() for d in self._draws])
        logger.info(
            "chaos: %s tick %s: %s (seed %s)",
            draw.service,
            draw.tick,
            f"{draw.kind} on {draw.victim}" if draw.inject else "no injection",
            self._seed,
        )

    def start(
        self, plans: Iterable[planner_chaos.ChaosPlan], busy: set[str], token: Callable[[], str]
    ) -> list[str]:
        """Record every decided tick and start the injections of applications not busy.

        Returns the applications where an injection started. A proposal on a busy application
        (a replacement started this cycle) is recorded as decided and not made: the guard
        would have held it a moment later.
        """
        started = []
        for chaos_plan in plans:
            if chaos_plan.draw is None:
                continue
            self.record(chaos_plan.draw)
            proposal = chaos_plan.proposal
            if proposal is None:
                continue
            if proposal.service in busy or proposal.service in self.busy():
                logger.info("chaos: %s is busy: tick %s not made", proposal.service, proposal.tick)
                continue
            request = self._request(proposal, chaos_plan.draw, token())
            task = asyncio.ensure_future(self._inject(request))
            self._tasks[proposal.service] = task
            started.append(proposal.service)
        return started

    @staticmethod
    def _request(
        proposal: planner_chaos.ChaosProposal, draw: draws_mod.Draw, token: str
    ) -> injector_mod.InjectionRequest:
        wrench = proposal.wrench
        return injector_mod.InjectionRequest(
            op_id=f"chaos-{token}",
            kind=proposal.kind,
            service=proposal.service,
            unit=proposal.unit,
            machine_id=proposal.machine or None,
            duration=float(proposal.duration or 0),
            delay=(proposal.delay_ms or 0) / 1000,
            wrench_category=wrench.category if wrench is not None else None,
            wrench_feature=wrench.feature if wrench is not None else None,
            dry_run=proposal.dry_run,
            draw=draw.to_state(),
        )

    async def _inject(
        self, request: injector_mod.InjectionRequest
    ) -> journal_mod.ChaosInjection | None:
        try:
            return await self._injector.inject(request)
        except journal_mod.JournalCorruptError:
            raise
        except Exception:  # one bad injection must not end the agent's loop
            logger.exception("chaos %s failed", request.op_id)
            return None

    async def revert_due(self) -> None:
        """Revert timed injections whose duration has ended (never raises)."""
        if not self.pending:
            return
        try:
            await self._injector.revert_due(self._now())
        except journal_mod.JournalCorruptError:
            raise
        except Exception:
            logger.exception("chaos: reverting failed; trying again next cycle")

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """The agent stops: injections being made end, then everything pending is reverted."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        self._tasks.clear()
        if not self.pending:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            try:
                await asyncio.wait_for(self._injector.revert_all(), timeout)
            except journal_mod.JournalError as exc:
                logger.error("chaos: could not revert on stop: %s", exc)
            except backend_mod.BackendError as exc:
                logger.error("chaos: could not revert on stop: %s", exc)

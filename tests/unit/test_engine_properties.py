"""Property test: random ticks, faults, crashes, restarts and control calls keep the invariants.

Invariants (ARCHITECTURE.md, "Safety invariants"):
- a removal never leaves a target with fewer healthy units than it had before we began;
- at most one operation in flight per application, and at most max-in-flight overall;
- Whirlwind's own application is never touched, untargeted ones only on replace-now;
- no leaked units (every unit we added is kept as a replacement or removed again) and no lost
  units (every application ends with as many healthy units as it started with);
- the history is consistent: every operation finishes, with a "done" step.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import tempfile
from collections.abc import Awaitable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit import inmemory_backend as imb
from whirlwind import backend as backend_mod
from whirlwind import control
from whirlwind import journal as journal_mod
from whirlwind import settings as settings_mod

# Modest by default to keep the unit suite fast; raise it to hunt for bugs.
EXAMPLES = int(os.environ.get("WHIRLWIND_PROPERTY_EXAMPLES", "40"))
INITIAL = {"app": 3, "web": 2, "other": 2, "whirlwind": 1}
TARGETS = ("app", "web")
MUTATING = ("add_unit", "destroy_unit", "set_unit_annotations", "destroy_machine")

_actions = st.one_of(
    st.tuples(st.just("tick"), st.integers(min_value=5, max_value=1200)),
    st.tuples(st.just("fault"), st.sampled_from(imb.FAULTS)),
    st.tuples(st.just("stuck"), st.sampled_from(TARGETS), st.integers(0, 6)),
    st.tuples(st.just("disconnect"), st.integers(min_value=1, max_value=300)),
    st.tuples(st.just("transient"), st.sampled_from(MUTATING), st.booleans()),
    st.tuples(st.just("crash"), st.integers(min_value=0, max_value=12)),
    st.tuples(
        st.just("replace-now"),
        st.sampled_from((*TARGETS, "other", "whirlwind", "ghost")),
        st.booleans(),
    ),
    st.tuples(st.just("pause")),
    st.tuples(st.just("resume")),
)


class _Crash:
    """Arms a SimulatedCrash after a number of journal commits or backend calls."""

    def __init__(self) -> None:
        self.countdown: int | None = None
        self.fired = False

    def hit(self) -> None:
        if self.countdown is None:
            return
        if self.countdown == 0:
            self.countdown = None
            self.fired = True
            raise imb.SimulatedCrash("crash")
        self.countdown -= 1


class _World:
    """The simulated model, the agent running on it, and what the checks need to know."""

    def __init__(self, state_dir: pathlib.Path, max_in_flight: int) -> None:
        self.state_dir = state_dir
        self.max_in_flight = max_in_flight
        self.backend = imb.InMemoryBackend()
        for app, units in INITIAL.items():
            self.backend.add_application(app, units)
        self.crash = _Crash()
        self.backend.after_call = lambda method, _: self.crash.hit()
        self.requested: set[str] = set()
        self.violations: list[str] = []
        self.agent: imb.Agent | None = None

    def monitor(self, journal: journal_mod.Journal) -> None:
        unfinished = journal.get_unfinished()
        services = [op.service for op in unfinished]
        if len(set(services)) != len(services):
            self.violations.append(f"two operations in flight on one application: {services}")
        if len(unfinished) > self.max_in_flight:
            self.violations.append(f"{len(unfinished)} operations in flight")

    async def start(self, **overrides: Any) -> None:
        journal_box: list[journal_mod.Journal] = []

        def on_commit(_: str) -> None:
            # Commits before the box is filled are recovery's, which start nothing new.
            if journal_box:
                self.monitor(journal_box[0])
            self.crash.hit()

        self.agent = await imb.start_agent(
            self.backend,
            self.state_dir,
            on_commit=on_commit,
            services=TARGETS,
            own_application="whirlwind",
            max_in_flight=self.max_in_flight,
            max_consecutive_failures=2,
            **overrides,
        )
        journal_box.append(self.agent.journal)

    async def crash_and_restart(self, **overrides: Any) -> None:
        assert self.agent is not None
        if not self.agent.task.done():
            self.agent.task.cancel()
        await asyncio.wait([self.agent.task])
        self.agent.journal.close()
        self.crash.countdown = None
        self.crash.fired = False
        await self.start(**overrides)

    async def control_call(self, call: Awaitable[Any]) -> None:
        try:
            await call
        except control.ControlError:
            pass
        except imb.SimulatedCrash:
            await self.crash_and_restart()

    async def step(self, action: tuple[Any, ...]) -> None:
        assert self.agent is not None
        engine = self.agent.engine
        kind = action[0]
        if kind == "tick":
            await asyncio.sleep(action[1])
        elif kind == "fault":
            self.backend.next_unit_faults.append(action[1])
        elif kind == "stuck":
            self.backend.stuck_dying.add(f"{action[1]}/{action[2]}")
        elif kind == "disconnect":
            self.backend.disconnect(seconds=action[1])
        elif kind == "transient":
            error = backend_mod.BackendError("connection reset", transient=True)
            hooks = self.backend.fail_after_apply if action[2] else self.backend.fail_calls
            hooks.setdefault(action[1], []).append(error)
        elif kind == "crash":
            self.crash.countdown = action[1]
        elif kind == "replace-now":
            self.requested.add(action[1])
            request = control.ReplaceNowRequest(action[1], wait=False, dry_run=action[2])
            await self.control_call(engine.replace_now(request))
        elif kind == "pause":
            await self.control_call(engine.pause())
        elif kind == "resume":
            await self.control_call(engine.resume())
        await asyncio.sleep(0)
        # A crash anywhere (even in an operation's task) is the whole process going down.
        if self.crash.fired or self.agent.task.done():
            await self.crash_and_restart()

    async def finish(self) -> list[journal_mod.Operation]:
        """Restart without faults (recovery only), let everything settle, return the history."""
        self.crash.countdown = None
        self.backend.next_unit_faults.clear()
        self.backend.fail_calls.clear()
        self.backend.fail_after_apply.clear()
        self.backend.reconnect()
        # No interval due, and not paused: recovery only (pause holds recovery too).
        await self.crash_and_restart(interval=settings_mod.MAX_INTERVAL)
        agent = self.agent
        assert agent is not None
        await agent.engine.resume()
        await imb.wait_until(lambda: not agent.journal.get_unfinished(), timeout=20000)
        await asyncio.sleep(900)
        history = agent.history()
        await agent.stop()
        return history


def _check(world: _World, history: list[journal_mod.Operation]) -> None:
    backend = world.backend
    assert world.violations == []
    # Never below the starting healthy count because of a removal we asked for.
    for record in backend.destroyed:
        assert record.healthy_left >= INITIAL[record.application], record
    # Own application never touched; untargeted ones only when asked by replace-now.
    allowed = {*TARGETS, *(world.requested & {"other"})}
    for call in backend.calls:
        if call.method in MUTATING and call.method != "destroy_machine":
            target = str(call.args[0]).split("/")[0]
            assert target in allowed, call
    assert backend.get_live_units("whirlwind") == ["whirlwind/0"]
    # History: everything finished, with a consistent step log.
    for op in history:
        assert op.is_finished, op
        assert op.steps[-1].step == "done", op
        assert op.result in ("ok", "rolled-back", "dry-run"), op
    # No leaked and no lost units.
    kept = {op.new_unit for op in history if op.result == "ok"}
    replaced = {op.old_unit for op in history if op.result == "ok"}
    for app, count in INITIAL.items():
        live = set(backend.get_live_units(app))
        initial = {f"{app}/{n}" for n in range(count)}
        added = {u for u in backend.added if u.startswith(f"{app}/")}
        # Kept replacements may themselves have been replaced later.
        assert live == (initial | (added & kept)) - replaced, app
        assert backend.model.count_healthy(app) == count, app
    # No machine left without a unit.
    machines = {u.machine_id for u in backend.model.units.values()}
    assert set(backend.get_machine_ids()) == machines


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    actions=st.lists(_actions, min_size=1, max_size=25),
    max_in_flight=st.integers(min_value=1, max_value=2),
)
def test_random_histories_keep_the_safety_invariants(
    actions: list[tuple[Any, ...]], max_in_flight: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = _World(pathlib.Path(tmp), max_in_flight)

        async def scenario() -> list[journal_mod.Operation]:
            await world.start()
            for action in actions:
                await world.step(action)
            return await world.finish()

        history = imb.run_virtual(scenario())
        _check(world, history)

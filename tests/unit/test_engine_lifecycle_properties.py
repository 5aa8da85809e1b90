"""Property test for the restoring triggers: units break, get lost and are removed by hand.

Invariants, whatever happens:
- Whirlwind removes a unit it replaces only while that unit's replacement is healthy (so it
  never lowers the healthy count by its own hand), and never more than max-in-flight
  operations run, one per application;
- in the end every broken unit is healed unless a mass failure holds healing back (and then
  the status says so), and the application with `units: 3` has at least three live units;
- no machine is left without a unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit import inmemory_backend as imb
from whirlwind import control, policies
from whirlwind import journal as journal_mod

EXAMPLES = int(os.environ.get("WHIRLWIND_PROPERTY_EXAMPLES", "40"))
INITIAL = {"app": 3, "web": 4, "whirlwind": 1}
TARGETS = ("app", "web")
WANTED = 3  # policies: app: {units: 3}
HEAL_AFTER = 120

_unit_ref = st.tuples(st.sampled_from(TARGETS), st.integers(0, 8))
_actions = st.one_of(
    st.tuples(st.just("tick"), st.integers(min_value=5, max_value=900)),
    st.tuples(st.just("break"), _unit_ref),
    st.tuples(st.just("lose"), _unit_ref),
    st.tuples(st.just("mend"), _unit_ref),
    st.tuples(st.just("remove"), _unit_ref),
    st.tuples(st.just("fault"), st.sampled_from(imb.FAULTS)),
    st.tuples(st.just("pause")),
    st.tuples(st.just("resume")),
)


class _World:
    def __init__(self, state_dir: pathlib.Path, max_in_flight: int, heal: bool) -> None:
        self.state_dir = state_dir
        self.max_in_flight = max_in_flight
        self.heal = heal
        self.backend = imb.InMemoryBackend()
        for app, units in INITIAL.items():
            self.backend.add_application(app, units)
        self.violations: list[str] = []
        self.agent: imb.Agent | None = None
        self.backend.before_call = self.check_call

    def check_call(self, method: str, args: tuple[Any, ...]) -> None:
        if self.agent is None:
            return
        unfinished = self.agent.journal.get_unfinished()
        services = [op.service for op in unfinished]
        if len(set(services)) != len(services) or len(unfinished) > self.max_in_flight:
            self.violations.append(f"in flight: {services}")
        if method != "destroy_unit":
            return
        unit = str(args[0])
        for op in unfinished:
            replacement = op.new_unit
            if (
                op.old_unit == unit
                and op.step in ("remove", "cleanup")
                and (replacement is None or not self.backend.is_healthy_now(replacement))
            ):
                self.violations.append(f"{unit} removed while {replacement} is not healthy")

    async def start(self) -> None:
        self.agent = await imb.start_agent(
            self.backend,
            self.state_dir,
            services=TARGETS,
            own_application="whirlwind",
            max_in_flight=self.max_in_flight,
            heal=self.heal,
            heal_after=HEAL_AFTER,
            policies=(("app", policies.Overrides(units=WANTED)),),
        )

    def _unit(self, ref: tuple[str, int]) -> str | None:
        unit = f"{ref[0]}/{ref[1]}"
        return unit if unit in self.backend.get_live_units(ref[0]) else None

    async def step(self, action: tuple[Any, ...]) -> None:
        assert self.agent is not None
        kind = action[0]
        unit = self._unit(action[1]) if kind in ("break", "lose", "mend", "remove") else None
        if kind == "tick":
            await asyncio.sleep(action[1])
        elif kind == "break" and unit:
            self.backend.set_unit_status(unit, "error", message='hook failed: "update-status"')
        elif kind == "lose" and unit:
            self.backend.set_lost(unit)
        elif kind == "mend" and unit:
            self.backend.set_lost(unit, lost=False)
            self.backend.set_unit_status(unit, "active")
        elif kind == "remove" and unit:
            self.backend.remove_by_operator(unit)
        elif kind == "fault":
            self.backend.next_unit_faults.append(action[1])
        elif kind in ("pause", "resume"):
            engine = self.agent.engine
            with contextlib.suppress(control.ControlError):
                await (engine.pause() if kind == "pause" else engine.resume())
        await asyncio.sleep(0)

    def broken(self, app: str) -> list[str]:
        return [
            u
            for u in self.backend.get_live_units(app)
            if not self.backend.is_healthy_now(u) and self.backend.model.is_broken(u)
        ]

    def restored(self) -> bool:
        assert self.agent is not None
        if self.agent.journal.get_unfinished():
            return False
        if len(self.backend.get_live_units("app")) < WANTED:
            return False
        if not self.heal:
            return True
        plan = self.agent.engine.plan
        for app in TARGETS:
            target = plan.get(app) if plan is not None else None
            mass = target is not None and any("mass failure" in n for n in target.notes)
            if self.broken(app) and not mass:
                return False
        return True

    async def finish(self) -> list[journal_mod.Operation]:
        """No more faults: resume and wait until healing and the count have restored it all."""
        agent = self.agent
        assert agent is not None
        self.backend.next_unit_faults.clear()
        await agent.engine.resume()  # also clears the breakers
        try:
            await imb.wait_until(self.restored, timeout=30000)
        except AssertionError:
            self.violations.append(
                f"not restored: live {[self.backend.get_live_units(a) for a in TARGETS]}, "
                f"broken {[self.broken(a) for a in TARGETS]}"
            )
        # Stop the rotation (healing would go on) and let what runs finish.
        await agent.engine.pause()
        await imb.wait_until(lambda: not agent.journal.get_unfinished(), timeout=30000)
        await asyncio.sleep(60)  # Juju removes the machines of removed units
        history = agent.history()
        await agent.stop()
        return history


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=st.lists(_actions, min_size=1, max_size=25),
    max_in_flight=st.integers(min_value=1, max_value=2),
    heal=st.booleans(),
)
def test_heal_and_count_keep_the_invariants(
    actions: list[tuple[Any, ...]], max_in_flight: int, heal: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = _World(pathlib.Path(tmp), max_in_flight, heal)

        async def scenario() -> list[journal_mod.Operation]:
            await world.start()
            for action in actions:
                await world.step(action)
            return await world.finish()

        history = imb.run_virtual(scenario())

        assert world.violations == []
        for op in history:
            assert op.is_finished, op
            assert op.steps[-1].step == "done", op
            # failed: the old unit kept because another unit broke meanwhile (the floor holds)
            assert op.result in ("ok", "rolled-back", "failed"), op
            if not heal:
                assert op.trigger != "heal", op
        assert world.backend.get_live_units("whirlwind") == ["whirlwind/0"]
        machines = {u.machine_id for u in world.backend.model.units.values()}
        assert set(world.backend.get_machine_ids()) == machines

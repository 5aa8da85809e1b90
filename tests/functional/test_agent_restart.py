"""kill -9 of the real agent process at every step of a replacement, then a restart.

The agent is `python -m whirlwind run --config FILE` against the fake controller in this event
loop. Each kill point is reached without any hook in the agent: a call is held unanswered with
the fake's latency (the agent is inside AddUnits, Annotations.Set or DestroyUnit), or Juju is
frozen on its manual clock while the agent waits in a step (settling, old unit dying, machine
not yet removed, new unit dying in a rollback), confirmed by the step the agent reports. For
"the call took effect but the agent never read the answer", the process is stopped with
SIGSTOP while the call is held, the fake lets the call take effect, then SIGKILL.

The restarted agent, on the same state folder, must finish (or finish rolling back) the
operation as trigger "recovery": no leaked and no lost units, machines of removed units gone,
history consistent with the model, and the healthy-unit count never below its start.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from tests.fakejuju import fixtures as fake_fixtures
from tests.fakejuju import server as fake_server
from tests.functional import agent_harness as harness
from tests.functional import conftest

APP = "wsgi-example"
OLD = f"{APP}/1"  # the oldest unit that is not the leader (unit 0)
NEW = f"{APP}/3"
OLD_MACHINE = "1"
FOREVER = 3600.0  # a held call is never answered before the kill
TOOK_EFFECT_HOLD = 1.0  # long enough to stop the agent before the held call goes through


@dataclasses.dataclass(frozen=True)
class KillPoint:
    """Where the agent dies: the step it has journaled, and how the test gets it there."""

    name: str
    step: str
    held_call: tuple[str, str] | None = None
    # The held call goes through while the agent is stopped (SIGSTOP), before the SIGKILL.
    took_effect: bool = False
    failing_units: str | None = None
    result: str = "ok"


KILL_POINTS = [
    KillPoint("add-call-in-flight", "add", held_call=("Application", "AddUnits")),
    KillPoint(
        "add-took-effect-unanswered",
        "add",
        held_call=("Application", "AddUnits"),
        took_effect=True,
    ),
    KillPoint("annotate-call-in-flight", "add", held_call=("Annotations", "Set")),
    KillPoint("settling", "settle"),
    KillPoint("destroy-call-in-flight", "remove", held_call=("Application", "DestroyUnit")),
    KillPoint(
        "destroy-took-effect-unanswered",
        "remove",
        held_call=("Application", "DestroyUnit"),
        took_effect=True,
    ),
    KillPoint("old-unit-dying", "remove"),
    KillPoint("cleanup-machine-not-gone", "cleanup"),
    KillPoint(
        "rollback-destroy-call-in-flight",
        "rollback",
        held_call=("Application", "DestroyUnit"),
        failing_units="hook-error",
        result="rolled-back",
    ),
    KillPoint(
        "rollback-new-unit-dying", "rollback", failing_units="hook-error", result="rolled-back"
    ),
]


async def reach(
    point: KillPoint,
    fake: fake_server.FakeJujuController,
    agent: harness.AgentProcess,
    pump: harness.ClockPump,
) -> None:
    """Move the replacement to `point` and leave Juju frozen there."""
    if point.held_call is not None:
        facade, method = point.held_call
        await pump.until(lambda: bool(fake.calls_to(facade, method)), what=f"{method} held")
    elif point.step == "settle":
        await pump.until(lambda: harness.unit_status(fake, NEW) == "maintenance")
    elif point.step == "remove":
        await pump.until(lambda: harness.unit_life(fake, OLD) == "dying", what="old unit dying")
    elif point.step == "cleanup":
        await pump.until(lambda: OLD not in fake.model.units, what="old unit removed")
        assert fake.model.machines[OLD_MACHINE].life == "dying"
    else:
        await pump.until(lambda: harness.unit_life(fake, NEW) == "dying", what="new unit dying")
    await harness.wait_for(agent.in_step(point.step), what=f"agent in step {point.step}")


async def crash(
    point: KillPoint, fake: fake_server.FakeJujuController, agent: harness.AgentProcess
) -> None:
    """SIGKILL the agent; for a call that took effect, only once Juju has acted on it."""
    if point.took_effect:
        await agent.freeze()
        # Stopped while the call is still held: Juju has not acted on it yet.
        if point.step == "add":
            assert NEW not in fake.model.units
        else:
            assert harness.unit_life(fake, OLD) == "alive"
        fake.set_latency(0)  # later calls are not held (the frozen one sleeps on)
        # The held call goes through while the agent cannot read the answer.
        if point.step == "add":
            await harness.wait_for(lambda: NEW in fake.model.units, what="AddUnits took effect")
        else:
            await harness.wait_for(
                lambda: harness.unit_life(fake, OLD) == "dying", what="DestroyUnit took effect"
            )
    await agent.kill()


@pytest.mark.parametrize("point", KILL_POINTS, ids=[p.name for p in KILL_POINTS])
async def test_kill_9_then_restart_finishes_or_rolls_back(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_process_factory: conftest.AgentProcessFactory,
    point: KillPoint,
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    agent = await agent_process_factory(fake, (APP,)).start()
    pump = harness.ClockPump(fake)
    if point.failing_units is not None:
        fake.fail_new_units(APP, point.failing_units)
    if point.held_call is not None:
        facade, method = point.held_call
        hold = TOOK_EFFECT_HOLD if point.took_effect else FOREVER
        fake.set_latency(hold, facade, method)
    started = await agent.call("replace-now", service=APP, wait=False)
    await reach(point, fake, agent, pump)

    await crash(point, fake, agent)
    units_at_kill = harness.units_of(fake, APP)
    await fake.clear_faults()
    await agent.start()  # same settings, same state folder
    await pump.until(agent.idle, timeout=30, what="recovered operation finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")

    history = await agent.history()
    assert len(history) == 1, history
    op = history[0]
    assert op["id"] == started["id"]
    assert op["trigger"] == "recovery"
    assert op["result"] == point.result, op
    assert (op["old-unit"], op["new-unit"]) == (OLD, NEW)
    steps = [s["step"] for s in op["steps"]]
    assert steps[-1] == "done"
    assert "recover" in steps
    if point.result == "ok":
        assert harness.units_of(fake, APP) == {f"{APP}/0", f"{APP}/2", NEW}
        assert OLD_MACHINE not in fake.model.machines
    else:
        assert harness.units_of(fake, APP) == {f"{APP}/0", OLD, f"{APP}/2"}
    if point.step == "add":
        # Exactly one new unit: the one added before the kill was adopted, or none was.
        expected_adds = 2 if point.name == "add-call-in-flight" else 1
        assert len(fake.calls_to("Application", "AddUnits")) == expected_adds
        assert (NEW in units_at_kill) == (point.name != "add-call-in-flight")
    if NEW in fake.model.units:
        # The kept unit was marked with the operation, whatever was interrupted.
        assert harness.annotated_with(fake, NEW, op["id"])
    checker.assert_final(history)


async def test_restart_after_the_add_deadline_rolls_back_without_adding_a_unit(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_process_factory: conftest.AgentProcessFactory,
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    agent = await agent_process_factory(fake, (APP,), settle_timeout=1).start()
    pump = harness.ClockPump(fake)
    fake.set_latency(FOREVER, "Application", "AddUnits")
    await agent.call("replace-now", service=APP, wait=False)
    await fake.wait_for_call("Application", "AddUnits")
    await harness.wait_for(agent.in_step("add"), what="agent in step add")

    await agent.kill()
    await fake.clear_faults()
    await asyncio.sleep(1.5)  # down for longer than settle-timeout
    await agent.start()
    await pump.until(agent.idle, timeout=30, what="recovered operation finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")

    history = await agent.history()
    checker.assert_final(history)
    assert history[0]["result"] == "rolled-back"
    assert history[0]["new-unit"] is None
    assert len(fake.calls_to("Application", "AddUnits")) == 1
    assert (await agent.status())["blocked-services"] == {}

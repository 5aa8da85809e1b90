"""Connection faults in the middle of a replacement: no hang, the operation still completes.

Every combination of a fault (connections dropped abruptly, dropped with a close frame, a
controller outage of a second) and a point of the replacement (AddUnits in flight,
new unit settling, DestroyUnit in flight, old unit dying). Juju keeps working while the agent
is cut off. The agent must reconnect on its own, must not add a second unit or lose one, and
must finish the replacement; the healthy-unit count never drops below its starting value.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.fakejuju import fixtures as fake_fixtures
from tests.fakejuju import server as fake_server
from tests.functional import agent_harness as harness
from tests.functional import conftest

APP = "wsgi-example"
OLD = f"{APP}/1"  # the oldest unit that is not the leader (unit 0)
NEW = f"{APP}/3"
HOLD = 0.5  # seconds a held call stays unanswered (the fault strikes meanwhile)


async def reach(
    point: str,
    fake: fake_server.FakeJujuController,
    agent: harness.InProcessAgent,
    pump: harness.ClockPump,
) -> None:
    """Drive the replacement to `point` and leave Juju frozen there."""
    if point == "add-call":
        await fake.wait_for_call("Application", "AddUnits")
        assert fake.model.units.get(NEW) is None  # held: not processed yet
    elif point == "settle":
        await pump.until(lambda: harness.unit_status(fake, NEW) == "maintenance")
        await harness.wait_for(agent.in_step("settle"), what="agent settling")
    elif point == "destroy-call":
        await pump.until(lambda: bool(fake.calls_to("Application", "DestroyUnit")), what="destroy")
        assert harness.unit_life(fake, OLD) == "alive"  # held: not processed yet
    else:
        await pump.until(lambda: harness.unit_life(fake, OLD) == "dying", what="old unit dying")
        await harness.wait_for(agent.in_step("remove"), what="agent removing")


async def strike(fault: str, fake: fake_server.FakeJujuController, pump: harness.ClockPump):
    """Cut the agent off; Juju itself goes on working."""
    if fault == "outage":
        await fake.outage(3600)  # ended by hand: the fake's clock runs fast meanwhile
        await pump.run_for(1.0)
        await fake.end_outage()
    else:
        assert await fake.drop_connections(fault) >= 1


@pytest.mark.parametrize("point", ["add-call", "settle", "destroy-call", "old-unit-dying"])
@pytest.mark.parametrize("fault", ["abrupt", "clean", "outage"])
async def test_replacement_survives_connection_fault(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
    fault: str,
    point: str,
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    agent = await agent_factory(fake, (APP,))
    sessions_before = agent.backend.sessions
    pump = harness.ClockPump(fake)
    if point == "add-call":
        fake.set_latency(HOLD, "Application", "AddUnits")
    elif point == "destroy-call":
        fake.set_latency(HOLD, "Application", "DestroyUnit")
    request = asyncio.create_task(agent.replace_now(APP))
    await reach(point, fake, agent, pump)

    await strike(fault, fake, pump)
    fake.set_latency(0)
    await pump.until(request.done, timeout=20, what="replacement finished after the fault")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    result = request.result()

    assert result["result"] == "ok", result
    assert (result["old-unit"], result["new-unit"]) == (OLD, NEW)
    assert agent.backend.sessions > sessions_before  # it really reconnected
    assert agent.backend.connected
    # One unit added and one removed, whatever was cut off on the way.
    assert checker.added_units == {NEW}
    if point in ("add-call", "destroy-call"):
        # The call cut off never reached Juju: it was made once more after the reconnect.
        method = "AddUnits" if point == "add-call" else "DestroyUnit"
        assert len(fake.calls_to("Application", method)) == 2
    assert harness.units_of(fake, APP) == {f"{APP}/0", f"{APP}/2", NEW}
    checker.assert_final(agent.history())


@pytest.mark.parametrize("call", ["AddUnits", "DestroyUnit"])
async def test_call_that_took_effect_but_lost_its_answer_neither_doubles_nor_leaks(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
    call: str,
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    agent = await agent_factory(fake, (APP,))
    pump = harness.ClockPump(fake)
    if call == "AddUnits":
        harness.cut_off_when(fake, lambda: NEW in fake.model.units)
    else:
        harness.cut_off_when(fake, lambda: harness.unit_life(fake, OLD) == "dying")

    request = asyncio.create_task(agent.replace_now(APP))
    await pump.until(request.done, timeout=20, what="replacement finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    result = request.result()

    assert result["result"] == "ok", result
    assert (result["old-unit"], result["new-unit"]) == (OLD, NEW)
    assert agent.backend.sessions == 2
    if call == "AddUnits":
        # The unit the lost call created was found and adopted, not added a second time.
        assert len(fake.calls_to("Application", "AddUnits")) == 1
        assert harness.annotated_with(fake, NEW, result["id"])
    else:
        # Asked once more after the reconnect: harmless, the unit is already dying.
        assert len(fake.calls_to("Application", "DestroyUnit")) == 2
        assert fake.calls_to("MachineManager", "DestroyMachineWithParams") == []
    assert checker.added_units == {NEW}
    checker.assert_final(agent.history())

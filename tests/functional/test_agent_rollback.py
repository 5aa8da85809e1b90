"""A new unit that does not become healthy is removed again and the old one stays.

Hook error, provisioning error, settle timeout and a unit agent lost while settling, each
against the fake controller through unmodified libjuju; the healthy-unit count of the target
never drops below its starting value and nothing is leaked.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from tests.fakejuju import fixtures as fake_fixtures
from tests.functional import agent_harness as harness
from tests.functional import conftest

APP = "wsgi-example"
NEW = f"{APP}/3"


@pytest.mark.parametrize(
    ("mode", "overrides", "reason"),
    [
        pytest.param(
            "hook-error", {}, f'new unit {NEW} failed: hook failed: "install"', id="hook-error"
        ),
        pytest.param(
            "provisioning-error",
            {},
            "machine 4 of new unit wsgi-example/3 failed to provision: "
            "failed to start machine 4: fake provider refused",
            id="provisioning-error",
        ),
        pytest.param(
            "never-idle",
            {"settle_timeout": 1},
            f"new unit {NEW} did not settle within 1s",
            id="settle-timeout",
        ),
    ],
)
async def test_failing_new_unit_is_rolled_back_and_old_unit_kept(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
    mode: str,
    overrides: dict[str, object],
    reason: str,
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    fake.fail_new_units(APP, mode)
    agent = await agent_factory(fake, (APP,), **overrides)
    pump = harness.ClockPump(fake)

    request = asyncio.create_task(agent.replace_now(APP))
    await pump.until(request.done, what="rollback finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    result = request.result()

    assert result["result"] == "rolled-back"
    assert result["reason"] == reason
    assert result["old-unit"] == f"{APP}/0"
    assert result["new-unit"] == NEW
    assert [s["step"] for s in result["steps"]] == [
        "plan", "add", "settle", "rollback", "done",
    ]  # fmt: skip
    assert harness.units_of(fake, APP) == {f"{APP}/0", f"{APP}/1", f"{APP}/2"}
    assert "4" not in fake.model.machines  # the new unit's machine went with it
    assert len(fake.calls_to("Application", "DestroyUnit")) == 1
    # The old unit was never asked to go.
    assert fake.state()["units"][f"{APP}/0"]["life"] == "alive"
    checker.assert_final(agent.history())


async def test_unit_lost_while_settling_is_rolled_back_with_force(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    agent = await agent_factory(fake, (APP,), remove_timeout=2)
    pump = harness.ClockPump(fake)
    request = asyncio.create_task(agent.replace_now(APP))
    # Freeze Juju while the new unit runs its install hook: the agent is settling.
    await pump.until(
        lambda: harness.unit_status(fake, NEW) == "maintenance", what="new unit installing"
    )
    await harness.wait_for(agent.in_step("settle"), what="agent settling")

    fake.lose_unit(NEW)
    checker.sample()
    # Only a status poll can tell (never a delta): the agent notices without Juju moving.
    await harness.wait_for(agent.in_step("rollback"), what="agent rolling back")
    # A lost unit cannot die without force; past remove-timeout the agent forces it, and
    # Juju gives a forced removal max-wait (60 s): let Juju's time run fast from here.
    await harness.ClockPump(fake, step=5.0).until(request.done, what="rollback finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    result = request.result()

    assert result["result"] == "rolled-back"
    assert result["reason"] == f"new unit {NEW} is lost"
    assert [s["step"] for s in result["steps"]] == [
        "plan", "add", "settle", "rollback", "rollback-force", "done",
    ]  # fmt: skip
    destroys = fake.calls_to("Application", "DestroyUnit")
    assert len(destroys) == 2  # once politely, once with force
    assert harness.units_of(fake, APP) == {f"{APP}/0", f"{APP}/1", f"{APP}/2"}
    checker.assert_final(agent.history())


async def test_unit_lost_between_status_polls_is_caught_before_the_old_unit_goes(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    # No periodic status poll for an hour: only the poll that confirms a settled unit can
    # see the lost agent (watcher deltas never carry it).
    timings = dataclasses.replace(harness.AGENT_TIMINGS, status_poll_interval=3600.0)
    agent = await agent_factory(fake, (APP,), settle_period=2, remove_timeout=2, timings=timings)
    pump = harness.ClockPump(fake)
    request = asyncio.create_task(agent.replace_now(APP))
    await pump.until(lambda: harness.unit_status(fake, NEW) == "active", what="new unit active")
    polls_before = len(fake.calls_to("Client", "FullStatus"))

    fake.lose_unit(NEW)
    checker.sample()
    await harness.wait_for(agent.in_step("rollback"), 15, "agent rolling back")
    await harness.ClockPump(fake, step=5.0).until(request.done, what="rollback finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    result = request.result()

    assert result["result"] == "rolled-back"
    assert result["reason"] == f"new unit {NEW} is lost"
    assert len(fake.calls_to("Client", "FullStatus")) == polls_before + 1
    assert harness.units_of(fake, APP) == {f"{APP}/0", f"{APP}/1", f"{APP}/2"}
    checker.assert_final(agent.history())


async def test_old_unit_stuck_dying_is_removed_with_force(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    fake.stuck_dying(f"{APP}/0")
    agent = await agent_factory(fake, (APP,), remove_timeout=2)
    request = asyncio.create_task(agent.replace_now(APP))

    # Juju's time runs fast: a forced removal takes max-wait (60 s) of it.
    await harness.ClockPump(fake, step=5.0).until(request.done, what="replacement finished")
    await harness.ClockPump(fake).until(lambda: harness.lifecycle_idle(fake), what="settled")
    result = request.result()

    assert result["result"] == "ok"
    assert [s["step"] for s in result["steps"]] == [
        "plan", "add", "settle", "remove", "remove-force", "cleanup", "done",
    ]  # fmt: skip
    assert len(fake.calls_to("Application", "DestroyUnit")) == 2
    checker.assert_final(agent.history())


async def test_forced_removal_is_awaited_for_its_max_wait(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    fake.stuck_dying(f"{APP}/0")
    agent = await agent_factory(fake, (APP,), remove_timeout=1)
    request = asyncio.create_task(agent.replace_now(APP))

    # Juju's clock at about 10x real time: max-wait (60 s) takes 6 s, remove-timeout is 1 s.
    await harness.ClockPump(fake, step=1.0, period=0.1).until(
        request.done, timeout=30, what="replacement finished"
    )
    await harness.ClockPump(fake, step=5.0).until(lambda: harness.lifecycle_idle(fake))
    result = request.result()

    assert result["result"] == "ok", result["reason"]
    checker.assert_final(agent.history())

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
    ("mode", "overrides", "reason", "force"),
    [
        # A unit in hook error never runs its stop hooks (the uniter waits for resolve, and
        # Juju keeps retrying the hook): only a forced removal, with no max-wait, gets it out.
        pytest.param(
            "hook-error",
            {},
            f'new unit {NEW} failed: hook failed: "install"',
            True,
            id="hook-error",
        ),
        # Still allocating: Juju removes it in the destroy transaction itself.
        pytest.param(
            "provisioning-error",
            {},
            "machine 4 of new unit wsgi-example/3 failed to provision: "
            "failed to start machine 4: fake provider refused",
            False,
            id="provisioning-error",
        ),
        pytest.param(
            "never-idle",
            {"settle_timeout": 1},
            f"new unit {NEW} did not settle within 1s",
            False,
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
    force: bool,
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
    assert result["old-unit"] == f"{APP}/1"
    assert result["new-unit"] == NEW
    assert [s["step"] for s in result["steps"]] == [
        "plan", "add", "settle", "rollback", "done",
    ]  # fmt: skip
    assert harness.units_of(fake, APP) == {f"{APP}/0", f"{APP}/1", f"{APP}/2"}
    assert "4" not in fake.model.machines  # the new unit's machine went with it
    (destroy,) = fake.calls_to("Application", "DestroyUnit")
    (request_params,) = destroy.params["units"]
    assert request_params["unit-tag"] == "unit-wsgi-example-3"
    assert request_params["force"] is force
    if force:
        assert request_params["max-wait"] == 0
    # The old unit was never asked to go.
    assert fake.state()["units"][f"{APP}/1"]["life"] == "alive"
    checker.assert_final(agent.history())


@pytest.mark.parametrize(
    ("fault", "status", "forced"),
    [
        # The unit's agent goes mid-install: canBeLost is false while the install hook runs,
        # so FullStatus never says lost; the dead agent runs no stop hooks either, so the
        # removal needs force after remove-timeout (two max-waits and a cleanup in Juju).
        pytest.param("unit-agent", "maintenance", [False, True], id="unit-agent-mid-install"),
        # The host dies before its machine agent started: canMachineBeDown is false while
        # pending; the unit is still allocating, so Juju removes it at once.
        pytest.param("host", "waiting", [False], id="host-before-agent-started"),
    ],
)
async def test_agent_gone_mid_install_is_caught_only_by_the_settle_timeout(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
    fault: str,
    status: str,
    forced: list[bool],
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    agent = await agent_factory(fake, (APP,), settle_timeout=4, remove_timeout=2)
    pump = harness.ClockPump(fake)
    request = asyncio.create_task(agent.replace_now(APP))
    await harness.wait_for(agent.in_step("settle"), what="agent settling")
    await pump.until(lambda: harness.unit_status(fake, NEW) == status, what=f"new unit {status}")

    if fault == "unit-agent":
        fake.lose_unit(NEW)
    else:
        fake.machine_down(fake.model.units[NEW].machine_id)
    checker.sample()
    polls = len(fake.calls_to("Client", "FullStatus"))
    await harness.wait_for(
        lambda: len(fake.calls_to("Client", "FullStatus")) >= polls + 2, what="two status polls"
    )
    still_settling = agent.in_step("settle")()
    # Run Juju's time fast: a forced removal takes two max-waits and a cleanup period.
    await harness.ClockPump(fake, step=5.0).until(request.done, what="rollback finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    result = request.result()

    assert still_settling  # two status polls later nothing shows lost or down
    assert result["result"] == "rolled-back"
    assert result["reason"] == f"new unit {NEW} did not settle within 4s"
    steps = ["plan", "add", "settle", "rollback", "rollback-force", "done"]
    if forced == [False]:
        steps.remove("rollback-force")
    assert [s["step"] for s in result["steps"]] == steps
    destroys = fake.calls_to("Application", "DestroyUnit")
    assert [c.params["units"][0]["force"] for c in destroys] == forced
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
    # A lost agent runs no stop hooks: forced at once, without max-wait.
    (destroy,) = fake.calls_to("Application", "DestroyUnit")
    assert destroy.params["units"][0]["force"] is True
    assert destroy.params["units"][0]["max-wait"] == 0
    assert harness.units_of(fake, APP) == {f"{APP}/0", f"{APP}/1", f"{APP}/2"}
    checker.assert_final(agent.history())


async def test_old_unit_stuck_dying_is_removed_with_force(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    fake.stuck_dying(f"{APP}/1")
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
    fake.stuck_dying(f"{APP}/1")
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

"""The real agent (engine + libjuju backend) replacing units of the fake controller's model.

Make-before-break end to end through unmodified libjuju: replace-now, the interval rotation
over several services, pause/resume, dry-run and the circuit breaker. The fake runs on its
manual clock, moved one lifecycle step at a time by a ClockPump while the test waits.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from tests.fakejuju import fixtures as fake_fixtures
from tests.fakejuju import model as fake_model
from tests.functional import agent_harness as harness
from tests.functional import conftest
from whirlwind import control

APP = "wsgi-example"


async def test_replace_now_replaces_oldest_unit_make_before_break(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    agent = await agent_factory(fake, (APP,))
    pump = harness.ClockPump(fake)

    request = asyncio.create_task(agent.replace_now(APP))
    await pump.until(request.done, what="replace-now finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    result = request.result()

    assert result["result"] == "ok"
    assert result["old-unit"] == f"{APP}/1"  # unit 0 leads: last
    assert result["new-unit"] == f"{APP}/3"
    assert result["trigger"] == "replace-now"
    assert [s["step"] for s in result["steps"]] == [
        "plan", "add", "settle", "remove", "cleanup", "done",
    ]  # fmt: skip
    assert harness.units_of(fake, APP) == {f"{APP}/0", f"{APP}/2", f"{APP}/3"}
    annotations = fake.state()["units"][f"{APP}/3"]["annotations"]
    assert harness.annotated_with(fake, f"{APP}/3", result["id"])
    # Born stays; the operation's marks come off once it has finished.
    assert set(annotations) == {"whirlwind/born"}
    assert len(fake.calls_to("Application", "AddUnits")) == 1
    assert len(fake.calls_to("Application", "DestroyUnit")) == 1
    # Juju removed the emptied machine itself: the agent had no reason to.
    assert fake.calls_to("MachineManager", "DestroyMachineWithParams") == []
    checker.assert_final(agent.history())


async def test_interval_rotates_round_robin_over_services_and_touches_nothing_else(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
):
    services = ("alpha", "beta", "gamma")
    fake = await fake_juju_factory(
        {"alpha": 2, "beta": 2, "gamma": 2, "bystander": 1, harness.OWN_APP: 1}
    )
    checker = harness.InvariantChecker(fake, services)
    untouched = harness.units_of(fake, "bystander") | harness.units_of(fake, harness.OWN_APP)
    agent = await agent_factory(fake, services, interval=1)
    pump = harness.ClockPump(fake)

    await pump.until(lambda: len(agent.history()) >= 3 and not agent.unfinished(), 20, "3 ops")
    status = await agent.engine.get_status()
    await agent.engine.pause()
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")

    history = agent.history()
    oldest_first = list(reversed(history))
    assert [op["service"] for op in oldest_first] == ["alpha", "beta", "gamma"]
    assert status["next-service"] == "alpha"  # round robin wraps around
    assert {op["result"] for op in history} == {"ok"}
    assert {op["trigger"] for op in history} == {"interval"}
    # The oldest unit goes first (the seeded units' machines are an hour old).
    assert [op["old-unit"] for op in oldest_first] == ["alpha/1", "beta/1", "gamma/1"]
    assert harness.units_of(fake, "bystander") | harness.units_of(fake, harness.OWN_APP) == (
        untouched
    )
    checker.assert_final(history)


async def test_pause_stops_new_work_and_resume_starts_it_again(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
):
    fake = await fake_juju_factory({APP: 2, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    agent = await agent_factory(fake, (APP,), interval=1)
    pump = harness.ClockPump(fake)

    paused = await agent.engine.pause()
    paused_again = await agent.engine.pause()
    await pump.run_for(1.5)  # the interval fell due while paused
    with pytest.raises(control.ControlError) as refused:
        await agent.replace_now(APP)
    calls_while_paused = len(fake.calls_to("Application", "AddUnits"))
    status_paused = await agent.engine.get_status()
    resumed = await agent.engine.resume()
    await pump.until(agent.idle, what="one replacement after resume")
    await agent.engine.pause()
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")

    assert paused["paused"] is True
    assert paused["changed"] is True
    assert paused_again["changed"] is False
    assert refused.value.code == control.PAUSED
    assert calls_while_paused == 0
    assert status_paused["paused"] is True
    assert status_paused["next-due"] is None
    assert resumed == {
        "paused": False,
        "changed": True,
        "paused-since": None,
        "paused-until": None,
        "pause-reason": "",
    }
    history = agent.history()
    assert [(op["trigger"], op["result"]) for op in history] == [("interval", "ok")]
    # Pause is durable: it is in the journal for the next start.
    assert agent.journal.get_state("pause")["paused"] is True
    checker.assert_final(history)


async def test_replace_now_dry_run_changes_nothing(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
    caplog: pytest.LogCaptureFixture,
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    before = fake.state()
    agent = await agent_factory(fake, (APP,))
    pump = harness.ClockPump(fake)
    caplog.set_level("INFO", logger="whirlwind")

    request = asyncio.create_task(agent.replace_now(APP, unit=f"{APP}/1", dry_run=True))
    await pump.until(request.done, what="dry run finished")
    result = request.result()

    assert result["result"] == "dry-run"
    assert result["old-unit"] == f"{APP}/1"
    assert result["new-unit"] is None
    assert "DRY-RUN: would replace wsgi-example/1 with a new unit" in caplog.messages
    for facade, method in (
        ("Application", "AddUnits"),
        ("Application", "DestroyUnit"),
        ("Annotations", "Set"),
        ("MachineManager", "DestroyMachineWithParams"),
    ):
        assert fake.calls_to(facade, method) == []
    assert fake.state()["units"] == before["units"]
    assert fake.state()["machines"] == before["machines"]
    checker.assert_final(agent.history())


async def test_dry_run_setting_makes_the_interval_only_log(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
    caplog: pytest.LogCaptureFixture,
):
    fake = await fake_juju_factory({APP: 2, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    before = fake.state()["units"]
    caplog.set_level("INFO", logger="whirlwind")
    agent = await agent_factory(fake, (APP,), interval=1, dry_run=True)
    pump = harness.ClockPump(fake)

    await pump.until(agent.idle, what="one interval in dry-run")
    status = await agent.engine.get_status()

    history = agent.history()
    assert [(op["trigger"], op["result"]) for op in history] == [("interval", "dry-run")]
    assert status["dry-run"] is True
    assert any(m.startswith("DRY-RUN: would replace wsgi-example/") for m in caplog.messages)
    assert fake.calls_to("Application", "AddUnits") == []
    assert fake.calls_to("Application", "DestroyUnit") == []
    assert fake.state()["units"] == before
    checker.assert_final(history)


async def test_circuit_breaker_stops_an_app_after_repeated_failures_until_success(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
):
    fake = await fake_juju_factory({APP: 2, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    fake.fail_new_units(APP, "hook-error")
    agent = await agent_factory(fake, (APP,), interval=1, max_consecutive_failures=2)
    pump = harness.ClockPump(fake)

    await pump.until(
        lambda: len(agent.history()) == 2 and not agent.unfinished(), 15, "two failures"
    )

    async def breaker_open() -> bool:
        # The breaker is counted when the operation's task ends, a moment after its journal
        # entry says finished.
        return bool((await agent.engine.get_status())["blocked-services"])

    await harness.wait_for(breaker_open, 5, "the breaker open")
    blocked = await agent.engine.get_status()
    await pump.run_for(1.5)  # the interval falls due again: the breaker must hold
    adds_while_open = len(fake.calls_to("Application", "AddUnits"))
    await fake.clear_faults()
    # The operator's answer: a successful replace-now clears the breaker.
    request = asyncio.create_task(agent.replace_now(APP))
    await pump.until(request.done, what="replace-now after the breaker opened")
    cleared = await agent.engine.get_status()
    await agent.engine.pause()
    await pump.until(lambda: not agent.unfinished() and harness.lifecycle_idle(fake))

    history = agent.history()
    assert adds_while_open == 2
    assert [op["result"] for op in reversed(history)][:3] == ["rolled-back", "rolled-back", "ok"]
    assert request.result()["trigger"] == "replace-now"
    assert set(blocked["blocked-services"]) == {APP}
    assert blocked["blocked-services"][APP].startswith("2 consecutive failures; last: ")
    assert blocked["blocked-services"][APP].endswith('failed: hook failed: "install"')
    assert blocked["next-service"] is None
    assert cleared["blocked-services"] == {}
    checker.assert_final(history)


async def test_settle_period_needs_continuous_health_of_the_new_unit(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
):
    fake = await fake_juju_factory({APP: 2, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    new = f"{APP}/2"
    agent = await agent_factory(fake, (APP,), settle_period=1)
    pump = harness.ClockPump(fake)
    request = asyncio.create_task(agent.replace_now(APP))
    await pump.until(lambda: harness.unit_status(fake, new) == "active", what="new unit active")
    await asyncio.sleep(0.3)
    settling_at_hiccup = [op.step for op in agent.unfinished()]

    # A hiccup within the settle period (a hook runs again): the period starts over.
    healthy = fake.model.units[new]
    busy = fake_model.Status("maintenance", "running config-changed hook", fake.clock.now())
    fake.model.put_unit(dataclasses.replace(healthy, workload=busy))
    await harness.wait_for(lambda: not agent.backend.model.is_healthy(new), what="hiccup seen")
    await asyncio.sleep(0.2)
    fake.model.put_unit(dataclasses.replace(healthy, workload=healthy.workload))
    # Healthy again for less than the settle period, but for more than one since it began.
    await asyncio.sleep(0.9)
    destroys_before_settled = len(fake.calls_to("Application", "DestroyUnit"))
    step_before_settled = [op.step for op in agent.unfinished()]
    await pump.until(request.done, what="replacement finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")

    assert settling_at_hiccup == ["settle"]
    assert destroys_before_settled == 0
    assert step_before_settled == ["settle"]
    assert request.result()["result"] == "ok"
    assert request.result()["new-unit"] == new
    checker.assert_final(agent.history())

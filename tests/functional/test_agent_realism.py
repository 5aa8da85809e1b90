"""The real agent against the fake as harsh as a Juju 3.6 controller (issue "Juju as it is").

Each test pins one way in which Juju is less kind than the first fake was: late deltas,
DestroyUnit of a unit already gone, charms that never set a status and hooks after the first
idle, Juju's transient errors on every call, and AddUnits placing a unit on a clean machine
that was already there. Hook errors that need force and the lost rules are in
test_agent_rollback.py; the kill -9 crash tests in test_agent_restart.py run under lag too.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.fakejuju import fixtures as fake_fixtures
from tests.functional import agent_harness as harness
from tests.functional import conftest

APP = "wsgi-example"
NEW = f"{APP}/3"
# The oldest unit that is not the leader (unit 0 leads): voluntary work takes it first.
OLD = f"{APP}/1"


@pytest.mark.parametrize("lag", [0.0, 0.3, 2.0], ids=["lag-0ms", "lag-300ms", "lag-2s"])
async def test_replacement_ends_ok_without_leaks_under_delta_lag(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
    lag: float,
):
    # The new unit's delta comes `lag` seconds after AddUnits answered: until then it is
    # pending, not gone (before the fix every replacement rolled back and leaked the unit).
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1}, delta_lag=lag)
    checker = harness.InvariantChecker(fake, [APP])
    agent = await agent_factory(fake, (APP,))
    pump = harness.ClockPump(fake)

    request = asyncio.create_task(agent.replace_now(APP))
    await pump.until(request.done, timeout=30 + 10 * lag, what="replace-now finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    await fake.wait_delivered(10)
    result = request.result()

    assert (result["result"], result["old-unit"], result["new-unit"]) == ("ok", f"{APP}/1", NEW)
    assert len(fake.calls_to("Application", "AddUnits")) == 1
    assert len(fake.calls_to("Application", "DestroyUnit")) == 1
    checker.assert_final(agent.history())


async def test_destroy_of_a_unit_already_gone_is_done_at_once(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
):
    # Juju answers `unit "x/0" does not exist` (no code) for a unit already removed; with a
    # stale view the agent must take that as gone, not wait out remove-timeout and force.
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1}, delta_lag=0.0)
    checker = harness.InvariantChecker(fake, [APP])
    agent = await agent_factory(fake, (APP,), settle_period=2, remove_timeout=3)
    pump = harness.ClockPump(fake)
    request = asyncio.create_task(agent.replace_now(APP))
    await pump.until(
        lambda: agent.backend.model.is_healthy(NEW), what="agent sees the new unit healthy"
    )
    # An operator removes the old unit; the agent hears of it only much later.
    fake.set_delta_lag(8.0)
    fake.lifecycle.destroy_unit(OLD, force=False, max_wait=None)
    await pump.until(lambda: OLD not in fake.model.units, what="old unit gone")
    stale = agent.backend.model.get_unit(OLD)

    await pump.until(request.done, timeout=25, what="replacement finished")
    fake.set_delta_lag(0.0)
    await fake.wait_delivered(15)
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    result = request.result()

    assert stale is not None  # the agent's view was stale
    assert stale.life == "alive"
    assert result["result"] == "ok"
    assert "remove-force" not in [s["step"] for s in result["steps"]]
    destroys = fake.calls_to("Application", "DestroyUnit")
    assert [c.params["units"][0]["force"] for c in destroys] == [False]
    assert destroys[0].params["units"][0]["unit-tag"] == "unit-wsgi-example-1"
    checker.initial_units[APP].discard(OLD)  # removed by the operator, not the agent
    assert harness.units_of(fake, APP) == {f"{APP}/0", f"{APP}/2", NEW}


async def test_charm_without_status_is_replaceable_and_settle_restarts_on_every_break(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
):
    # runhook.go afterHook: a charm that never calls status-set shows `unknown` after start;
    # after its first idle the unit runs more hooks (executing again): each break restarts
    # the settle period, counted from what the agent saw.
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1}, unset_status=[APP])
    checker = harness.InvariantChecker(fake, [APP])
    loop = asyncio.get_running_loop()
    seen: list[tuple[float, str, str]] = []

    def record(kind: str, key: str, change: str, info: dict[str, object]) -> None:
        if kind == "unit" and key == NEW and change == "change":
            unit = fake.model.units[NEW]
            seen.append((loop.time(), unit.workload.current, unit.agent.current))

    fake.model.observers["new-unit"] = record
    destroyed_at: list[float] = []

    def old_unit_dying() -> None:
        old = fake.model.units.get(OLD)
        if not destroyed_at and (old is None or old.life != "alive"):
            destroyed_at.append(loop.time())

    harness.observe(fake.model, "old-unit", old_unit_dying)
    agent = await agent_factory(fake, (APP,), settle_period=2)
    pump = harness.ClockPump(fake)
    request = asyncio.create_task(agent.replace_now(APP))
    await pump.until(request.done, what="replacement finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    result = request.result()

    assert result["result"] == "ok"
    assert fake.model.units[NEW].workload.current == "unknown"
    first_idle = next(t for t, w, a in seen if (w, a) == ("unknown", "idle"))
    breaks = [t for t, w, a in seen if t > first_idle and a == "executing"]
    last_idle = max(t for t, w, a in seen if (w, a) == ("unknown", "idle") and t < destroyed_at[0])
    assert breaks  # the unit ran hooks again after its first idle
    assert destroyed_at[0] - last_idle >= 2.0  # a whole settle period after the last break
    checker.assert_final(agent.history())


CONTENTION = "state changing too quickly; try again soon"
NOT_YET = "not yet available; try again later"
TRANSIENT = [
    # (facade, method, message, code): what Juju really answers when busy or closing.
    ("Application", "AddUnits", CONTENTION, "excessive contention"),
    ("Annotations", "Set", "upgrade in progress", "upgrade in progress"),
    ("Client", "FullStatus", NOT_YET, NOT_YET),
    ("Application", "DestroyUnit", "connection is shut down", ""),
    ("Client", "FullStatus", "deadline exceeded", "deadline exceeded"),
    ("AllWatcher", "Next", "connection is shut down", ""),
    ("Application", "AddUnits", "try again", "try again"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("facade", "method", "message", "code"),
    TRANSIENT,
    ids=[f"{f}.{m}-{c or 'no-code'}" for f, m, _, c in TRANSIENT],
)
async def test_transient_errors_are_retried_and_the_replacement_ends_ok(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
    facade: str,
    method: str,
    message: str,
    code: str,
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [APP])
    agent = await agent_factory(fake, (APP,))
    pump = harness.ClockPump(fake)
    fake.call_error(facade, method, count=2, message=message, code=code)

    request = asyncio.create_task(agent.replace_now(APP))
    await pump.until(request.done, timeout=40, what="replace-now finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    result = request.result()

    failed = [c for c in fake.calls_to(facade, method) if c.error_code == code]
    assert len(failed) == 2  # both injected errors were answered
    assert result["result"] == "ok", result["reason"]
    assert len(fake.calls_to("Application", "AddUnits")) == (3 if method == "AddUnits" else 1)
    checker.assert_final(agent.history())


@pytest.mark.parametrize("mode", ["", "hook-error"], ids=["ok", "rolled-back"])
async def test_new_unit_on_a_clean_machine_and_no_machine_removed_by_the_agent(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
    mode: str,
):
    # AddUnits ignores `policy`: AssignCleanEmpty puts the unit on a machine that never
    # hosted one (here machine 4, made by `juju add-machine`) before making a new one. The
    # agent never removes a machine it did not see dedicated to the old unit at PLAN.
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1}, spare_machines=1)
    if mode:
        fake.fail_new_units(APP, mode)
    checker = harness.InvariantChecker(fake, [APP])
    agent = await agent_factory(fake, (APP,))
    pump = harness.ClockPump(fake)

    request = asyncio.create_task(agent.replace_now(APP))
    await pump.until(request.done, what="replace-now finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    result = request.result()

    assert result["result"] == ("rolled-back" if mode else "ok")
    assert checker.machine_of[NEW] == "4"  # the clean machine
    assert fake.calls_to("MachineManager", "DestroyMachineWithParams") == []
    # Juju removed the spare machine with the rolled-back unit (its only principal).
    assert ("4" in fake.model.machines) is (not mode)
    checker.assert_final(agent.history())


async def test_settled_unit_that_broke_since_its_last_delta_is_not_accepted(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
):
    # Deltas are late: the confirming status poll reads Juju's database, where the unit
    # already failed a hook; the agent must not remove the old unit on the stale "idle".
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1}, delta_lag=0.0)
    checker = harness.InvariantChecker(fake, [APP])
    agent = await agent_factory(fake, (APP,), settle_period=1)
    pump = harness.ClockPump(fake)
    request = asyncio.create_task(agent.replace_now(APP))
    await pump.until(
        lambda: (
            fake.model.units.get(NEW) is not None and fake.model.units[NEW].agent.current == "idle"
        ),
        what="new unit idle",
    )
    await fake.wait_delivered()
    fake.set_delta_lag(30.0)
    fake.lifecycle._hook_failed(NEW, "config-changed", attempt=0)
    await harness.ClockPump(fake, step=0.0).run_for(2.5)
    polls = len(fake.calls_to("Client", "FullStatus"))
    destroys_meanwhile = fake.calls_to("Application", "DestroyUnit")
    fake.set_delta_lag(0.0)

    await pump.until(request.done, timeout=40, what="replacement finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    await fake.wait_delivered(35)
    result = request.result()

    assert polls >= 2  # the agent kept confirming, and kept seeing the unit broken
    assert destroys_meanwhile == []
    assert result["result"] == "rolled-back"
    assert result["reason"] == f'new unit {NEW} failed: hook failed: "config-changed"'
    checker.assert_final(agent.history())

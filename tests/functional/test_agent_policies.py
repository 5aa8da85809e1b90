"""The lifecycle planner's triggers and gates in the real agent against the fake controller.

Heal (hook error, lost agent, down machine, provisioning error, stuck allocating), the mass
failure brake, the unit count, storage, the leader going last, per-application overrides and
healing while paused, each through unmodified libjuju against the fake Juju.

The agent here runs on the fake's manual clock (its engine's `now` is the controller's
clock, as a real agent and Juju share the wall clock): heal-after, settle and remove
deadlines are fake seconds, so a test jumps over them in an instant and can pin exactly
when the agent acts. While the clock is frozen the agent keeps working in real time (status
polls every 0.2 s wake its loop), so "nothing happens before X" is checked by letting it
look several times at a frozen moment just before X.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from tests.fakejuju import fixtures as fake_fixtures
from tests.fakejuju import server as fake_server
from tests.functional import agent_harness as harness
from whirlwind import control, policies
from whirlwind import journal as journal_mod

APP = "wsgi-example"
HEAL_AFTER = 30
# Fake seconds: generous, since the pump moves the fake's clock ~50x faster than real time
# and the agent reacts in real time (delta lag, status polls).
SETTINGS: dict[str, Any] = {
    "heal_after": HEAL_AFTER,
    "settle_period": 2,
    "settle_timeout": 300,
    "remove_timeout": 300,
    # No rotation unless a test is about it.
    "interval": 30 * 86400,
}

AgentFactory = Callable[..., Awaitable[harness.InProcessAgent]]


@pytest_asyncio.fixture
async def start_agent(
    fake_juju_factory: fake_fixtures.ControllerFactory, agent_dir: pathlib.Path
) -> AsyncIterator[AgentFactory]:
    """Start in-process agents whose engine runs on the fake's clock; stopped before the fakes."""
    started: list[harness.InProcessAgent] = []

    async def make(
        fake: fake_server.FakeJujuController, services: tuple[str, ...], **overrides: Any
    ) -> harness.InProcessAgent:
        agent_settings = harness.make_settings(
            fake, agent_dir, services, **{**SETTINGS, **overrides}
        )
        agent = harness.InProcessAgent(agent_settings, now=harness.fake_time(fake))
        started.append(agent)
        return await agent.start()

    yield make
    for agent in started:
        await agent.stop()


# -- helpers ------------------------------------------------------------------------------


def ops(agent: harness.InProcessAgent) -> list[tuple[str, str, str | None, str | None, str]]:
    """(trigger, service, old unit, new unit, result) of every operation, oldest first."""
    return [
        (op["trigger"], op["service"], op["old-unit"], op["new-unit"], op["result"])
        for op in reversed(agent.history())
    ]


def destroys(fake: fake_server.FakeJujuController) -> list[tuple[str, bool, Any, bool]]:
    """(unit, force, max-wait, destroy-storage) of every DestroyUnit request."""
    return [
        (
            item["unit-tag"],
            item.get("force", False),
            item.get("max-wait"),
            item.get("destroy-storage", False),
        )
        for call in fake.calls_to("Application", "DestroyUnit")
        for item in call.params["units"]
    ]


def adds(fake: fake_server.FakeJujuController) -> list[str]:
    """The application of every AddUnits request."""
    return [call.params["application"] for call in fake.calls_to("Application", "AddUnits")]


async def add_requested(fake: fake_server.FakeJujuController, count: int = 1) -> None:
    """Wait (real time, clock frozen) until the agent asked for `count` units in all."""
    await harness.wait_for(
        lambda: len(adds(fake)) >= count, 10, f"AddUnits call #{count} (clock frozen)"
    )


def started_at(op: dict[str, Any]) -> float:
    """When an operation started, in the fake's epoch seconds."""
    when = journal_mod.from_iso(op["started"])
    assert when is not None
    return when.timestamp()


def close(when: float, expected: float) -> bool:
    """Equal up to the journal's microseconds."""
    return abs(when - expected) < 1e-3


async def let_agent_look(fake: fake_server.FakeJujuController, polls: int = 4) -> None:
    """Wait (real time, clock frozen) for `polls` more status polls: each wakes the loop."""
    before = len(fake.calls_to("Client", "FullStatus"))
    await fake.wait_for_call("Client", "FullStatus", before + polls, timeout=10)


async def status_of(agent: harness.InProcessAgent) -> dict[str, Any]:
    """The agent's status, as the control API's `status` returns it."""
    return await agent.engine.get_status()


async def heal_expected(
    agent: harness.InProcessAgent, at: float, what: str = "heal upcoming"
) -> None:
    """Wait (clock frozen) until the agent's status says a heal is next, due at `at`."""

    async def upcoming() -> bool:
        status = await status_of(agent)
        due = journal_mod.from_iso(status["next-due"])
        return status["next-trigger"] == "heal" and due is not None and close(due.timestamp(), at)

    await harness.wait_for(upcoming, 10, what)


async def finish(
    agent: harness.InProcessAgent,
    fake: fake_server.FakeJujuController,
    count: int,
    pump: harness.ClockPump | None = None,
    timeout: float = 30,
    idle: Callable[[], bool] | None = None,
) -> None:
    """Pump until `count` operations finished, nothing is in flight and Juju is idle.

    `idle` replaces "no lifecycle step pending" where a unit left in error keeps Juju's hook
    retries going for ever.
    """
    pump = pump or harness.ClockPump(fake)
    juju_idle = idle or (lambda: harness.lifecycle_idle(fake))

    def done() -> bool:
        history = agent.history()
        return (
            len(history) >= count
            and all(op["result"] != journal_mod.RUNNING for op in history)
            and juju_idle()
        )

    await pump.until(done, timeout=timeout, what=f"{count} operation(s) finished, Juju idle")
    await fake.wait_delivered(10)


def watch_removal(fake: fake_server.FakeJujuController, old: str, new: str) -> dict[str, Any]:
    """Record, the moment `old` stops being alive, whether `new` was healthy then."""
    seen: dict[str, Any] = {}

    def check() -> None:
        unit = fake.model.units.get(old)
        if "at" in seen or (unit is not None and unit.life == "alive"):
            return
        replacement = fake.model.units.get(new)
        seen["at"] = fake.clock.now()
        seen["new-healthy"] = replacement is not None and harness.is_healthy(
            fake.model, replacement
        )

    harness.observe(fake.model, f"removal-of-{old}", check)
    return seen


# -- 1. a unit in hook error --------------------------------------------------------------


async def test_unit_in_error_is_healed_after_heal_after_and_removed_with_force(
    fake_juju_factory: fake_fixtures.ControllerFactory, start_agent: AgentFactory
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    agent = await start_agent(fake, (APP,))
    broken = f"{APP}/1"
    removal = watch_removal(fake, broken, f"{APP}/3")
    t0 = fake.clock.now()
    fake.error_unit(broken)
    checker = harness.InvariantChecker(fake, [APP])  # 2 healthy from now on, never fewer
    await heal_expected(agent, t0 + HEAL_AFTER)

    # Just before heal-after nothing happens, however often the agent looks.
    await fake.advance(HEAL_AFTER - 1)
    await let_agent_look(fake)
    assert adds(fake) == []
    # At heal-after, at once (the clock stays frozen until the agent asked for a unit).
    await fake.advance(1)
    await add_requested(fake)
    await finish(agent, fake, 1)

    (op,) = agent.history()
    assert ops(agent) == [("heal", APP, broken, f"{APP}/3", "ok")]
    assert close(started_at(op), t0 + HEAL_AFTER)
    assert [s["step"] for s in op["steps"]] == [
        "plan", "add", "settle", "remove", "remove-force", "cleanup", "done",
    ]  # fmt: skip
    # The replacement was healthy before the broken unit was asked to go, and that went
    # with force at once (a unit in hook error never runs its stop hooks).
    assert removal["new-healthy"] is True
    assert destroys(fake) == [("unit-wsgi-example-1", True, 0, False)]
    assert harness.units_of(fake, APP) == {f"{APP}/0", f"{APP}/2", f"{APP}/3"}
    assert (await status_of(agent))["notes"] == {}
    checker.assert_final(agent.history())


# -- 2. a lost unit agent, a machine down ----------------------------------------------------


@pytest.mark.parametrize("fault", ["lose-unit", "machine-down"])
async def test_lost_unit_is_healed_with_force_and_its_machine_goes(
    fake_juju_factory: fake_fixtures.ControllerFactory, start_agent: AgentFactory, fault: str
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    agent = await start_agent(fake, (APP,))
    broken = f"{APP}/1"
    machine = fake.model.units[broken].machine_id
    removal = watch_removal(fake, broken, f"{APP}/3")
    t0 = fake.clock.now()
    if fault == "lose-unit":
        fake.lose_unit(broken)
    else:
        fake.machine_down(machine)
    checker = harness.InvariantChecker(fake, [APP])
    # No delta says so: the agent learns it from its next status poll (the clock frozen
    # meanwhile, so that poll is at t0 on the fake's clock).
    await heal_expected(agent, t0 + HEAL_AFTER)
    await fake.advance(HEAL_AFTER - 1)
    await let_agent_look(fake)
    assert adds(fake) == []
    await fake.advance(1)
    await add_requested(fake)
    # A forced removal's cleanups run at the cleaner's pace (30 s of Juju's time).
    await finish(agent, fake, 1, harness.ClockPump(fake, step=2.0))

    (op,) = agent.history()
    assert ops(agent) == [("heal", APP, broken, f"{APP}/3", "ok")]
    assert close(started_at(op), t0 + HEAL_AFTER)
    assert removal["new-healthy"] is True
    # An agent that is gone runs no stop hooks: force, no max-wait, from the first request.
    assert destroys(fake) == [("unit-wsgi-example-1", True, 0, False)]
    assert harness.units_of(fake, APP) == {f"{APP}/0", f"{APP}/2", f"{APP}/3"}
    assert machine not in fake.model.machines
    checker.assert_final(agent.history())


# -- 3. provisioning error, stuck allocating -------------------------------------------------

SETTLE_TIMEOUT = 60


@pytest.mark.parametrize("mode", ["provisioning-error", "host-never-starts"])
async def test_unit_that_never_leaves_allocating_is_healed(
    fake_juju_factory: fake_fixtures.ControllerFactory, start_agent: AgentFactory, mode: str
):
    # An operator's `juju add-unit` whose machine fails: with a provisioning error it is
    # broken as soon as that shows; a host that never starts shows nothing wrong at all
    # (a pending machine is never "down"), so it is broken once allocating outlasted
    # settle-timeout. Either way heal-after counts from when it broke.
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    agent = await start_agent(fake, (APP,), settle_timeout=SETTLE_TIMEOUT)
    if mode == "provisioning-error":
        fake.fail_new_units(APP, mode)
    (stuck,) = fake.lifecycle.add_units(APP, 1)
    machine = fake.model.units[stuck].machine_id
    if mode == "provisioning-error":
        await fake.clear_faults()  # only the operator's unit fails
    else:
        fake.machine_down(machine)  # before it was provisioned: it never comes up
    t0 = fake.clock.now()
    await harness.wait_for(lambda: agent.backend.model.get_unit(stuck) is not None, 10, stuck)
    await let_agent_look(fake)  # the agent saw it allocating at t0
    if mode == "provisioning-error":
        await fake.advance(1)  # the provider refuses the machine one step later
        broken_at = t0 + 1
    else:
        await fake.advance(SETTLE_TIMEOUT)
        broken_at = t0 + SETTLE_TIMEOUT
    assert fake.model.units[stuck].agent.current == "allocating"
    await heal_expected(agent, broken_at + HEAL_AFTER)
    await fake.advance(HEAL_AFTER - 1)
    await let_agent_look(fake)
    assert adds(fake) == []
    await fake.advance(1)
    await add_requested(fake)
    await finish(agent, fake, 1, harness.ClockPump(fake, period=0.05))

    (op,) = agent.history()
    assert ops(agent) == [("heal", APP, stuck, f"{APP}/4", "ok")]
    assert close(started_at(op), broken_at + HEAL_AFTER)
    # Still allocating: Juju removes it in the destroy transaction itself, no force needed.
    assert destroys(fake) == [("unit-wsgi-example-3", False, None, False)]
    assert harness.units_of(fake, APP) == {f"{APP}/0", f"{APP}/1", f"{APP}/2", f"{APP}/4"}
    assert machine not in fake.model.machines


# -- 4. mass failure -------------------------------------------------------------------------


async def test_mass_failure_heals_nothing_until_few_enough_units_are_broken(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    start_agent: AgentFactory,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO, logger="whirlwind")
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    agent = await start_agent(fake, (APP,))
    note = "mass failure: 2 of 3 units broken (more than 50%): not healing"
    fake.error_unit(f"{APP}/1")
    fake.error_unit(f"{APP}/2")

    async def noted() -> bool:
        return (await status_of(agent))["notes"] == {APP: [note]}

    await harness.wait_for(noted, 10, "mass failure noted")
    # Three heal-after periods later: still nothing, and the note stays.
    for _ in range(3):
        await fake.advance(HEAL_AFTER)
        await let_agent_look(fake)
    assert adds(fake) == []
    assert (await status_of(agent))["notes"] == {APP: [note]}
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "mass failure" in r.getMessage()
    ]
    assert warnings == [f"{APP}: {note}"]  # once, when it appeared

    # The operator resolves one: 1 of 3 broken, and that one has been broken long enough.
    fake.resolve_unit(f"{APP}/1")
    await harness.ClockPump(fake).until(lambda: adds(fake) != [], what="heal started")
    await finish(agent, fake, 1)

    assert ops(agent) == [("heal", APP, f"{APP}/2", f"{APP}/3", "ok")]
    assert destroys(fake) == [("unit-wsgi-example-2", True, 0, False)]
    assert harness.units_of(fake, APP) == {f"{APP}/0", f"{APP}/1", f"{APP}/3"}
    assert (await status_of(agent))["notes"] == {}


# -- 5. the unit count -----------------------------------------------------------------------


async def test_unit_count_is_restored_after_an_operator_removed_a_unit(
    fake_juju_factory: fake_fixtures.ControllerFactory, start_agent: AgentFactory
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    agent = await start_agent(fake, (APP,), policies=((APP, policies.Overrides(units=3)),))
    await let_agent_look(fake)
    assert adds(fake) == []  # three live units: nothing to do
    fake.remove_unit(f"{APP}/2")  # `juju remove-unit`: dying at once
    # A dying unit is not live: one unit is added at once, without waiting for heal-after.
    await add_requested(fake)
    await finish(agent, fake, 1)

    assert ops(agent) == [("count", APP, None, f"{APP}/3", "ok")]
    assert destroys(fake) == []  # the agent removed nothing
    assert harness.units_of(fake, APP) == {f"{APP}/0", f"{APP}/1", f"{APP}/3"}
    assert harness.count_healthy(fake.model, APP) == 3
    await let_agent_look(fake)
    assert len(adds(fake)) == 1  # three live units again: no more
    assert (await status_of(agent))["notes"] == {}


# -- 6. storage ------------------------------------------------------------------------------

DB = "db"


async def test_unit_with_storage_is_skipped_unless_storage_allow(
    fake_juju_factory: fake_fixtures.ControllerFactory, start_agent: AgentFactory
):
    fake = await fake_juju_factory({DB: 3, harness.OWN_APP: 1}, storage={DB})
    agent = await start_agent(fake, (DB,), interval=120)
    await let_agent_look(fake)  # a status poll has shown the storage

    # replace-now picks no unit: every one has storage.
    with pytest.raises(control.ControlError) as refused:
        await agent.replace_now(DB, wait=False)
    assert refused.value.code == control.REFUSED
    assert refused.value.message == (
        "no unit of db can be replaced: db/0 has storage, db/1 has storage, db/2 has storage "
        "(a policy with storage: allow lets units with storage go)"
    )
    # Nor does the rotation when it falls due; the status says why.
    await fake.advance(120)
    await let_agent_look(fake)
    notes = (await status_of(agent))["notes"]
    assert notes == {
        DB: [
            "rotate: skipped db/0 has storage, db/1 has storage, db/2 has storage",
            "no unit can be replaced",
        ]
    }
    assert adds(fake) == []
    assert destroys(fake) == []

    # The operator allows it: the rotation (still due) replaces the oldest non-leader and
    # keeps its storage, detached.
    allowed = dataclasses.replace(
        agent.engine.settings, policies=((DB, policies.Overrides(storage="allow")),)
    )
    agent.engine.reload(allowed)
    await harness.ClockPump(fake).until(lambda: adds(fake) != [], what="rotation started")
    await finish(agent, fake, 1)

    assert ops(agent) == [("interval", DB, "db/1", "db/3", "ok")]
    assert destroys(fake) == [("unit-db-1", False, None, False)]
    assert harness.units_of(fake, DB) == {"db/0", "db/2", "db/3"}
    storage = fake.state()["storage"]
    assert storage["data/1"]["owner"] == ""  # outlives its unit
    assert storage["data/1"]["life"] == "alive"
    assert storage["data/3"]["attached-to"] == "db/3"


# -- 7. the leader goes last -----------------------------------------------------------------


async def test_leader_goes_last_within_the_oldest_generation(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    start_agent: AgentFactory,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO, logger="whirlwind")
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    fake.set_leader(f"{APP}/1")
    await fake.run_until_settled()  # it ran leader-elected
    agent = await start_agent(fake, (APP,), interval=120)

    # replace-now: the oldest unit that does not lead.
    request = asyncio.create_task(agent.replace_now(APP))
    await harness.ClockPump(fake).until(request.done, what="replace-now finished")
    assert request.result()["old-unit"] == f"{APP}/0"
    # Two rotations: /1 and /2 (seeded together) are the oldest generation; /2 goes first,
    # then the leader, before the unit replace-now added (a younger generation).
    await finish(agent, fake, 3)

    assert ops(agent) == [
        ("replace-now", APP, f"{APP}/0", f"{APP}/3", "ok"),
        ("interval", APP, f"{APP}/2", f"{APP}/4", "ok"),
        ("interval", APP, f"{APP}/1", f"{APP}/5", "ok"),
    ]
    assert harness.units_of(fake, APP) == {f"{APP}/3", f"{APP}/4", f"{APP}/5"}
    infos = [r.getMessage() for r in caplog.records]
    assert f"{APP}: rotate: skipped {APP}/1 is the leader (last)" in infos
    # The leader was removed normally (it could run its stop hooks).
    assert [force for _, force, _, _ in destroys(fake)] == [False, False, False]


# -- 8. per-application overrides ----------------------------------------------------------

WEB, API = "web", "api"


async def test_heal_false_in_one_application_policy_heals_only_the_other(
    fake_juju_factory: fake_fixtures.ControllerFactory, start_agent: AgentFactory
):
    fake = await fake_juju_factory({WEB: 3, API: 3, harness.OWN_APP: 1})
    agent = await start_agent(fake, (WEB, API), policies=((API, policies.Overrides(heal=False)),))
    t0 = fake.clock.now()
    fake.error_unit("api/1")
    fake.error_unit("web/1")
    await heal_expected(agent, t0 + HEAL_AFTER)
    status = await status_of(agent)
    assert status["next-service"] == WEB
    await fake.advance(HEAL_AFTER)
    await add_requested(fake)

    def web_done() -> bool:
        # api/1's hook retries never stop: Juju is never idle, so look at web alone.
        return (
            harness.units_of(fake, WEB) == {"web/0", "web/2", "web/3"}
            and harness.count_healthy(fake.model, WEB) == 3
        )

    await finish(agent, fake, 1, idle=web_done)
    # api/1 has been in error for several heal-after periods: still never healed.
    for _ in range(4):
        await fake.advance(HEAL_AFTER)
        await let_agent_look(fake)

    assert ops(agent) == [("heal", WEB, "web/1", "web/3", "ok")]
    assert adds(fake) == [WEB]
    assert destroys(fake) == [("unit-web-1", True, 0, False)]
    assert harness.unit_status(fake, "api/1") == "error"
    assert harness.units_of(fake, API) == {"api/0", "api/1", "api/2"}


# -- 9. pause and the heal switch --------------------------------------------------------------


@pytest.mark.parametrize(
    ("paused", "heal"), [(True, True), (False, False)], ids=["paused-heals", "heal-off"]
)
async def test_heal_goes_on_while_paused_and_only_heal_false_stops_it(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    start_agent: AgentFactory,
    paused: bool,
    heal: bool,
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    agent = await start_agent(fake, (APP,), heal=heal)
    if paused:
        await agent.engine.pause()
    broken = f"{APP}/1"
    t0 = fake.clock.now()
    fake.error_unit(broken)
    if heal:
        await heal_expected(agent, t0 + HEAL_AFTER)
        await fake.advance(HEAL_AFTER)
        await add_requested(fake)
        await finish(agent, fake, 1)
        assert ops(agent) == [("heal", APP, broken, f"{APP}/3", "ok")]
        assert destroys(fake) == [("unit-wsgi-example-1", True, 0, False)]
        assert (await status_of(agent))["paused"] is True
        return
    await harness.wait_for(lambda: agent.backend.model.is_broken(broken), 10, "error seen")
    for _ in range(4):
        await fake.advance(HEAL_AFTER)
        await let_agent_look(fake)
    assert adds(fake) == []
    assert ops(agent) == []
    assert harness.unit_status(fake, broken) == "error"
    status = await status_of(agent)
    assert status["next-trigger"] != "heal"

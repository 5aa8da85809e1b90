"""Failure injection (issue 12) in the real agent against the fake controller.

kill-unit healed back by the unit count; stop-agent making a unit lost (Juju's lost rules)
and then healed, or back by itself when its duration ends; slow-network reverted at the end
of its duration and early when the agent stops; a SIGKILLed agent whose injection is still
undone on the unit's side; every part of the guard holding chaos back with zero exec calls;
and the same seed replaying the same draws and injections.

The engine runs on the fake's manual clock, as in test_agent_policies.py: chaos ticks,
durations and heal-after are fake seconds, so a test jumps to a tick in an instant. Exec is
allowed in the fake only where a test injects through it; everywhere else the test asserts
that the fake's exec log (refused calls are logged too) stayed empty.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from tests.fakejuju import execs as fake_execs
from tests.fakejuju import fixtures as fake_fixtures
from tests.fakejuju import server as fake_server
from tests.functional import agent_harness as harness
from tests.functional import conftest
from whirlwind import control, libjuju_backend, policies
from whirlwind import journal as journal_mod
from whirlwind.chaos import draws as draws_mod
from whirlwind.chaos import guard
from whirlwind.chaos import injector as injector_mod
from whirlwind.chaos import runner as chaos_runner
from whirlwind.planner import gates

APP = "wsgi-example"
TICK = 60  # fake seconds between chaos ticks
SEED = 1234
SETTINGS: dict[str, Any] = {
    "heal_after": 30,
    "settle_period": 2,
    "settle_timeout": 300,
    "remove_timeout": 300,
    "interval": 30 * 86400,  # no rotation
    "chaos_seed": SEED,
}
# Exec results are polled (Action.Actions) every 20 ms: the clock pump moves the fake's
# clock a second per 20 ms, so an exec takes a few fake seconds, as it would in Juju.
TIMINGS = dataclasses.replace(harness.AGENT_TIMINGS, exec_poll_interval=0.02)

AgentFactory = Callable[..., Awaitable[harness.InProcessAgent]]


@pytest_asyncio.fixture
async def start_agent(
    fake_juju_factory: fake_fixtures.ControllerFactory, agent_dir: pathlib.Path
) -> AsyncIterator[AgentFactory]:
    """In-process agents on the fake's clock, each with its own state folder."""
    started: list[harness.InProcessAgent] = []

    async def make(
        fake: fake_server.FakeJujuController,
        chaos: dict[str, Any],
        timings: libjuju_backend.BackendTimings = TIMINGS,
        **overrides: Any,
    ) -> harness.InProcessAgent:
        folder = agent_dir / f"a{len(started)}"
        folder.mkdir()
        values = {**SETTINGS, **overrides}
        more = values.pop("policy", {})  # the application's other policies
        parsed = policies.parse_policies({APP: {"chaos": chaos, **more}}, (APP,))
        values["policies"] = tuple(parsed.items())
        agent_settings = harness.make_settings(fake, folder, (APP,), **values)
        agent = harness.InProcessAgent(
            agent_settings, timings=timings, now=harness.fake_time(fake)
        )
        started.append(agent)
        return await agent.start()

    yield make
    for agent in started:
        await agent.stop()


# -- helpers ------------------------------------------------------------------------------


async def arm(
    agent: harness.InProcessAgent, fake: fake_server.FakeJujuController, duration: str = "1h"
) -> dict[str, Any]:
    """arm-chaos as the control API passes it, confirmed with the model's name."""
    armed = await agent.engine.arm_chaos(duration, fake.model.name, by="test")
    assert armed["chaos-armed"] is True
    return armed


def exec_log(fake: fake_server.FakeJujuController) -> list[tuple[str, str, bool]]:
    """(unit, "kind phase" of the chaos marker or the first line, allowed) of every exec."""
    found = []
    for entry in fake.execs.log:
        marker = fake_execs.parse_marker(entry.command)
        what = f"{marker.kind} {marker.phase}" if marker is not None else entry.command
        found.append((entry.unit, what, entry.allowed))
    return found


def destroyed_units(fake: fake_server.FakeJujuController) -> list[tuple[str, bool]]:
    """(unit tag, force) of every DestroyUnit request."""
    return [
        (item["unit-tag"], item.get("force", False))
        for call in fake.calls_to("Application", "DestroyUnit")
        for item in call.params["units"]
    ]


def machine_removals(fake: fake_server.FakeJujuController) -> list[tuple[str, bool]]:
    """(machine tag, force) of every DestroyMachineWithParams request."""
    return [
        (tag, call.params.get("force", False))
        for call in fake.calls_to("MachineManager", "DestroyMachineWithParams")
        for tag in call.params["machine-tags"]
    ]


def adds(fake: fake_server.FakeJujuController) -> int:
    """How many AddUnits requests the agent made."""
    return len(fake.calls_to("Application", "AddUnits"))


def chaos_changes(fake: fake_server.FakeJujuController) -> list[str]:
    """Every call that injects: removals of units or machines, and execs (refused too)."""
    return (
        [f"destroy {tag}" for tag, _ in destroyed_units(fake)]
        + [f"destroy {tag}" for tag, _ in machine_removals(fake)]
        + [f"exec {unit}: {what}" for unit, what, _ in exec_log(fake)]
    )


def injections(agent: harness.InProcessAgent) -> list[journal_mod.ChaosInjection]:
    """The journaled injections, oldest first."""
    return list(reversed(agent.journal.get_injections(100)))


def draws(agent: harness.InProcessAgent) -> list[draws_mod.Draw]:
    """The journaled chaos draws, oldest first."""
    found = [
        draws_mod.Draw.from_state(d) for d in agent.journal.get_state(chaos_runner.DRAWS_KEY) or []
    ]
    return [d for d in found if d is not None]


def machine_chaos(fake: fake_server.FakeJujuController, machine: str) -> dict[str, Any]:
    """The machine's chaos record as GET /state shows it (the fake's own once it is gone)."""
    machines = fake.state()["machines"]
    return machines[machine]["chaos"] if machine in machines else fake.execs.chaos_of(machine)


def machine_of(fake: fake_server.FakeJujuController, unit: str) -> str:
    """The machine a unit of the fake is on."""
    return fake.model.units[unit].machine_id


async def let_agent_look(fake: fake_server.FakeJujuController, polls: int = 4) -> None:
    """Wait (real time, clock frozen) for `polls` more status polls: each wakes the loop."""
    before = len(fake.calls_to("Client", "FullStatus"))
    await fake.wait_for_call("Client", "FullStatus", before + polls, timeout=10)


def holding(agent: harness.InProcessAgent) -> list[str]:
    """Names of the gates that hold chaos on APP back in the agent's latest plan.

    Those of its chaos plan; the application's own when it has none (never touched at all).
    """
    plan = agent.engine.plan
    target = plan.get(APP) if plan is not None else None
    assert target is not None
    return [gate.name for gate in (target.chaos or target).holding]


async def injected(agent: harness.InProcessAgent, count: int = 1) -> None:
    """Wait (real time) until `count` injections have been made (their result journaled)."""
    await harness.wait_for(
        lambda: len([i for i in injections(agent) if i.result != journal_mod.RUNNING]) >= count,
        10,
        f"{count} injection(s) made",
    )


# -- 1. kill-unit and kill-machine, healed back by the unit count ---------------------------


@pytest.mark.parametrize("kind", ["kill-unit", "kill-machine"])
async def test_armed_kill_removes_one_unit_and_the_count_brings_it_back(
    fake_juju_factory: fake_fixtures.ControllerFactory, start_agent: AgentFactory, kind: str
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})  # exec refused
    chaos = {"kinds": [kind], "chance": 1, "interval": f"{TICK}s", "max-per-day": 1}
    agent = await start_agent(fake, chaos, policy={"units": 3})
    t0 = fake.clock.now()
    await arm(agent, fake)

    # Just before the first tick nothing happens, however often the agent looks.
    await fake.advance(TICK - 1)
    await let_agent_look(fake)
    assert chaos_changes(fake) == []
    await fake.advance(1)
    await injected(agent)
    (injection,) = injections(agent)
    victim = injection.unit
    machine = machine_of(fake, victim)
    # The count sees a unit that is dying (or gone) as missing and adds one at once; the
    # pump lets Juju go on (a forced machine removal at the cleaner's pace).
    await harness.ClockPump(fake, step=2.0).until(
        lambda: (
            bool(agent.history())
            and agent.history()[0]["result"] == journal_mod.OK
            and harness.lifecycle_idle(fake)
        ),
        what="count restored",
    )
    # Several more ticks: max-per-day holds chaos back.
    for _ in range(3):
        await fake.advance(TICK)
        await let_agent_look(fake)

    assert (injection.kind, injection.result, injection.service) == (kind, "ok", APP)
    assert injection.acted is not None
    assert abs(injection.acted.timestamp() - (t0 + TICK)) < 1
    assert victim in {f"{APP}/1", f"{APP}/2"}  # never the leader (/0) while others can go
    if kind == "kill-unit":
        assert destroyed_units(fake) == [("unit-" + victim.replace("/", "-"), False)]
        assert machine_removals(fake) == []
    else:
        assert destroyed_units(fake) == []
        assert machine_removals(fake) == [(f"machine-{machine}", True)]
    assert machine not in fake.model.machines
    assert [
        (op["trigger"], op["old-unit"], op["new-unit"], op["result"]) for op in agent.history()
    ] == [("count", None, f"{APP}/3", "ok")]
    assert harness.units_of(fake, APP) == {f"{APP}/0", f"{APP}/1", f"{APP}/2", f"{APP}/3"} - {
        victim
    }
    assert harness.count_healthy(fake.model, APP) == 3
    assert exec_log(fake) == []  # a removal, never an exec
    assert [(d.tick, d.inject, d.kind, d.victim) for d in draws(agent)] == [
        (1, True, kind, victim)
    ]
    assert guard.MAX_PER_DAY in holding(agent)


# -- 2. the guard ------------------------------------------------------------------------------

# Each case and the gate of the guard that holds chaos back; dry-run is the case where the
# guard lets it through (injections journaled as what they would have been), so the others
# hold only by their own condition.
GUARD_CASES = {
    "not-armed": guard.ARMED,
    "expired": guard.ARMED,
    "wrong-confirm": guard.ARMED,
    "unhealthy": guard.HEALTH,
    "paused": gates.PAUSED,
    "controller-model": gates.REFUSED,  # the controller model: not even planned
    "dry-run": None,
}


@pytest.mark.parametrize("case", list(GUARD_CASES))
async def test_nothing_is_injected_unless_every_part_of_the_guard_lets_it(
    fake_juju_factory: fake_fixtures.ControllerFactory, start_agent: AgentFactory, case: str
):
    controller_model = case == "controller-model"
    fake = await fake_juju_factory(  # exec refused
        {APP: 3, harness.OWN_APP: 1}, controller_model=controller_model
    )
    chaos = {
        "kinds": ["kill-unit", "slow-network", "stop-agent"],
        "chance": 1,
        "interval": f"{TICK}s",
        "duration": "2m",
    }
    charm_arming: dict[str, Any] = {}
    if controller_model:  # armed through the charm's peer data: the agent still refuses
        at = datetime.datetime.fromtimestamp(fake.clock.now(), datetime.timezone.utc)
        charm_arming = {
            "chaos_armed": True,
            "chaos_armed_at": at,
            "chaos_armed_until": at + datetime.timedelta(hours=1),
        }
    agent = await start_agent(fake, chaos, heal=False, **charm_arming)
    if case == "unhealthy":
        fake.error_unit(f"{APP}/1")
        await harness.wait_for(lambda: agent.backend.model.is_broken(f"{APP}/1"), 10, "error seen")
    if case == "paused":
        await agent.engine.pause()
    if case == "wrong-confirm":
        with pytest.raises(control.ControlError, match="confirm must be the model's name"):
            await agent.engine.arm_chaos("1h", "production")
    elif case == "dry-run":
        armed = await agent.engine.arm_chaos("1h", fake.model.name, dry_run=True)
        assert armed["chaos"].startswith("chaos armed (dry-run) until")
    elif case == "expired":
        await arm(agent, fake, "5m")
        # One jump over the whole arming: at the first look after it, five ticks are due
        # and the arming has ended.
        await fake.advance(5 * TICK + 1)
    elif controller_model:
        with pytest.raises(control.ControlError, match="controller model"):
            await agent.engine.arm_chaos("1h", fake.model.name)
    elif case != "not-armed":
        await arm(agent, fake)

    for _ in range(3):
        await fake.advance(TICK)
        await let_agent_look(fake)

    assert chaos_changes(fake) == []
    assert exec_log(fake) == []
    status = await agent.engine.get_status()
    if case == "dry-run":  # journaled as what it would have done, and nothing made
        made = injections(agent)
        assert made
        assert all(i.result == journal_mod.DRY_RUN for i in made)
        assert status["chaos-armed"] is True
        return
    assert injections(agent) == []
    assert draws(agent) == []
    assert GUARD_CASES[case] in holding(agent)
    armed = case in ("unhealthy", "paused")
    assert status["chaos-armed"] is armed
    assert status["chaos"].startswith("CHAOS ARMED until" if armed else "chaos not armed")


# -- 3. stop-agent: lost, then healed or back by itself ----------------------------------------


@pytest.mark.parametrize("ending", ["healed", "back-after-its-duration"])
async def test_stop_agent_makes_the_unit_lost_then_heal_replaces_it_or_it_comes_back(
    fake_juju_factory: fake_fixtures.ControllerFactory, start_agent: AgentFactory, ending: str
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1}, allow_exec=True)
    # Healed: heal-after (30 s) is much shorter than the stop (fake seconds); else the
    # machine agent is back first.
    stop_for, heal_after = (600, 30) if ending == "healed" else (120, 600)
    chaos = {
        "kinds": ["stop-agent"],
        "chance": 1,
        "interval": f"{TICK}s",
        "duration": f"{stop_for}s",
        "max-per-day": 1,
    }
    agent = await start_agent(fake, chaos, heal_after=heal_after)
    await arm(agent, fake)
    await fake.advance(TICK)
    pump = harness.ClockPump(fake, step=1.0, period=0.03)
    await pump.until(lambda: bool(injections(agent)), what="injection journaled")
    victim = injections(agent)[0].unit
    machine = machine_of(fake, victim)
    # The script runs a step after Run; 2 s later the machine agent stops (the exec's reply
    # went back first).
    await pump.until(lambda: fake.model.machines[machine].agent_down, what="agent stopped")
    stopped_at = fake.clock.now()
    record = machine_chaos(fake, machine)
    await injected(agent)
    (injection,) = injections(agent)
    assert (injection.kind, injection.result, injection.params) == (
        "stop-agent",
        "ok",
        {"duration": stop_for},
    )
    # Juju's lost rules: the machine down and its unit lost in FullStatus only (the stored
    # agent status is untouched).
    assert fake.state()["units"][victim]["agent-lost"] is False
    view = agent.backend.model
    await harness.wait_for(
        lambda: victim in view.lost_units and machine in view.down_machines,
        10,
        "the agent sees the unit lost",
    )
    assert view.is_broken(victim)

    if ending == "healed":
        # A forced removal's cleanups run at the cleaner's pace (30 s of Juju's time).
        await harness.ClockPump(fake, step=2.0).until(
            lambda: (
                bool(agent.history())
                and agent.history()[0]["result"] == journal_mod.OK
                and victim not in fake.model.units
                and machine not in fake.model.machines
            ),
            timeout=30,
            what="lost unit healed",
        )
        assert fake.clock.now() < stopped_at + stop_for  # before it would have come back
        (op,) = agent.history()
        assert (op["trigger"], op["old-unit"], op["result"]) == ("heal", victim, "ok")
        assert destroyed_units(fake) == [("unit-" + victim.replace("/", "-"), True)]
        assert len(harness.units_of(fake, APP)) == 3
    # Back at the end of its duration (the machine's own timer); the agent journals that the
    # unit undid it (no exec can reach a stopped agent).
    await harness.ClockPump(fake, step=5.0).until(
        lambda: not agent.engine._chaos.pending and fake.clock.now() >= stopped_at + stop_for,
        timeout=20,
        what="revert journaled",
    )
    await harness.ClockPump(fake).until(
        lambda: harness.count_healthy(fake.model, APP) == 3, what="three healthy units"
    )

    assert record["agent-stopped-until"] == pytest.approx(stopped_at + stop_for, abs=1.5)
    assert machine_chaos(fake, machine)["agent-stopped-until"] is None
    (injection,) = injections(agent)
    assert injection.revert_result == injector_mod.REVERT_UNIT_SIDE
    assert exec_log(fake) == [(victim, "stop-agent inject", True)]
    if ending == "back-after-its-duration":
        assert agent.history() == []  # nothing replaced: it came back before heal-after
        assert adds(fake) == 0
        assert destroyed_units(fake) == []
        assert harness.units_of(fake, APP) == {f"{APP}/0", f"{APP}/1", f"{APP}/2"}
        assert not fake.model.machines[machine].agent_down
        await harness.wait_for(lambda: not view.lost_units, 10, "the agent sees it back")


# -- 4. slow-network: reverted at the end of its duration, or early when the agent stops -------

SLOW_FOR = 180  # fake seconds


@pytest.mark.parametrize("ending", ["duration", "agent-stops"])
async def test_slow_network_is_reverted_after_its_duration_and_when_the_agent_stops(
    fake_juju_factory: fake_fixtures.ControllerFactory, start_agent: AgentFactory, ending: str
):
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1}, allow_exec=True)
    chaos = {
        "kinds": ["slow-network"],
        "chance": 1,
        "interval": f"{TICK}s",
        "duration": f"{SLOW_FOR}s",
        "delay": "250ms",
        "max-per-day": 1,
    }
    agent = await start_agent(fake, chaos)
    await arm(agent, fake)
    await fake.advance(TICK)
    pump = harness.ClockPump(fake, step=1.0, period=0.03)
    await pump.until(lambda: bool(injections(agent)), what="injection journaled")
    victim = injections(agent)[0].unit
    machine = machine_of(fake, victim)
    await pump.until(
        lambda: machine_chaos(fake, machine)["slow-network"] is not None, what="network slowed"
    )
    slowed = machine_chaos(fake, machine)["slow-network"]
    await pump.until(
        lambda: injections(agent)[0].result != journal_mod.RUNNING, what="exec answered"
    )
    made = injections(agent)[0]

    if ending == "duration":
        await harness.ClockPump(fake, step=5.0).until(
            lambda: not agent.engine._chaos.pending, timeout=20, what="reverted at its end"
        )
        assert fake.clock.now() >= slowed["until"]
    else:
        await pump.tick()
        assert machine_chaos(fake, machine)["slow-network"] is not None
        async with pump.running():  # the revert is an exec: Juju must go on meanwhile
            await agent.stop()
        assert fake.clock.now() < slowed["until"] - 60  # well before the unit's own timer

    assert made.acted is not None
    assert (slowed["op"], slowed["delay-ms"]) == (made.id, 250)
    assert slowed["until"] == pytest.approx(made.acted.timestamp() + SLOW_FOR, abs=2)
    assert machine_chaos(fake, machine)["slow-network"] is None
    assert exec_log(fake) == [
        (victim, "slow-network inject", True),
        (victim, "slow-network revert", True),
    ]
    reopened = journal_mod.Journal(
        agent.settings.state_dir / journal_mod.JOURNAL_FILE, durable=False
    )
    try:
        (injection,) = reopened.get_injections(10)
    finally:
        reopened.close()
    assert (injection.kind, injection.result) == ("slow-network", "ok")
    assert injection.params == {"duration": SLOW_FOR, "delay-ms": 250}
    assert injection.revert_result == "ok"
    assert injection.reverted is not None
    assert injection.revert_due is not None
    if ending == "agent-stops":
        assert injection.reverted < injection.revert_due  # early
    else:
        assert injection.reverted >= injection.revert_due
    assert destroyed_units(fake) == []


# -- 5. the agent killed mid-injection: the unit still undoes it -------------------------------

KILLED_FOR = 600  # fake seconds


@pytest.mark.parametrize(
    ("kind", "change"),
    [("slow-network", "tc qdisc replace"), ("stop-agent", "/bin/systemctl stop")],
    ids=["slow-network", "stop-agent"],
)
async def test_unit_side_revert_happens_after_the_agent_is_killed_mid_injection(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_process_factory: conftest.AgentProcessFactory,
    kind: str,
    change: str,
):
    # The real `whirlwind run` process (its own clock is the wall clock: a 2 s chaos tick),
    # SIGKILLed once the script ran on the unit: no stop, no revert, nothing journaled after.
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1}, allow_exec=True)
    chaos = {"kinds": [kind], "chance": 1, "interval": "2s", "duration": f"{KILLED_FOR}s"}
    parsed = policies.parse_policies({APP: {"chaos": chaos}}, (APP,))
    agent = agent_process_factory(
        fake,
        (APP,),
        policies=tuple(parsed.items()),
        chaos_seed=SEED,
        heal=False,
        interval=30 * 86400,
    )
    await agent.start()
    armed = await agent.call("arm-chaos", duration="1h", confirm=fake.model.name, by="test")
    assert armed["chaos-armed"] is True

    def changed() -> dict[str, Any]:
        return {m: c for m, c in fake.execs.chaos.items() if not c.empty}

    async with harness.ClockPump(fake).running():
        await harness.wait_for(lambda: bool(changed()), 20, f"{kind} on a unit")
    await agent.kill()
    ((machine, record),) = changed().items()
    victim = next(u for u, info in fake.state()["units"].items() if info["machine"] == machine)
    until = record.slow_network["until"] if record.slow_network else record.agent_stopped_until
    assert until is not None
    assert until - fake.clock.now() > KILLED_FOR - 60  # killed well inside its duration
    (action,) = fake.model.actions.values()
    script = action.parameters["command"].splitlines()
    marker = fake_execs.parse_marker(script[0])
    assert marker is not None
    await fake.advance(until - fake.clock.now() - 1)
    still = machine_chaos(fake, machine)
    agent_down = fake.model.machines[machine].agent_down
    await fake.advance(2)

    # The machine's own timer, scheduled before the change was made, undid it: no agent ran.
    assert agent.process is not None
    assert agent.process.returncode == -9
    assert still != {"agent-stopped-until": None, "slow-network": None, "wrench": []}
    assert agent_down is (kind == "stop-agent")
    assert machine_chaos(fake, machine) == {
        "agent-stopped-until": None,
        "slow-network": None,
        "wrench": [],
    }
    assert not fake.model.machines[machine].agent_down
    assert exec_log(fake) == [(victim, f"{kind} inject", True)]  # no revert was sent
    schedule = next(i for i, line in enumerate(script) if line.startswith("systemd-run"))
    after = KILLED_FOR + (2 if kind == "stop-agent" else 0)
    assert f"--unit=whirlwind-chaos-{marker.op}-revert --on-active={after}s" in script[schedule]
    assert schedule < next(i for i, line in enumerate(script) if change in line)
    # The dead agent's journal: journaled before it was made, never reverted by the agent,
    # its revert due (a restarted agent picks it up from there).
    left = journal_mod.Journal(agent.settings.state_dir / journal_mod.JOURNAL_FILE, durable=False)
    try:
        (injection,) = left.get_pending_reverts()
    finally:
        left.close()
    assert (injection.id, injection.kind, injection.unit) == (marker.op, kind, victim)
    assert injection.reverted is None


# -- 6. replay: the same seed and the same model give the same sequence ------------------------

REPLAY_SEED = 42  # over ticks 1..8: kill-unit at 2, 5 and 8, slow-network at 6, none else
REPLAY_TICKS = 8
FINAL = ("completed", "failed", "cancelled", "aborted", "error")


def juju_quiet(fake: fake_server.FakeJujuController, agent: harness.InProcessAgent) -> bool:
    """No injection being made, no exec unfinished, every unit and machine settled and alive."""
    units = [u for u in fake.model.units.values() if u.application == APP]
    return (
        not agent.engine._chaos.busy()
        and all(a.status in FINAL for a in fake.model.actions.values())
        and all(u.life == "alive" and u.agent.current == "idle" for u in units)
        and all(m.life == "alive" for m in fake.model.machines.values())
    )


async def run_chaos(
    fake: fake_server.FakeJujuController, agent: harness.InProcessAgent
) -> dict[str, Any]:
    """Arm, then jump to each chaos tick in turn and let Juju settle: what happened."""
    armed_at = fake.clock.now()
    await arm(agent, fake)
    pump = harness.ClockPump(fake, step=1.0, period=0.03)
    for tick in range(1, REPLAY_TICKS + 1):
        await fake.advance(armed_at + tick * TICK - fake.clock.now())
        await let_agent_look(fake)  # the tick is decided at its time, the clock frozen
        await pump.until(lambda: juju_quiet(fake, agent), what=f"tick {tick} settled")
        assert fake.clock.now() < armed_at + (tick + 1) * TICK  # never past the next tick
    found = draws(agent)
    assert draws_mod.find_mismatches(REPLAY_SEED, found) == []  # the journal replays
    return {
        "draws": [
            (d.tick, (d.at - d.armed_at).total_seconds(), d.inject, d.kind, d.candidates, d.victim)
            for d in found
        ],
        "injections": [(i.kind, i.unit, i.result, i.revert_result) for i in injections(agent)],
        "removed": destroyed_units(fake),
        "execs": exec_log(fake),
        "units": sorted(harness.units_of(fake, APP)),
    }


async def test_the_same_seed_and_model_replay_the_same_draws_and_injections(
    fake_juju_factory: fake_fixtures.ControllerFactory, start_agent: AgentFactory
):
    chaos = {
        "kinds": ["kill-unit", "slow-network"],
        "chance": 0.5,
        "interval": f"{TICK}s",
        "duration": "90s",
    }
    runs = []
    for _ in range(2):
        fake = await fake_juju_factory({APP: 5, harness.OWN_APP: 1}, allow_exec=True, seed=5)
        agent = await start_agent(fake, chaos, heal=False, chaos_seed=REPLAY_SEED)
        runs.append(await run_chaos(fake, agent))
        await agent.stop()
    first, second = runs

    assert first == second
    # Every decided tick at its own time; tick 7 held: the slow-network of tick 6 (90 s)
    # was still in effect.
    assert [(tick, at, inject, kind) for tick, at, inject, kind, _, _ in first["draws"]] == [
        (1, 60.0, False, None),
        (2, 120.0, True, "kill-unit"),
        (3, 180.0, False, None),
        (4, 240.0, False, None),
        (5, 300.0, True, "kill-unit"),
        (6, 360.0, True, "slow-network"),
        (8, 480.0, True, "kill-unit"),
    ]
    victims = [victim for _, _, inject, _, _, victim in first["draws"] if inject]
    assert [(kind, unit) for kind, unit, _, _ in first["injections"]] == list(
        zip(["kill-unit", "kill-unit", "slow-network", "kill-unit"], victims, strict=True)
    )
    assert all(result == "ok" for _, _, result, _ in first["injections"])
    assert first["removed"] == [
        ("unit-" + v.replace("/", "-"), False) for v in (victims[0], victims[1], victims[3])
    ]
    assert first["execs"] == [
        (victims[2], "slow-network inject", True),
        (victims[2], "slow-network revert", True),
    ]
    assert len(first["units"]) == 2


# -- 7. the revert is on time even when nothing else wakes the agent --------------------------


async def test_revert_is_made_when_its_duration_ends_with_nothing_else_to_wake_the_agent(
    fake_juju_factory: fake_fixtures.ControllerFactory, start_agent: AgentFactory
):
    # Real time: the fake's clock runs by itself (steps of 50 ms), status polls are a minute
    # apart, the next chaos tick is an hour away. Armed by the charm (peer data) an hour
    # minus 2 s ago, so the first tick is due 2 s after the start.
    fake = await fake_juju_factory(
        {APP: 3, harness.OWN_APP: 1}, allow_exec=True, realtime=True, step_delay=0.05
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    armed_at = now - datetime.timedelta(seconds=3600 - 2)
    chaos = {"kinds": ["slow-network"], "chance": 1, "interval": "1h", "duration": "3s"}
    timings = dataclasses.replace(TIMINGS, status_poll_interval=60.0)
    agent = await start_agent(
        fake,
        chaos,
        timings=timings,
        chaos_armed=True,
        chaos_armed_at=armed_at,
        chaos_armed_until=armed_at + datetime.timedelta(hours=2),
        chaos_armed_by="wsgi-example/0 action arm-chaos",
    )
    await harness.wait_for(lambda: bool(injections(agent)), 10, "tick 1 injected")
    await injected(agent)
    (made,) = injections(agent)
    assert made.revert_due is not None

    await harness.wait_for(
        lambda: not agent.engine._chaos.pending, 10, "reverted at the end of its duration"
    )

    (injection,) = injections(agent)
    assert injection.reverted is not None
    assert 0 <= (injection.reverted - made.revert_due).total_seconds() < 2
    assert injection.revert_result == "ok"
    assert [what for _, what, _ in exec_log(fake)] == [
        "slow-network inject",
        "slow-network revert",
    ]


# -- 8. no injection while the last one is still in effect -------------------------------------


async def test_next_injection_waits_until_the_previous_one_is_undone(
    fake_juju_factory: fake_fixtures.ControllerFactory, start_agent: AgentFactory
):
    # A duration of exactly two ticks: the slow-network of tick 1 is still in effect when
    # tick 3 is due (its exec took a few seconds), so tick 3 waits until it is reverted.
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1}, allow_exec=True)
    chaos = {
        "kinds": ["slow-network"],
        "chance": 1,
        "interval": f"{TICK}s",
        "duration": f"{2 * TICK}s",
        "max-per-day": 2,
    }
    agent = await start_agent(fake, chaos)
    armed_at = fake.clock.now()
    await arm(agent, fake)
    await fake.advance(TICK)
    pump = harness.ClockPump(fake, step=1.0, period=0.03)
    await pump.until(
        lambda: [i.result for i in injections(agent)] == ["ok"], what="tick 1 injected"
    )
    first = injections(agent)[0]
    machine = machine_of(fake, first.unit)

    await fake.advance(armed_at + 3 * TICK - fake.clock.now())  # tick 3, the clock frozen
    await let_agent_look(fake)
    in_effect = machine_chaos(fake, machine)["slow-network"]
    at_tick_3 = (len(injections(agent)), holding(agent))
    await pump.until(lambda: len(injections(agent)) == 2, what="tick 3 injected")
    await pump.until(
        lambda: injections(agent)[1].result != journal_mod.RUNNING, what="tick 3 answered"
    )
    async with pump.running():  # the agent reverts the second one as it stops
        await agent.stop()

    assert in_effect is not None
    assert in_effect["op"] == first.id
    assert at_tick_3[0] == 1
    assert guard.ACTIVE in at_tick_3[1]
    reopened = journal_mod.Journal(
        agent.settings.state_dir / journal_mod.JOURNAL_FILE, durable=False
    )
    try:
        done = list(reversed(reopened.get_injections(10)))
    finally:
        reopened.close()
    assert [(i.result, i.revert_result) for i in done] == [("ok", "ok"), ("ok", "ok")]
    # Not before the unit's own timer undid the first (its revert is due no earlier).
    assert done[0].revert_due is not None
    assert done[1].planned >= done[0].revert_due
    (second,) = [e for e in fake.execs.log if f"inject op={done[1].id} " in e.command]
    assert second.at >= in_effect["until"]
    assert sorted(what for _, what, _ in exec_log(fake)) == [
        "slow-network inject",
        "slow-network inject",
        "slow-network revert",
        "slow-network revert",
    ]

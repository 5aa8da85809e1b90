"""Operator control with the real agent against the fake controller: pause, plan, history.

A timed pause that ends by itself and lets the work it held start; `plan` showing every gate
that holds a target back (circuit breaker, closed window, an unhealthy unit, pause) with the
texts an operator reads; `history` of one application and one operation's steps. Requests
go through the control API's socket, as `ctl` and the charm's actions send them.

The engine runs on the fake's manual clock (as in test_agent_policies.py): durations,
windows and due times are fake seconds, so a test jumps to the exact moment a pause ends.
While the clock is frozen the agent keeps looking in real time (its status polls wake it).
"""

from __future__ import annotations

import asyncio
import datetime
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
HEAL_AFTER = 3600  # an unhealthy unit stays unhealthy for the whole test
SETTINGS: dict[str, Any] = {
    "heal_after": HEAL_AFTER,
    "settle_period": 2,
    "settle_timeout": 300,
    "remove_timeout": 300,
    "interval": 30 * 86400,
}

AgentFactory = Callable[..., Awaitable[harness.InProcessAgent]]


@pytest_asyncio.fixture
async def start_agent(
    fake_juju_factory: fake_fixtures.ControllerFactory, agent_dir: pathlib.Path
) -> AsyncIterator[AgentFactory]:
    """In-process agents on the fake's clock, each serving its control socket."""
    started: list[tuple[harness.InProcessAgent, control.ControlServer]] = []

    async def make(
        fake: fake_server.FakeJujuController, services: tuple[str, ...], **overrides: Any
    ) -> harness.InProcessAgent:
        agent_settings = harness.make_settings(
            fake, agent_dir, services, **{**SETTINGS, **overrides}
        )
        agent = harness.InProcessAgent(agent_settings, now=harness.fake_time(fake))
        server = control.ControlServer(agent_settings.control_socket, agent.engine)
        started.append((agent, server))
        await server.start()
        return await agent.start()

    yield make
    for agent, server in started:
        await server.stop()
        await agent.stop()


# -- helpers ------------------------------------------------------------------------------


async def ask(agent: harness.InProcessAgent, command: str, **args: Any) -> Any:
    """One request through the agent's control socket (off the loop the fake runs on)."""
    client = control.ControlClient(agent.settings.control_socket, timeout=10.0)
    return await asyncio.to_thread(client.call, command, None, **args)


def adds(fake: fake_server.FakeJujuController) -> list[str]:
    """The application of every AddUnits request."""
    return [call.params["application"] for call in fake.calls_to("Application", "AddUnits")]


async def let_agent_look(fake: fake_server.FakeJujuController, polls: int = 4) -> None:
    """Wait (real time, clock frozen) for `polls` more status polls: each wakes the loop."""
    before = len(fake.calls_to("Client", "FullStatus"))
    await fake.wait_for_call("Client", "FullStatus", before + polls, timeout=10)


def at(fake: fake_server.FakeJujuController, offset: float = 0.0) -> datetime.datetime:
    """The fake's time now (plus `offset` seconds)."""
    return datetime.datetime.fromtimestamp(fake.clock.now() + offset, datetime.timezone.utc)


def parse(text: str | None) -> datetime.datetime:
    """A time of the control API's answers."""
    when = journal_mod.from_iso(text)
    assert when is not None, text
    return when


def utc_clock(when: datetime.datetime) -> str:
    """`2026-11-29 14:00 UTC`, as the pause texts write a time."""
    return f"{when.astimezone(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"


async def finish(agent: harness.InProcessAgent, fake: fake_server.FakeJujuController) -> None:
    """Pump until no operation is in flight and Juju is idle."""
    await harness.ClockPump(fake).until(
        lambda: agent.idle() and harness.lifecycle_idle(fake), 30, "operations done, Juju idle"
    )


# -- 1. a timed pause ends by itself ------------------------------------------------------


async def test_timed_pause_holds_work_then_ends_by_itself_and_the_rotation_starts(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    start_agent: AgentFactory,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO, logger="whirlwind")
    fake = await fake_juju_factory({APP: 3, harness.OWN_APP: 1})
    agent = await start_agent(fake, (APP,), interval=120)
    t0 = at(fake)
    until = t0 + datetime.timedelta(seconds=600)

    paused = await ask(agent, "pause", duration=600, reason="change freeze")
    # The rotation falls due at t0 + 120 s, in the middle of the pause: nothing starts.
    await fake.advance(300)
    await let_agent_look(fake)
    held = await ask(agent, "status")
    plan_held = await ask(agent, "plan")
    await fake.advance(299)
    await let_agent_look(fake)
    adds_while_paused = adds(fake)
    # At the pause's end, without resume: the due rotation starts at once (clock frozen).
    await fake.advance(1)
    await harness.wait_for(lambda: adds(fake) != [], 10, "rotation started (clock frozen)")
    await finish(agent, fake)
    after = await ask(agent, "status")

    assert paused == {
        "paused": True,
        "changed": True,
        "paused-since": t0.isoformat(),
        "paused-until": until.isoformat(),
        "pause-reason": "change freeze",
    }
    assert held["paused"] is True
    assert held["paused-until"] == until.isoformat()
    assert held["pause-reason"] == "change freeze"
    assert held["next-trigger"] is None  # only healing would go on while paused
    (target,) = plan_held["targets"]
    assert target["gates"]["paused"] == {
        "holds": True,
        "detail": f"paused until {utc_clock(until)} (change freeze)",
    }
    assert plan_held["message"] == (
        f"{APP}: nothing planned; paused: paused until {utc_clock(until)} (change freeze);"
        " 3/3 healthy"
    )
    assert adds_while_paused == []
    (op,) = agent.history()
    assert (op["trigger"], op["service"], op["result"]) == ("interval", APP, "ok")
    assert abs((parse(op["started"]) - until).total_seconds()) < 1e-3
    assert after["paused"] is False
    assert (after["paused-until"], after["pause-reason"]) == (None, "")
    assert f"the pause until {utc_clock(until)} has ended" in caplog.messages
    assert not any(m.startswith("control request: resume") for m in caplog.messages)


# -- 2. plan: every gate that holds a target back -------------------------------------------

BREAKER, WINDOW, SICK = "brk", "win", "sick"


def opens_at(fake: fake_server.FakeJujuController) -> datetime.datetime:
    """Midnight (UTC) after the fake's now."""
    return datetime.datetime.combine(
        at(fake, 86400).date(), datetime.time(), tzinfo=datetime.timezone.utc
    )


def closed_window(fake: fake_server.FakeJujuController) -> tuple[str, str]:
    """A window that opens at the next midnight (UTC): (its text, when it opens as shown)."""
    opens = opens_at(fake)
    return f"{opens:%a}".lower() + " 00:00-01:00 UTC", f"{opens:%a} 00:00 UTC"


def clock_text(when: datetime.datetime, now: datetime.datetime) -> str:
    """A time as the plan writes it: `13:37 UTC` today, `Mon 00:37 UTC` on another day."""
    return f"{when:%H:%M} UTC" if when.date() == now.date() else f"{when:%a %H:%M} UTC"


async def test_plan_shows_every_gate_that_holds_a_target_back_with_its_text(
    fake_juju_factory: fake_fixtures.ControllerFactory, start_agent: AgentFactory
):
    fake = await fake_juju_factory({BREAKER: 3, WINDOW: 3, SICK: 3, harness.OWN_APP: 1})
    window, opens = closed_window(fake)
    agent = await start_agent(
        fake,
        (BREAKER, WINDOW, SICK),
        max_consecutive_failures=1,
        policies=((WINDOW, policies.Overrides(windows=window)),),
    )
    # Breaker: one failed replacement (the new unit's install hook fails; rolled back).
    fake.fail_new_units(BREAKER, "hook-error")
    request = asyncio.create_task(agent.replace_now(BREAKER))
    await harness.ClockPump(fake).until(request.done, 30, "failed replacement rolled back")
    await fake.clear_faults()
    await finish(agent, fake)
    await fake.wait_delivered(10)
    await let_agent_look(fake)  # the agent has seen the last change before the clock stopped
    # Unhealthy: a unit in hook error (heal-after is an hour away).
    broken_at = at(fake)
    fake.error_unit(f"{SICK}/1")
    await harness.wait_for(lambda: agent.backend.model.is_broken(f"{SICK}/1"), 10, "error seen")
    await let_agent_look(fake)

    plan = await ask(agent, "plan")
    direct = await agent.engine.get_plan()
    pause = await ask(agent, "pause", reason="incident 42")
    paused = await ask(agent, "plan")
    await ask(agent, "resume")
    resumed = await ask(agent, "plan")

    # The texts an operator reads, gate by gate.
    failure = 'new unit brk/3 failed: hook failed: "install"'
    (op,) = agent.history()
    assert (op["service"], op["result"], op["reason"]) == (BREAKER, "rolled-back", failure)
    heal_at = broken_at + datetime.timedelta(seconds=HEAL_AFTER)
    why = f'sick/1 broken since {broken_at:%H:%M:%S} UTC (hook failed: "update-status")'
    held = {
        BREAKER: {"breaker": f"1 failure; last: {failure}"},
        WINDOW: {"window": f"closed; opens {opens} ({window})"},
        SICK: {"health": "2 of 3 units healthy; voluntary work waits for all"},
    }
    assert plan == direct  # the control API passes the engine's plan on unchanged
    assert plan["now"] == at(fake).isoformat()
    by_service = {t["service"]: t for t in plan["targets"]}
    assert list(by_service) == [BREAKER, WINDOW, SICK]
    for service, gates in held.items():
        holding = {
            name: gate["detail"] for name, gate in by_service[service]["gates"].items()
            if gate["holds"]
        }  # fmt: skip
        assert holding == gates, service
    assert by_service[BREAKER]["next"] is None
    assert by_service[WINDOW]["next"] == {
        "trigger": "interval",
        "at": opens_at(fake).isoformat(),
        "due": False,
        "what": "window opens",
    }
    assert by_service[SICK]["next"] == {
        "trigger": "heal",
        "at": heal_at.isoformat(),
        "due": False,
        "what": why,
    }
    assert by_service[SICK]["units"] == {
        "live": 3, "healthy": 2, "settling": 0, "broken": 1, "dying": 0, "wanted": None,
    }  # fmt: skip
    assert by_service[SICK]["gates"]["mass-failure"] == {
        "holds": False,
        "detail": "1 of 3 units broken (heals while at most 50%)",
    }
    assert plan["message"].splitlines() == [
        f"brk: nothing planned; breaker: 1 failure; last: {failure}; 3/3 healthy",
        f"win: interval at {opens} (window opens); window: closed; opens {opens} ({window});"
        " 3/3 healthy",
        f"sick: heal at {clock_text(heal_at, broken_at)} ({why}); health: 2 of 3 units healthy;"
        " voluntary work waits for all; 2/3 healthy",
    ]

    # Paused: every target is held by the pause too; healing alone stays planned.
    since = f"paused since {utc_clock(at(fake))} (incident 42)"
    assert pause["paused-since"] == at(fake).isoformat()
    for target in paused["targets"]:
        assert target["gates"]["paused"] == {"holds": True, "detail": since}
    assert [t["next"] for t in paused["targets"]] == [None, None, by_service[SICK]["next"]]
    assert paused["message"].splitlines() == [
        f"brk: nothing planned; breaker: 1 failure; last: {failure}; paused: {since}; 3/3 healthy",
        f"win: nothing planned; paused: {since}; window: closed; opens {opens} ({window});"
        " 3/3 healthy",
        f"sick: heal at {clock_text(heal_at, broken_at)} ({why}); paused: {since};"
        " health: 2 of 3 units healthy; voluntary work waits for all; 2/3 healthy",
    ]
    # Resume also resets the breaker; the window and the broken unit still hold.
    again = {t["service"]: t["gates"] for t in resumed["targets"]}
    assert again[BREAKER]["breaker"] == {"holds": False, "detail": "closed"}
    assert [g["paused"] for g in again.values()] == [{"holds": False, "detail": "running"}] * 3
    assert again[WINDOW]["window"]["holds"] is True
    assert again[SICK]["health"]["holds"] is True
    assert adds(fake) == [BREAKER]  # the plan changed nothing: only the failed replacement


# -- 3. history: one application, one operation's steps -------------------------------------

WEB, API = "web", "api"


async def test_history_of_one_service_and_the_steps_of_one_operation(
    fake_juju_factory: fake_fixtures.ControllerFactory, start_agent: AgentFactory
):
    fake = await fake_juju_factory({WEB: 3, API: 3, harness.OWN_APP: 1})
    agent = await start_agent(fake, (WEB, API))
    pump = harness.ClockPump(fake)
    for service in (WEB, API, WEB):
        request = asyncio.create_task(agent.replace_now(service))
        await pump.until(request.done, 30, f"replace-now of {service}")
    await finish(agent, fake)

    of_web = await ask(agent, "history", service=WEB)
    of_api = await ask(agent, "history", service=API, limit=5)
    everything = await ask(agent, "history")
    first = of_web[-1]
    (one,) = await ask(agent, "history", id=first["id"])
    (same,) = await ask(agent, "history", id=first["id"], service=WEB)
    with pytest.raises(control.ControlError) as elsewhere:
        await ask(agent, "history", id=first["id"], service=API)
    with pytest.raises(control.ControlError) as unknown:
        await ask(agent, "history", id="99-000000")
    with pytest.raises(control.ControlError) as bad:
        await ask(agent, "history", service="web/0")

    assert [(op["service"], op["old-unit"], op["new-unit"]) for op in everything] == [
        (WEB, "web/2", "web/4"),
        (API, "api/1", "api/3"),
        (WEB, "web/1", "web/3"),
    ]  # newest first; unit 0 leads, so it goes last
    assert of_web == [everything[0], everything[2]]
    assert of_api == [everything[1]]
    assert {op["result"] for op in everything} == {"ok"}
    assert one == same == first
    steps = one["steps"]
    assert [s["step"] for s in steps] == ["plan", "add", "settle", "remove", "cleanup", "done"]
    times = [parse(s["at"]) for s in steps]
    started, finished = parse(one["started"]), parse(one["finished"])
    assert [started, *times, finished] == sorted([started, *times, finished])
    assert times[0] == started
    assert one["duration"] == round((finished - started).total_seconds(), 3) > 0
    assert (elsewhere.value.code, elsewhere.value.message) == (
        control.UNKNOWN_OPERATION,
        f"operation {first['id']!r} not found for service 'api'",
    )
    assert (unknown.value.code, unknown.value.message) == (
        control.UNKNOWN_OPERATION,
        "operation '99-000000' not found",
    )
    assert (bad.value.code, bad.value.message) == (
        control.BAD_REQUEST,
        "service must be one application name such as app-1",
    )

"""End to end: `python -m whirlwind run` driven by `python -m whirlwind ctl` and signals.

The agent process replaces units of the fake controller's model through unmodified libjuju;
`ctl` talks to it over its control socket and prints JSON; SIGHUP reloads the settings file
without a restart; SIGTERM stops it cleanly, and an operation it interrupts is finished by
the next start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal

from tests.fakejuju import fixtures as fake_fixtures
from tests.functional import agent_harness as harness
from tests.functional import conftest

ALPHA = "alpha"
BETA = "beta"


async def test_cli_replaces_rotates_reloads_and_stops_cleanly(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_process_factory: conftest.AgentProcessFactory,
):
    fake = await fake_juju_factory({ALPHA: 2, BETA: 2, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [ALPHA, BETA])
    agent = await agent_process_factory(fake, (ALPHA,)).start()
    pump = harness.ClockPump(fake)

    code_status, status, _ = await agent.ctl("status")
    code_unknown, _, unknown_error = await agent.ctl("replace-now", "no-such-app")
    async with pump.running():
        code_now, replaced, _ = await agent.ctl("replace-now", ALPHA)
        code_dry, dry, _ = await agent.ctl("replace-now", BETA, "--dry-run")
    # SIGHUP: a second target and a one-second interval, without a restart.
    reloaded = dataclasses.replace(agent.settings, services=(ALPHA, BETA), interval=1)
    harness.write_settings(reloaded, agent.folder)
    assert agent.process is not None
    agent.process.send_signal(signal.SIGHUP)
    await harness.wait_for(lambda: _services(agent), what="settings reloaded", interval=0.05)
    await pump.until(lambda: _interval_ops(agent, 2), timeout=20, what="two interval runs")
    code_pause, paused, _ = await agent.ctl("pause")
    await pump.until(agent.idle, what="in-flight work finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    code_history, recent, _ = await agent.ctl("history", "--limit", "2")
    history = await agent.history()
    survived_reload = agent.process.returncode is None
    exit_code = await agent.signal(signal.SIGTERM)
    code_gone, _, gone_error = await agent.ctl("status")

    assert (code_status, code_now, code_dry, code_pause, code_history) == (0, 0, 0, 0, 0)
    assert status["services"] == [ALPHA]
    assert code_unknown == 1
    assert "unknown-service: no application 'no-such-app' in the model" in unknown_error
    assert status["connected"] is True
    assert replaced["result"] == "ok"
    assert (replaced["old-unit"], replaced["new-unit"]) == (f"{ALPHA}/1", f"{ALPHA}/2")
    assert dry["result"] == "dry-run"
    assert paused["paused"] is True
    assert [op["id"] for op in recent] == [op["id"] for op in history[:2]]
    oldest_first = list(reversed(history))
    assert [(op["trigger"], op["service"], op["result"]) for op in oldest_first[:4]] == [
        ("replace-now", ALPHA, "ok"),
        ("replace-now", BETA, "dry-run"),
        ("interval", ALPHA, "ok"),
        ("interval", BETA, "ok"),
    ]
    # (A third interval run may have begun before the pause; it finished before SIGTERM.)
    assert {op["result"] for op in oldest_first[4:]} <= {"ok"}
    assert exit_code == 0
    assert not agent.settings.control_socket.exists()
    assert code_gone == 1
    assert "the agent is not running" in gone_error
    assert survived_reload  # SIGHUP reloaded the settings in the same process
    checker.assert_final(history)


async def test_cli_history_of_one_service_and_of_one_operation(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_process_factory: conftest.AgentProcessFactory,
):
    fake = await fake_juju_factory({ALPHA: 2, BETA: 2, harness.OWN_APP: 1})
    agent = await agent_process_factory(fake, (ALPHA, BETA)).start()
    for service in (ALPHA, BETA, ALPHA):  # dry runs: journaled, the model left alone
        code, _, error = await agent.ctl("replace-now", service, "--dry-run")
        assert code == 0, error

    code_service, of_alpha, _ = await agent.ctl("history", "--service", ALPHA, "--limit", "5")
    code_id, one, _ = await agent.ctl("history", "--id", of_alpha[-1]["id"])
    code_other, _, other_error = await agent.ctl(
        "history", "--service", BETA, "--id", of_alpha[-1]["id"]
    )
    code_bad, _, bad_error = await agent.ctl("history", "--service", "Not_An_App")

    assert (code_service, code_id) == (0, 0)
    assert [(op["service"], op["result"]) for op in of_alpha] == [(ALPHA, "dry-run")] * 2
    assert [int(op["id"].split("-")[0]) for op in of_alpha] == [3, 1]  # newest first
    assert one == [of_alpha[-1]]
    assert one[0]["steps"][0]["step"] == "plan"
    assert code_other == 2
    assert other_error == (
        f"whirlwind: unknown-operation: operation {of_alpha[-1]['id']!r} not found"
        f" for service {BETA!r}\n"
    )
    assert (code_bad, bad_error.count("\n")) == (2, 1)


async def _services(agent: harness.AgentProcess) -> bool:
    return (await agent.status())["services"] == [ALPHA, BETA]


async def _interval_ops(agent: harness.AgentProcess, count: int) -> bool:
    history = await agent.history()
    done = [op for op in history if op["trigger"] == "interval" and op["result"] != "running"]
    return len(done) >= count


async def test_sigterm_mid_replacement_stops_at_once_and_restart_finishes(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_process_factory: conftest.AgentProcessFactory,
):
    fake = await fake_juju_factory({ALPHA: 2, harness.OWN_APP: 1})
    checker = harness.InvariantChecker(fake, [ALPHA])
    agent = await agent_process_factory(fake, (ALPHA,)).start()
    pump = harness.ClockPump(fake)
    await agent.call("replace-now", service=ALPHA, wait=False)
    await pump.until(lambda: harness.unit_status(fake, f"{ALPHA}/2") == "maintenance")
    await harness.wait_for(agent.in_step("settle"), what="agent settling")

    loop = asyncio.get_running_loop()
    began = loop.time()
    exit_code = await agent.signal(signal.SIGTERM, timeout=15)
    stop_seconds = loop.time() - began
    units_while_stopped = harness.units_of(fake, ALPHA)
    await agent.start()
    await pump.until(agent.idle, timeout=30, what="recovered operation finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")

    assert exit_code == 0
    assert stop_seconds < 10  # the settle wait did not hold the stop up
    assert units_while_stopped == {f"{ALPHA}/0", f"{ALPHA}/1", f"{ALPHA}/2"}
    history = await agent.history()
    assert [(op["trigger"], op["result"]) for op in history] == [("recovery", "ok")]
    checker.assert_final(history)

"""Exec through the Action facade (`juju exec`) as libjuju 3.6 drives it, and its effects."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pathlib
import signal
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest
from juju import errors as juju_errors
from juju import model as juju_model
from juju.client import client
from juju.client import connection as juju_connection

from tests.fakejuju import execs, helpers, server
from tests.fakejuju import fixtures as fake_fixtures

ROOT = pathlib.Path(__file__).resolve().parents[2]
APP = "wsgi-example"
UNIT = f"{APP}/1"


def _stop_agent(op: str = "7", duration: int = 30, machine: str = "1") -> str:
    return (
        f"# whirlwind-chaos stop-agent inject op={op} duration={duration} machine={machine}\n"
        f"systemd-run --unit=whirlwind-chaos-{op}-revert --on-active={duration + 2}s "
        f"/bin/systemctl start jujud-machine-{machine}.service\n"
    )


def _http(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def _drive(fake: server.FakeJujuController, task: asyncio.Future[Any]) -> Any:
    """Advance the fake's clock half a second per 20 ms of real time until `task` is done."""
    for _ in range(400):
        if task.done():
            return task.result()
        await fake.advance(0.5)
        await asyncio.sleep(0.02)
    raise AssertionError("the exec did not finish within 200 s of the fake's clock")


@pytest.fixture
async def fake(fake_juju_factory: fake_fixtures.ControllerFactory) -> server.FakeJujuController:
    return await fake_juju_factory(allow_exec=True)


@pytest.fixture
async def conn(fake: server.FakeJujuController):
    connected = await helpers.connect(fake)
    yield connected
    await asyncio.wait_for(connected.close(), 5)


async def _model(fake: server.FakeJujuController) -> juju_model.Model:
    return await helpers.connect_model(fake)


# -- the wire, through libjuju's generated ActionFacade ---------------------------------------


async def test_run_enqueues_an_operation_and_a_pending_action_then_it_runs_a_step_later(
    fake: server.FakeJujuController, conn: juju_connection.Connection
):
    facade = client.ActionFacade.from_connection(conn)

    enqueued = await facade.Run(
        applications=[], commands="hostname", machines=[], timeout=5_000_000_000, units=[UNIT]
    )
    after_reply = fake.model.actions["2"].status
    await fake.advance(1.0)
    running = (await facade.Actions(entities=[{"tag": "action-2"}])).results[0]
    await fake.advance(1.0)
    done = (await facade.Actions(entities=[{"tag": "action-2"}])).results[0]

    # state: the "task" sequence gives the operation 1, its action 2.
    assert enqueued.operation == "operation-1"
    action = enqueued.actions[0]
    assert (action.action.tag, action.action.receiver) == ("action-2", "unit-wsgi-example-1")
    assert action.action.name == "juju-exec"
    assert action.action.parameters == {
        "command": "hostname",
        "timeout": 5_000_000_000,
        "workload-context": False,
    }
    assert (action.status, action.started) == ("pending", "0001-01-01T00:00:00Z")
    assert after_reply == "pending"
    assert running.status == "running"
    assert running.completed == "0001-01-01T00:00:00Z"
    assert (done.status, done.output) == ("completed", {"return-code": 0})
    history = [
        e.status.message for e in fake.model.history_for("juju-unit", "unit-wsgi-example-1")
    ]
    assert history[-2:] == ["running action juju-exec", ""]
    assert fake.state()["units"][UNIT]["agent-status"]["current"] == "idle"


async def test_action_deltas_carry_neither_parameters_nor_results(
    fake: server.FakeJujuController, conn: juju_connection.Connection
):
    facade = client.ActionFacade.from_connection(conn)
    seen: list[dict[str, Any]] = []
    fake.model.observers["test"] = lambda kind, key, change, info: (
        seen.append(info) if kind == "action" else None
    )

    await facade.Run(applications=[], commands="true", machines=[], timeout=0, units=[UNIT])
    await fake.run_until_settled()

    assert [d["status"] for d in seen] == ["pending", "running", "completed"]
    assert all("results" not in d and "parameters" not in d for d in seen)
    assert seen[0]["receiver"] == UNIT


async def test_run_on_missing_and_dead_units_gives_per_action_errors(
    fake: server.FakeJujuController, conn: juju_connection.Connection
):
    facade = client.ActionFacade.from_connection(conn)
    # A unit the uniter set dead, not yet removed by the deployer.
    fake.model.put_unit(dataclasses.replace(fake.model.units[f"{APP}/2"], life="dead"))

    enqueued = await facade.Run(
        applications=[], commands="true", machines=[], timeout=0, units=[f"{APP}/9", f"{APP}/2"]
    )

    errors = [(a.error.message, a.error.code) for a in enqueued.actions]
    assert errors == [
        ("not found or dead", "dead"),
        ('"unit-wsgi-example-9" not found', "not found"),
    ]
    assert all(a.action is None for a in enqueued.actions)
    assert fake.model.actions == {}


@pytest.mark.parametrize(
    ("kwargs", "message", "code"),
    [
        (
            {"units": [UNIT], "commands": "juju-exec --help"},
            "as an action command",
            "not supported",
        ),
        ({"units": ["Bad/1"], "commands": "true"}, 'invalid unit name "Bad/1"', ""),
        (
            {"applications": ["nope"], "commands": "true"},
            'application "nope" not found',
            "not found",
        ),
        (
            {"units": ["nope/leader"], "commands": "true"},
            'could not determine leader for "nope"',
            "",
        ),
    ],
)
async def test_run_refusals_follow_juju(
    fake: server.FakeJujuController,
    conn: juju_connection.Connection,
    kwargs: dict[str, Any],
    message: str,
    code: str,
):
    facade = client.ActionFacade.from_connection(conn)

    with pytest.raises(juju_errors.JujuAPIError) as refused:
        await facade.Run(timeout=0, **kwargs)

    assert message in refused.value.message
    assert (refused.value.error_code or "") == code
    assert fake.model.actions == {}


async def test_an_application_and_a_leader_expand_to_sorted_units(
    fake: server.FakeJujuController, conn: juju_connection.Connection
):
    facade = client.ActionFacade.from_connection(conn)

    enqueued = await facade.Run(
        applications=[APP], commands="true", machines=[], timeout=0, units=["whirlwind/leader"]
    )

    receivers = [a.action.receiver for a in enqueued.actions]
    assert receivers == [
        "unit-whirlwind-0", "unit-wsgi-example-0", "unit-wsgi-example-1", "unit-wsgi-example-2",
    ]  # fmt: skip
    assert [a.action.tag for a in enqueued.actions] == [f"action-{n}" for n in (2, 3, 4, 5)]


async def test_actions_of_an_unknown_id_is_id_not_found(conn: juju_connection.Connection):
    facade = client.ActionFacade.from_connection(conn)

    # libjuju's Connection.rpc raises on any error in a "results" list.
    with pytest.raises(juju_errors.JujuError) as refused:
        await facade.Actions(entities=[{"tag": "action-99"}, {"tag": "unit-x-1"}])

    assert refused.value.errors == ["id not found", "id not found"]


# -- the refusal switch -----------------------------------------------------------------------


@pytest.mark.usefixtures("libjuju_model_closes_transports")
async def test_exec_is_refused_without_allow_exec_and_still_logged(
    fake_juju: server.FakeJujuController,
):
    model = await _model(fake_juju)
    try:
        with pytest.raises(juju_errors.JujuAPIError) as refused:
            await model.units[UNIT].run("hostname", timeout=5, block=True)
    finally:
        await asyncio.wait_for(model.disconnect(), 5)

    assert (refused.value.message, refused.value.error_code) == (
        "permission denied",
        "unauthorized access",
    )
    log = fake_juju.state()["exec-log"]
    assert [(e["unit"], e["command"], e["allowed"]) for e in log] == [(UNIT, "hostname", False)]
    assert fake_juju.model.actions == {}


async def test_allow_exec_switches_over_http(
    fake_juju_factory: fake_fixtures.ControllerFactory,
):
    fake = await fake_juju_factory(admin_api=True)
    admin = fake.admin_url
    assert admin is not None
    conn = await helpers.connect(fake)
    facade = client.ActionFacade.from_connection(conn)
    try:
        allowed = await asyncio.to_thread(
            _http, admin + "/fault", {"fault": "allow-exec", "allow": True}
        )
        enqueued = await facade.Run(units=[UNIT], commands="true", timeout=0)
        await asyncio.to_thread(_http, admin + "/fault", {"fault": "allow-exec", "allow": False})
        with pytest.raises(juju_errors.JujuAPIError, match="permission denied"):
            await facade.Run(units=[UNIT], commands="true", timeout=0)
        bad = await asyncio.to_thread(
            _http, admin + "/fault", {"fault": "allow-exec", "allow": "yes"}
        )
        _, state = await asyncio.to_thread(_http, admin + "/state")
    finally:
        await asyncio.wait_for(conn.close(), 5)

    assert allowed == (200, {"ok": True})
    assert enqueued.actions[0].status == "pending"
    assert bad[0] == 400
    assert [e["allowed"] for e in state["exec-log"]] == [True, False]
    assert state["faults"]["allow-exec"] is False


# -- through libjuju's Unit.run, as the agent uses it -------------------------------------


@pytest.mark.usefixtures("libjuju_model_closes_transports")
async def test_unit_run_blocks_until_completed_and_returns_the_results(
    fake: server.FakeJujuController,
):
    model = await _model(fake)
    try:
        running = asyncio.ensure_future(model.units[UNIT].run("hostname", timeout=5, block=True))
        await fake.wait_for_call("Action", "Run")
        action = await _drive(fake, running)
    finally:
        await asyncio.wait_for(model.disconnect(), 5)

    assert (action.status, action.results) == ("completed", {"return-code": 0})
    assert fake.calls_to("Action", "Run")[0].params["units"] == [UNIT]
    assert fake.calls_to("Action", "Actions")


@pytest.mark.parametrize(
    ("mode", "status", "results"),
    [
        ("fail", "completed", {"return-code": 1, "stderr": execs.FAIL_STDERR}),
        ("timeout", "failed", {"return-code": 0}),
    ],
)
@pytest.mark.usefixtures("libjuju_model_closes_transports")
async def test_exec_fault_fails_or_overruns_its_timeout(
    fake: server.FakeJujuController, mode: str, status: str, results: dict[str, Any]
):
    fake.exec_fault(UNIT, mode)
    model = await _model(fake)
    try:
        running = asyncio.ensure_future(model.units[UNIT].run("true", timeout=3, block=True))
        await fake.wait_for_call("Action", "Run")
        action = await _drive(fake, running)
    finally:
        await asyncio.wait_for(model.disconnect(), 5)

    assert (action.status, action.results) == (status, results)
    assert fake.model.actions["2"].message == ("command cancelled" if mode == "timeout" else "")


async def test_hang_never_completes_even_past_its_timeout(
    fake: server.FakeJujuController, conn: juju_connection.Connection
):
    fake.exec_fault(UNIT, "hang")
    facade = client.ActionFacade.from_connection(conn)

    await facade.Run(units=[UNIT], commands="true", timeout=1_000_000_000)
    await fake.advance(600)

    assert fake.model.actions["2"].status == "running"
    assert fake.state()["units"][UNIT]["agent-status"]["message"] == "running action juju-exec"


# -- chaos markers -----------------------------------------------------------------------------


async def _full_status(conn: juju_connection.Connection) -> Any:
    return await client.ClientFacade.from_connection(conn).FullStatus(patterns=[])


async def test_stop_agent_takes_the_machine_agent_down_for_its_duration(
    fake: server.FakeJujuController, conn: juju_connection.Connection
):
    facade = client.ActionFacade.from_connection(conn)

    await facade.Run(units=[UNIT], commands=_stop_agent(duration=30), timeout=0)
    await fake.advance(1.0)  # the uniter runs the script: the stop comes 2 s later
    started = fake.clock.now()
    await fake.advance(1.0)
    completed = fake.model.actions["2"].status
    await fake.advance(1.0)
    down = await _full_status(conn)
    chaos = fake.state()["machines"]["1"]["chaos"]
    await fake.advance(30.0)
    back = await _full_status(conn)

    assert completed == "completed"
    assert down.machines["1"].agent_status.status == "down"
    assert down.applications[APP].units[UNIT].agent_status.status == "lost"
    assert chaos["agent-stopped-until"] == pytest.approx(started + 32)
    assert back.machines["1"].agent_status.status == "started"
    assert back.applications[APP].units[UNIT].agent_status.status == "idle"
    assert fake.state()["machines"]["1"]["chaos"]["agent-stopped-until"] is None


async def test_exec_on_a_unit_whose_machine_agent_is_down_stays_pending_until_it_is_back(
    fake: server.FakeJujuController, conn: juju_connection.Connection
):
    facade = client.ActionFacade.from_connection(conn)
    fake.machine_down("1")

    await facade.Run(units=[UNIT], commands="true", timeout=0)
    await fake.advance(300)
    while_down = fake.model.actions["2"].status
    fake.machine_down("1", False)
    await fake.run_until_settled()

    assert while_down == "pending"
    assert fake.model.actions["2"].status == "completed"


async def test_cancel_of_a_pending_exec_means_it_never_runs(
    fake: server.FakeJujuController, conn: juju_connection.Connection
):
    facade = client.ActionFacade.from_connection(conn)
    fake.machine_down("1")
    await facade.Run(units=[UNIT], commands=_stop_agent(), timeout=0)

    cancelled = (await facade.Cancel(entities=[{"tag": "action-2"}])).results[0]
    fake.machine_down("1", False)
    await fake.run_until_settled()

    assert (cancelled.status, cancelled.message) == ("cancelled", "action cancelled via the API")
    assert fake.model.actions["2"].status == "cancelled"
    assert fake.state()["machines"]["1"]["chaos"]["agent-stopped-until"] is None
    assert fake.state()["machines"]["1"]["agent-down"] is False


@pytest.mark.parametrize(("mode", "final"), [("timeout", "aborted"), ("hang", "aborting")])
async def test_cancel_of_a_running_exec_aborts_it_unless_the_agent_is_wedged(
    fake: server.FakeJujuController, conn: juju_connection.Connection, mode: str, final: str
):
    facade = client.ActionFacade.from_connection(conn)
    fake.exec_fault(UNIT, mode)
    await facade.Run(units=[UNIT], commands="sleep 1000", timeout=0)
    await fake.advance(1.0)

    aborting = (await facade.Cancel(entities=[{"tag": "action-2"}])).results[0]
    await fake.advance(5.0)

    assert aborting.status == "aborting"
    assert fake.model.actions["2"].status == final
    with pytest.raises(juju_errors.JujuError) as unknown:
        await facade.Cancel(entities=[{"tag": "action-99"}])
    assert unknown.value.errors == ['action "99" not found']


async def test_an_agent_gone_while_the_command_runs_fails_the_action_when_back(
    fake: server.FakeJujuController, conn: juju_connection.Connection
):
    facade = client.ActionFacade.from_connection(conn)

    await facade.Run(units=[UNIT], commands="true", timeout=0)
    await fake.advance(1.0)
    fake.machine_down("1")
    await fake.advance(10)
    while_down = fake.model.actions["2"].status
    fake.machine_down("1", False)

    assert while_down == "running"
    assert fake.model.actions["2"].status == "failed"
    assert fake.model.actions["2"].message == "action terminated"


@pytest.mark.parametrize(
    ("script", "key", "recorded"),
    [
        (
            "# whirlwind-chaos slow-network inject op=3 duration=60 delay-ms=200\ntc qdisc ...\n",
            "slow-network",
            {"op": "3", "delay-ms": 200},
        ),
        (
            "# whirlwind-chaos wrench inject op=3 duration=60 category=hooks feature=x-error\n",
            "wrench",
            [{"op": "3", "category": "hooks", "feature": "x-error"}],
        ),
    ],
)
async def test_slow_network_and_wrench_are_recorded_until_their_duration_ends(
    fake: server.FakeJujuController,
    conn: juju_connection.Connection,
    script: str,
    key: str,
    recorded: Any,
):
    facade = client.ActionFacade.from_connection(conn)

    await facade.Run(units=[UNIT], commands=script, timeout=0)
    await fake.advance(1.0)
    during = fake.state()["machines"]["1"]["chaos"][key]
    await fake.advance(60.0)
    after = fake.state()["machines"]["1"]["chaos"][key]

    if isinstance(during, list):
        during = [{k: v for k, v in item.items() if k != "until"} for item in during]
    else:
        during = {k: v for k, v in during.items() if k != "until"}
    assert during == recorded
    assert after in (None, [])
    assert fake.model.actions["2"].results == {"return-code": 0}


@pytest.mark.parametrize("kind", ["slow-network", "wrench"])
async def test_a_revert_marker_ends_the_record_at_once(
    fake: server.FakeJujuController, conn: juju_connection.Connection, kind: str
):
    facade = client.ActionFacade.from_connection(conn)
    keys = "delay-ms=100" if kind == "slow-network" else "category=hooks feature=x"
    inject = f"# whirlwind-chaos {kind} inject op=5 duration=600 {keys}\n"
    other_op = f"# whirlwind-chaos {kind} revert op=6\n"

    await facade.Run(units=[UNIT], commands=inject, timeout=0)
    await fake.run_until_settled(max_seconds=10)
    await facade.Run(units=[UNIT], commands=other_op, timeout=0)
    await fake.run_until_settled(max_seconds=10)
    kept = fake.state()["machines"]["1"]["chaos"][kind]
    await facade.Run(units=[UNIT], commands=f"# whirlwind-chaos {kind} revert op=5\n", timeout=0)
    await fake.run_until_settled(max_seconds=10)

    assert kept
    assert fake.state()["machines"]["1"]["chaos"][kind] in (None, [])


def test_markers_parse_as_the_contract_writes_them():
    assert execs.parse_marker(_stop_agent()) == execs.Marker(
        "stop-agent", "inject", "7", {"duration": "30", "machine": "1"}
    )
    assert execs.parse_marker("hostname") is None
    assert execs.parse_marker("# whirlwind-chaos stop-agent inject duration=3\n") is None
    assert execs.parse_marker("# whirlwind-chaos reboot inject op=1\n") is None


# -- a host dying: forced DestroyMachineWithParams ---------------------------------------------


async def test_forced_machine_destroy_obliterates_its_units_at_the_cleaners_first_run(
    fake: server.FakeJujuController, conn: juju_connection.Connection
):
    facade = client.MachineManagerFacade.from_connection(conn)

    result = await facade.DestroyMachineWithParams(
        machine_tags=["machine-1"], force=True, max_wait=30_000_000_000
    )
    at_reply = fake.state()
    await fake.advance(1.0)
    after_cleanup = fake.state()
    await fake.advance(29.0)
    before_max_wait = fake.state()["machines"]["1"]["life"]
    await fake.run_until_settled()

    assert [u.tag for u in result.results[0].info.destroyed_units] == ["unit-wsgi-example-1"]
    assert at_reply["units"][UNIT]["life"] == "alive"
    assert UNIT not in after_cleanup["units"]
    assert after_cleanup["machines"]["1"]["life"] == "dead"
    # cleanupForceRemoveMachine: the backstop removes it max-wait later.
    assert before_max_wait == "dead"
    assert "1" not in fake.state()["machines"]


async def test_forced_machine_destroy_takes_units_whose_agent_is_down(
    fake: server.FakeJujuController, conn: juju_connection.Connection
):
    facade = client.MachineManagerFacade.from_connection(conn)
    fake.machine_down("1")

    await facade.DestroyMachineWithParams(machine_tags=["machine-1"], force=True, max_wait=0)
    await fake.run_until_settled()

    assert UNIT not in fake.state()["units"]
    assert "1" not in fake.state()["machines"]


# -- the CLI ---------------------------------------------------------------------------------


async def test_cli_allow_exec_serves_exec_end_to_end():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakejuju", "--app", "x=1", "--step-delay", "0.01",
        "--delta-lag", "0", "--allow-exec",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        conn = await asyncio.wait_for(
            helpers.Connection.connect(
                info["endpoint"], info["model-uuid"], info["username"], info["password"],
                info["ca-cert"], retries=0,
            ),
            10,
        )  # fmt: skip
        try:
            facade = client.ActionFacade.from_connection(conn)
            enqueued = await facade.Run(units=["x/0"], commands="true", timeout=0)
            tag = enqueued.actions[0].action.tag

            async def completed() -> Any:
                while True:
                    result = (await facade.Actions(entities=[{"tag": tag}])).results[0]
                    if result.status == "completed":
                        return result
                    await asyncio.sleep(0.02)

            result = await asyncio.wait_for(completed(), 10)
        finally:
            await asyncio.wait_for(conn.close(), 5)
        _, state = await asyncio.to_thread(_http, info["admin-url"] + "/state")
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)

    assert result.output == {"return-code": 0}
    assert state["faults"]["allow-exec"] is True
    assert [(e["unit"], e["allowed"]) for e in state["exec-log"]] == [("x/0", True)]
    assert proc.returncode == 0

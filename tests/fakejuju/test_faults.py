"""Fault injection, as the agent will meet it."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from juju import errors as juju_errors
from juju.client import client

from tests.fakejuju import helpers, server


def _unit(fake_juju: server.FakeJujuController, name: str) -> dict:
    return fake_juju.state()["units"][name]


async def _add_unit(fake_juju: server.FakeJujuController) -> str:
    conn = await helpers.connect(fake_juju)
    try:
        added = await client.ApplicationFacade.from_connection(conn).AddUnits(
            application="wsgi-example", num_units=1, placement=None
        )
    finally:
        await asyncio.wait_for(conn.close(), 5)
    return added.units[0]


async def test_hook_error_leaves_unit_in_error_with_idle_agent(
    fake_juju: server.FakeJujuController,
):
    fake_juju.fail_new_units("wsgi-example", "hook-error")
    name = await _add_unit(fake_juju)

    await fake_juju.run_until_settled()

    unit = _unit(fake_juju, name)
    assert unit["workload-status"]["current"] == "error"
    assert unit["workload-status"]["message"] == 'hook failed: "install"'
    assert unit["agent-status"]["current"] == "idle"


async def test_provisioning_error_keeps_unit_allocating(fake_juju: server.FakeJujuController):
    fake_juju.fail_new_units("wsgi-example", "provisioning-error")
    name = await _add_unit(fake_juju)

    await fake_juju.run_until_settled()

    unit = _unit(fake_juju, name)
    machine = fake_juju.state()["machines"][unit["machine"]]
    assert (unit["workload-status"]["current"], unit["agent-status"]["current"]) == (
        "waiting",
        "allocating",
    )
    assert machine["instance-status"]["current"] == "provisioning error"


async def test_never_idle_stays_executing(fake_juju: server.FakeJujuController):
    fake_juju.fail_new_units("wsgi-example", "never-idle")
    name = await _add_unit(fake_juju)

    await fake_juju.run_until_settled()
    await fake_juju.advance(3600)

    unit = _unit(fake_juju, name)
    assert (unit["workload-status"]["current"], unit["agent-status"]["current"]) == (
        "maintenance",
        "executing",
    )


async def test_fail_new_units_rejects_unknown_mode(fake_juju: server.FakeJujuController):
    with pytest.raises(ValueError, match="unknown mode"):
        fake_juju.fail_new_units("wsgi-example", "explode")


async def test_stuck_dying_goes_only_with_force_after_two_max_waits(
    fake_juju: server.FakeJujuController,
):
    # state/cleanup.go: cleanupForceDestroyedUnit after max-wait (dead), cleanupForceRemoveUnit
    # after max-wait again (removed); the cleaner runs what is due on insertion or every 30 s.
    fake_juju.stuck_dying("wsgi-example/1")
    conn = await helpers.connect(fake_juju)
    app = client.ApplicationFacade.from_connection(conn)
    params = {"unit-tag": "unit-wsgi-example-1", "destroy-storage": False, "dry-run": False}
    try:
        await app.DestroyUnit(units=[{**params, "force": False, "max-wait": None}])
        await fake_juju.run_until_settled()
        assert _unit(fake_juju, "wsgi-example/1")["life"] == "dying"

        start = fake_juju.clock.now()
        await app.DestroyUnit(units=[{**params, "force": True, "max-wait": 30 * 10**9}])
        await fake_juju.advance(29)
        assert _unit(fake_juju, "wsgi-example/1")["life"] == "dying"
        await fake_juju.advance(3)
        assert _unit(fake_juju, "wsgi-example/1")["life"] == "dead"
        await fake_juju.advance(25)
        assert "wsgi-example/1" in fake_juju.state()["units"]
        await fake_juju.run_until_settled()
        gone = fake_juju.clock.now() - start
    finally:
        await asyncio.wait_for(conn.close(), 5)

    assert "wsgi-example/1" not in fake_juju.state()["units"]
    assert "1" not in fake_juju.state()["machines"]
    assert 60 <= gone < 60 + 2 * 30 + 10


async def test_unit_in_hook_error_dies_only_with_force(fake_juju: server.FakeJujuController):
    fake_juju.fail_new_units("wsgi-example", "hook-error")
    name = await _add_unit(fake_juju)
    await fake_juju.advance(10)
    assert _unit(fake_juju, name)["workload-status"]["current"] == "error"
    conn = await helpers.connect(fake_juju)
    app = client.ApplicationFacade.from_connection(conn)
    request = {"unit-tag": "unit-" + name.replace("/", "-"), "destroy-storage": False}
    try:
        await app.DestroyUnit(units=[{**request, "force": False}])
        await fake_juju.advance(600)
        assert _unit(fake_juju, name)["life"] == "dying"
        await app.DestroyUnit(units=[{**request, "force": True, "max-wait": 0}])
        await fake_juju.advance(5)
    finally:
        await asyncio.wait_for(conn.close(), 5)

    assert name not in fake_juju.state()["units"]


async def test_hook_error_is_retried_with_backoff_flipping_to_executing(
    fake_juju: server.FakeJujuController,
):
    fake_juju.fail_new_units("wsgi-example", "hook-error")
    name = await _add_unit(fake_juju)
    tag = "unit-" + name.replace("/", "-")

    await fake_juju.advance(400)

    history = [
        (e.kind, e.status.current, e.status.message, e.status.since)
        for e in fake_juju.model.history[tag]
    ]
    errors = [since for kind, current, _, since in history if current == "error"]
    retries = [
        since
        for kind, current, message, since in history
        if kind == "juju-unit" and current == "executing" and message == "running install hook"
    ]
    gaps = [b - a for a, b in itertools.pairwise(errors)]
    # 5 s, 10 s, 20 s, ... between failures (+-3 % jitter, +1 s for the hook to run again).
    assert len(gaps) >= 5
    for gap, backoff in zip(gaps, [5, 10, 20, 40, 80], strict=False):
        assert backoff * 0.97 + 1 <= gap <= backoff * 1.03 + 1
    assert len(retries) == len(errors)  # the first install, then one per retry


async def test_lost_unit_agent_blocks_removal_without_force(
    fake_juju: server.FakeJujuController,
):
    fake_juju.lose_unit("wsgi-example/2")
    conn = await helpers.connect(fake_juju)
    app = client.ApplicationFacade.from_connection(conn)

    await app.DestroyUnit(units=[{"unit-tag": "unit-wsgi-example-2", "force": False}])
    await fake_juju.run_until_settled()

    assert _unit(fake_juju, "wsgi-example/2")["life"] == "dying"
    await asyncio.wait_for(conn.close(), 5)


@pytest.mark.usefixtures("libjuju_model_closes_transports")
@pytest.mark.parametrize("mode", ["abrupt", "clean"])
async def test_dropped_connection_freezes_high_level_model_watcher(
    fake_juju: server.FakeJujuController, mode: str
):
    # JUJU_API.md: after a dropped connection libjuju's Model reconnects its RPC channel but
    # its watcher task ends: the unit view freezes. The agent must survive exactly this.
    model = await helpers.connect_model(fake_juju)
    await fake_juju.wait_for_call("AllWatcher", "Next", count=2)
    logins = len(fake_juju.calls_to("Admin", "Login"))

    assert await fake_juju.drop_connections(mode) >= 1
    await fake_juju.wait_for_call("Admin", "Login", count=logins + 1)
    await helpers.wait_until(lambda: model._watcher_task.done())
    conn = await helpers.connect(fake_juju)
    await client.ApplicationFacade.from_connection(conn).DestroyUnit(
        units=[{"unit-tag": "unit-wsgi-example-0", "force": False}]
    )
    await fake_juju.run_until_settled()
    await asyncio.sleep(0.05)

    assert "wsgi-example/0" not in fake_juju.state()["units"]
    assert "wsgi-example/0" in model.units  # frozen view
    status = await asyncio.wait_for(model.get_status(), 5)  # RPC channel itself works again
    assert status is not None
    app_status = status.applications["wsgi-example"]
    assert app_status is not None
    assert "wsgi-example/0" not in app_status.units
    await asyncio.wait_for(conn.close(), 5)
    await asyncio.wait_for(model.disconnect(), 5)


async def test_outage_drops_connections_and_refuses_new_ones(
    fake_juju: server.FakeJujuController,
):
    conn = await helpers.connect(fake_juju)
    facade = client.ClientFacade.from_connection(conn)

    await fake_juju.outage(5)

    assert fake_juju.connection_count == 0
    with pytest.raises(juju_errors.JujuConnectionError):
        await helpers.connect(fake_juju)
    await fake_juju.advance(5)
    await helpers.wait_until(lambda: not fake_juju.in_outage)
    again = await helpers.connect(fake_juju)
    status = await client.ClientFacade.from_connection(again).FullStatus(patterns=None)
    assert "wsgi-example" in status.applications
    assert facade is not None
    await asyncio.wait_for(again.close(), 5)
    await asyncio.wait_for(conn.close(), 5)


async def test_clear_removes_faults(fake_juju: server.FakeJujuController):
    fake_juju.fail_new_units("wsgi-example", "hook-error")
    fake_juju.lose_unit("wsgi-example/0")
    fake_juju.call_error("Client", "FullStatus")
    fake_juju.set_latency(1.0)
    fake_juju.set_delta_lag(2.0)
    fake_juju.exec_fault("wsgi-example/1", "hang")

    await fake_juju.clear_faults()

    faults = fake_juju.state()["faults"]
    # allow-exec is a switch of the controller, not a fault: clear leaves it as it was.
    assert faults == {"fail-new-units": {}, "stuck-dying": [], "call-errors": [], "latency": {},
                      "delta-lag": {"min": 0.02, "max": 0.3}, "unset-status": [],
                      "outage": False, "allow-exec": False, "exec": {}}  # fmt: skip
    assert fake_juju.state()["units"]["wsgi-example/0"]["agent-lost"] is False

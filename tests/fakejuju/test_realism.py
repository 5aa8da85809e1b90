"""The fake's watcher and lifecycle behave as Juju 3.6 does, never kinder.

Each test names the Juju source (commit 6761e481) whose behaviour it pins; README.md has the
whole table. Deltas are read through unmodified libjuju's low-level Connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from juju import errors as juju_errors
from juju.client import client
from juju.client import connection as juju_connection

from tests.fakejuju import fixtures as fake_fixtures
from tests.fakejuju import helpers, server

APP = "wsgi-example"
DESTROY = {"destroy-storage": False, "dry-run": False}


async def _watch(conn: juju_connection.Connection) -> Any:
    watch = await client.ClientFacade.from_connection(conn).WatchAll()
    watcher = client.AllWatcherFacade.from_connection(conn)
    watcher.Id = watch.watcher_id
    await asyncio.wait_for(watcher.Next(), 5)  # the snapshot
    return watcher


def _units(result: Any) -> list[dict[str, Any]]:
    return [d.data for d in result.deltas if d.entity == "unit"]


async def _collect(watcher: Any, seconds: float) -> list[Any]:
    """Every delta batch that arrives within `seconds` of real time."""
    batches: list[Any] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            batches.append(await asyncio.wait_for(watcher.Next(), left))
        except asyncio.TimeoutError:
            break
    return batches


async def _add_unit(conn: juju_connection.Connection) -> str:
    added = await client.ApplicationFacade.from_connection(conn).AddUnits(
        application=APP, num_units=1, placement=None
    )
    return added.units[0]


# -- 1. deltas come after the reply, late -------------------------------------------------


async def test_deltas_come_only_after_the_reply_and_late(
    fake_juju_factory: fake_fixtures.ControllerFactory,
):
    # state/watcher/txnwatcher.go + worker/multiwatcher: the watcher learns of a change from
    # the database's change stream, after the call committed and answered.
    fake = await fake_juju_factory(delta_lag=(0.3, 0.3))
    conn = await helpers.connect(fake)
    watcher = await _watch(conn)
    pending = asyncio.ensure_future(watcher.Next())
    loop = asyncio.get_running_loop()
    try:
        name = await _add_unit(conn)
        answered = loop.time()
        not_yet = pending.done()
        first = await asyncio.wait_for(pending, 5)
        arrived = loop.time()
    finally:
        await asyncio.wait_for(conn.close(), 5)

    assert name == f"{APP}/3"
    assert not not_yet  # no delta before AddUnits answered
    assert arrived - answered >= 0.25
    assert f"{APP}/3" in {u["name"] for u in _units(first)}


async def test_addunits_is_two_transactions_and_the_first_delta_may_lack_the_machine(
    fake_juju_factory: fake_fixtures.ControllerFactory,
):
    # deploy.go addUnits: AddUnit, then AssignUnit (AssignCleanEmpty), one transaction each.
    # A lag of 0.3 s for the first change and 0 for the rest can split them over two Nexts.
    fake = await fake_juju_factory(delta_lag=0.0)
    changes: list[tuple[str, str]] = []
    fake.model.observers["t"] = lambda kind, key, change, info: changes.append(
        (kind, str(info.get("machine-id", info.get("id"))))
    )
    conn = await helpers.connect(fake)
    try:
        name = await _add_unit(conn)
    finally:
        await asyncio.wait_for(conn.close(), 5)

    assert name == f"{APP}/3"
    unit_changes = [machine for kind, machine in changes if kind == "unit"]
    assert unit_changes[:2] == ["", "4"]  # first without a machine, then assigned
    assert ("machine", "4") in changes


async def test_delta_lag_is_settable_and_seeded(
    fake_juju_factory: fake_fixtures.ControllerFactory,
):
    first = await fake_juju_factory(seed=11)
    second = await fake_juju_factory(seed=11)
    first.set_delta_lag(0.5, 1.5)

    draws = [first.model.feed._draw() for _ in range(5)]
    second.set_delta_lag(0.5, 1.5)

    assert draws == [second.model.feed._draw() for _ in range(5)]
    assert all(0.5 <= d <= 1.5 for d in draws)
    with pytest.raises(ValueError, match="delta lag"):
        first.set_delta_lag(2.0, 1.0)


async def test_entity_added_and_removed_between_two_nexts_sends_nothing(
    fake_juju_factory: fake_fixtures.ControllerFactory,
):
    # core/multiwatcher/store.go ChangesSince: an entity the watcher never saw is not sent
    # as removed. A provisioning unit that is destroyed goes at once (allocating).
    fake = await fake_juju_factory(delta_lag=0.0)
    conn = await helpers.connect(fake)
    try:
        watcher = await _watch(conn)
        batches_before = await _collect(watcher, 0.1)
        fake.lifecycle.add_units(APP, 1)
        fake.lifecycle.destroy_unit(f"{APP}/3", force=False, max_wait=None)
        batches = await _collect(watcher, 0.3)
    finally:
        await asyncio.wait_for(conn.close(), 5)

    assert batches_before == []
    names = {u["name"] for batch in batches for u in _units(batch)}
    assert f"{APP}/3" not in names
    assert f"{APP}/3" not in fake.model.units


# -- 2. DestroyUnit of a unit that does not exist -----------------------------------------


async def test_destroy_of_a_missing_unit_is_an_error_without_code(
    fake_juju: server.FakeJujuController, monkeypatch: pytest.MonkeyPatch
):
    # application.go DestroyUnit: errors.Errorf("unit %q does not exist"): no code.
    conn = await helpers.connect(fake_juju)
    replies: list[Any] = []
    receive = conn._recv

    async def recv(request_id: int) -> Any:
        replies.append(await receive(request_id))
        return replies[-1]

    monkeypatch.setattr(conn, "_recv", recv)
    try:
        with pytest.raises(juju_errors.JujuError, match="does not exist"):
            await conn.rpc({
                "type": "Application", "version": 20, "request": "DestroyUnit",
                "params": {"units": [{"unit-tag": "unit-wsgi-example-9", **DESTROY}]},
            })  # fmt: skip
    finally:
        await asyncio.wait_for(conn.close(), 5)

    assert replies[-1]["response"]["results"] == [
        {"error": {"message": 'unit "wsgi-example/9" does not exist', "code": ""}}
    ]


# -- 3. hook errors and forced removal: see test_faults.py ------------------------------------
# -- 4. lost and down only where Juju allows it ----------------------------------------------


def _presented(fake: server.FakeJujuController, name: str) -> tuple[str, str]:
    workload, agent = fake.model.presented_unit_status(fake.model.units[name])
    return workload.current, agent.current


async def test_a_unit_installing_is_never_lost_and_a_settled_one_is(
    fake_juju: server.FakeJujuController,
):
    # apiserver/common/unitstatus.go canBeLost: not while allocating or running install.
    name = fake_juju.lifecycle.add_units(APP, 1)[0]
    fake_juju.lose_unit(name)
    allocating = _presented(fake_juju, name)
    fake_juju.lose_unit(name, False)
    await fake_juju.advance(5)  # machine up, deployed, initialising, installing
    installing = fake_juju.model.units[name].workload.message
    fake_juju.lose_unit(name)
    during_install = _presented(fake_juju, name)
    settled = _presented(fake_juju, f"{APP}/0")
    fake_juju.lose_unit(f"{APP}/0")
    lost = _presented(fake_juju, f"{APP}/0")

    assert allocating == ("waiting", "allocating")
    assert installing == "installing charm software"
    assert during_install == ("maintenance", "executing")
    assert settled == ("active", "idle")
    assert lost == ("unknown", "lost")


async def test_lost_keeps_error_and_a_dead_unit_is_never_lost(
    fake_juju: server.FakeJujuController,
):
    fake_juju.fail_new_units(APP, "hook-error")
    name = fake_juju.lifecycle.add_units(APP, 1)[0]
    await fake_juju.advance(6)
    assert fake_juju.model.units[name].workload.current == "error"
    fake_juju.lose_unit(name)
    in_error = _presented(fake_juju, name)
    fake_juju.stuck_dying(f"{APP}/1")
    fake_juju.lifecycle.destroy_unit(f"{APP}/1", force=True, max_wait=0.0)
    await fake_juju.advance(1.5)
    assert fake_juju.model.units[f"{APP}/1"].life == "dead"
    fake_juju.lose_unit(f"{APP}/1")

    assert in_error == ("error", "lost")  # workload error is kept
    assert _presented(fake_juju, f"{APP}/1")[1] != "lost"


async def test_a_pending_machine_is_never_down_and_a_down_machine_takes_its_units(
    fake_juju: server.FakeJujuController,
):
    # apiserver/common/machinestatus.go canMachineBeDown: not while pending or stopped.
    name = fake_juju.lifecycle.add_units(APP, 1)[0]
    machine_id = fake_juju.model.units[name].machine_id
    fake_juju.machine_down(machine_id)
    pending = fake_juju.model.presented_machine_agent(fake_juju.model.machines[machine_id])
    fake_juju.machine_down("0")
    down = fake_juju.model.presented_machine_agent(fake_juju.model.machines["0"])

    assert pending.current == "pending"
    assert down.current == "down"
    assert _presented(fake_juju, f"{APP}/0") == ("unknown", "lost")
    # The dead host runs nothing: the new unit never gets past allocating.
    await fake_juju.advance(30)
    assert fake_juju.model.units[name].agent.current == "allocating"


# -- 5. the way to healthy is not smooth ---------------------------------------------------


def _unit_history(fake: server.FakeJujuController, name: str) -> list[tuple[str, str, str]]:
    tag = "unit-" + name.replace("/", "-")
    return [(e.kind, e.status.current, e.status.message) for e in fake.model.history[tag]]


async def test_new_unit_walks_juju_phases_and_runs_hooks_after_its_first_idle(
    fake_juju: server.FakeJujuController,
):
    name = fake_juju.lifecycle.add_units(APP, 1)[0]

    await fake_juju.run_until_settled()

    history = _unit_history(fake_juju, name)
    workloads = [(s, m) for kind, s, m in history if kind == "workload"]
    agents = [(s, m) for kind, s, m in history if kind == "juju-unit"]
    assert workloads[:4] == [
        ("waiting", "waiting for machine"),
        ("waiting", "installing agent"),
        ("waiting", "agent initialising"),
        ("maintenance", "installing charm software"),
    ]
    assert workloads[-1] == ("active", "")
    assert [s for s, _ in agents].count("idle") >= 2  # idle, executing again, idle
    first_idle = agents.index(("idle", ""))
    assert ("executing", "running start hook") in agents[:first_idle]
    assert any(s == "executing" for s, _ in agents[first_idle:])
    assert agents[-1] == ("idle", "")
    machine = fake_juju.model.machines[fake_juju.model.units[name].machine_id]
    assert (machine.instance.current, machine.instance.message) == ("running", "Running")


async def test_charm_without_status_settles_to_unknown(
    fake_juju_factory: fake_fixtures.ControllerFactory,
):
    # worker/uniter/operation/runhook.go afterHook: after start, no status-set -> unknown.
    fake = await fake_juju_factory({APP: 1}, unset_status=[APP])
    name = fake.lifecycle.add_units(APP, 1)[0]

    await fake.run_until_settled()

    workloads = [(s, m) for kind, s, m in _unit_history(fake, name) if kind == "workload"]
    assert ("maintenance", "starting") not in workloads  # the charm sets nothing
    assert workloads[-1] == ("unknown", "")
    assert fake.model.units[f"{APP}/0"].workload.current == "unknown"  # seeded ones too


# -- 7. AddUnits places with AssignCleanEmpty -----------------------------------------------


async def test_addunits_uses_a_clean_empty_machine_before_making_one(
    fake_juju_factory: fake_fixtures.ControllerFactory,
):
    # state/state.go AssignUnit(AssignCleanEmpty): a machine that never hosted a unit first.
    fake = await fake_juju_factory({APP: 1}, spare_machines=1)
    spare = "1"
    assert not fake.model.units_on(spare)

    first = fake.lifecycle.add_units(APP, 1)[0]
    second = fake.lifecycle.add_units(APP, 1)[0]
    await fake.run_until_settled()
    fake.lifecycle.destroy_unit(first, force=False, max_wait=None)
    await fake.run_until_settled()
    third = fake.lifecycle.add_units(APP, 1)[0]

    assert fake.model.units[second].machine_id == "2"  # the spare is no longer clean
    assert first == f"{APP}/1"
    # Juju removed the spare machine with its only unit (destroyHostOps), and never reuses
    # a machine that hosted a unit.
    assert spare not in fake.model.machines
    assert fake.model.units[third].machine_id == "3"


# -- 8. small protocol facts (more in test_protocol_realism.py) -------------------------------


async def test_setting_an_annotation_also_rewrites_the_unit(
    fake_juju_factory: fake_fixtures.ControllerFactory,
):
    fake = await fake_juju_factory(delta_lag=0.0)
    conn = await helpers.connect(fake)
    try:
        watcher = await _watch(conn)
        await client.AnnotationsFacade.from_connection(conn).Set(
            annotations=[{"entity": "unit-wsgi-example-1", "annotations": {"k": "v"}}]
        )
        batches = await _collect(watcher, 0.3)
        await client.ApplicationFacade.from_connection(conn).DestroyUnit(
            units=[{"unit-tag": "unit-wsgi-example-1", "force": True, "max-wait": 0, **DESTROY}]
        )
        await fake.advance(10)
        removed = await _collect(watcher, 0.3)
    finally:
        await asyncio.wait_for(conn.close(), 5)

    kinds = [(d.entity, d.type) for batch in batches for d in batch.deltas]
    assert kinds == [("annotation", "change"), ("unit", "change")]
    annotation_removes = [
        d.data for batch in removed for d in batch.deltas
        if (d.entity, d.type) == ("annotation", "remove")
    ]  # fmt: skip
    # A remove delta carries the last info, annotations included.
    assert annotation_removes == [
        {"model-uuid": fake.model_uuid, "tag": "unit-wsgi-example-1", "annotations": {"k": "v"}}
    ]

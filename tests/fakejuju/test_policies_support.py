"""Hook errors on settled units, operator removals, leadership and storage, as Juju 3.6 has them.

What the agent's self-healing and unit-count policies meet. Each test names the Juju source
(commit 6761e481) whose behaviour it pins; README.md has the table. Everything is read through
unmodified libjuju's low-level Connection, in strict contract mode.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from juju.client import client
from juju.client import connection as juju_connection

from tests.fakejuju import fixtures as fake_fixtures
from tests.fakejuju import helpers, lifecycle, server

APP = "wsgi-example"
UNIT = f"{APP}/1"
DESTROY = {"force": False, "max-wait": None, "dry-run": False}


@pytest.fixture
async def conn(fake_juju: server.FakeJujuController):
    connection = await helpers.connect(fake_juju)
    yield connection
    await asyncio.wait_for(connection.close(), 5)


async def _call(
    conn: juju_connection.Connection, facade: str, version: int, request: str, **params: Any
) -> dict[str, Any]:
    """One call through libjuju's Connection.rpc: the raw response libjuju received."""
    message = {"type": facade, "version": version, "request": request, "params": params}
    reply: Any = await conn.rpc(message)
    return reply["response"]


async def _status(conn: juju_connection.Connection, **params: Any) -> dict[str, Any]:
    """Client.FullStatus v8 as the raw reply libjuju received."""
    return await _call(conn, "Client", 8, "FullStatus", **params)


async def _destroy(
    conn: juju_connection.Connection, unit: str, *, destroy_storage: bool
) -> list[dict[str, Any]]:
    """Application.DestroyUnit v20 of one unit without force: the raw results."""
    request = {"unit-tag": "unit-" + unit.replace("/", "-"), "destroy-storage": destroy_storage}
    reply = await _call(conn, "Application", 20, "DestroyUnit", units=[{**request, **DESTROY}])
    return reply["results"]


async def _unit_status(conn: juju_connection.Connection, name: str) -> dict[str, Any]:
    status = await _status(conn)
    return status["applications"][name.split("/")[0]]["units"][name]


def _current(unit: dict[str, Any]) -> tuple[str, str, str, str]:
    workload, agent = unit["workload-status"], unit["agent-status"]
    return workload["status"], workload["info"], agent["status"], agent["info"]


async def _leaders(conn: juju_connection.Connection, application: str = APP) -> list[str]:
    status = await client.ClientFacade.from_connection(conn).FullStatus(patterns=None)
    units = status.applications[application].units
    return sorted(name for name, unit in units.items() if unit.leader)


async def _history(conn: juju_connection.Connection, name: str) -> list[tuple[str, str, str]]:
    """(kind, status, info) of a unit's workload and agent history, oldest first."""
    result = await client.ClientFacade.from_connection(conn).StatusHistory(
        requests=[{"historyKind": "unit", "tag": "unit-" + name.replace("/", "-"),
                   "filter": {"size": 1000}}]
    )  # fmt: skip
    return [(s.kind, s.status, s.info) for s in result.results[0].history.statuses]


def _record_unit_changes(fake: server.FakeJujuController, name: str) -> list[dict[str, Any]]:
    """Every change of one unit the moment the database has it (what the watchers get later)."""
    changes: list[dict[str, Any]] = []

    def observe(kind: str, key: str, change: str, info: dict[str, Any]) -> None:
        if kind == "unit" and key == name:
            changes.append({"change": change, **info})

    fake.model.observers[f"test-{name}"] = observe
    return changes


# -- 1. a hook fails on a settled unit ----------------------------------------------------


async def test_update_status_error_shows_at_once_and_its_retries_never_show_executing(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    # worker/uniter/operation/runhook.go Execute: no SetExecutingStatus for update-status;
    # uniter.go reportHookError: agent error, shown as workload error / agent idle
    # (state/allwatcher.go unitAndAgentStatus); the retries re-report the same error, which
    # state/status.go setStatus does not write again (no delta, no new history record).
    before = await _unit_status(conn, UNIT)
    changes = _record_unit_changes(fake_juju, UNIT)

    fake_juju.error_unit(UNIT)
    failed = await _unit_status(conn, UNIT)
    first_error = fake_juju.clock.now()
    await fake_juju.advance(400)  # retries after 5, 10, 20, 40, 80, 160 s
    after = await _unit_status(conn, UNIT)
    history = await _history(conn, UNIT)

    assert _current(before) == ("active", "", "idle", "")
    assert _current(failed) == ("error", 'hook failed: "update-status"', "idle", "")
    assert _current(after) == _current(failed)
    assert after["workload-status"]["since"] == failed["workload-status"]["since"]
    assert [(c["workload-status"]["current"], c["agent-status"]["current"]) for c in changes] == [
        ("error", "idle")
    ]
    agents = [(status, info) for kind, status, info in history if kind == "juju-unit"]
    assert not any("update-status" in info for _, info in agents)
    assert agents[-1] == ("idle", "")
    assert history[-1][1:] == ("error", 'hook failed: "update-status"')
    # The latest record's time moves with each failed retry.
    tag = "unit-" + UNIT.replace("/", "-")
    last_error = [e for e in fake_juju.model.history[tag] if e.status.current == "error"][-1]
    assert last_error.status.since > first_error + 150


async def test_the_error_reaches_watchers_late_and_a_lost_unit_keeps_it(
    fake_juju_factory: fake_fixtures.ControllerFactory,
):
    # Realism rules 1 and 4 hold for it: the delta comes late (worker/multiwatcher), and
    # apiserver/common/unitstatus.go UnitStatus keeps workload error for a lost agent.
    fake = await fake_juju_factory(delta_lag=0.3)
    conn = await helpers.connect(fake)
    loop = asyncio.get_running_loop()
    try:
        watch = await client.ClientFacade.from_connection(conn).WatchAll()
        watcher = client.AllWatcherFacade.from_connection(conn)
        watcher.Id = watch.watcher_id
        await asyncio.wait_for(watcher.Next(), 5)
        pending = asyncio.ensure_future(watcher.Next())

        fake.error_unit(UNIT)
        broke = loop.time()
        batch = await asyncio.wait_for(pending, 5)
        arrived = loop.time()
        fake.lose_unit(UNIT)
        lost = await _unit_status(conn, UNIT)
    finally:
        await asyncio.wait_for(conn.close(), 5)

    assert arrived - broke >= 0.25
    units = [d.data for d in batch.deltas if d.entity == "unit"]
    assert [u["workload-status"]["current"] for u in units] == ["error"]
    assert _current(lost)[:3] == ("error", 'hook failed: "update-status"', "lost")


async def test_any_other_hook_runs_executing_and_its_retries_flap(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    # runhook.go Execute: executing "running <hook> hook" for every hook but update-status,
    # also on each automatic retry (apiserver/facades/agent/retrystrategy: 5 s, 10 s, ...).
    changes = _record_unit_changes(fake_juju, UNIT)

    fake_juju.error_unit(UNIT, hook="config-changed")
    running = await _unit_status(conn, UNIT)
    await fake_juju.advance(1)
    failed = await _unit_status(conn, UNIT)
    await fake_juju.advance(5.5)
    retrying = await _unit_status(conn, UNIT)
    await fake_juju.advance(1)
    again = await _unit_status(conn, UNIT)

    assert _current(running) == ("active", "", "executing", "running config-changed hook")
    assert _current(failed) == ("error", 'hook failed: "config-changed"', "idle", "")
    assert _current(retrying) == ("active", "", "executing", "running config-changed hook")
    assert _current(again) == _current(failed)
    assert [c["workload-status"]["current"] for c in changes] == [
        "active", "error", "active", "error"
    ]  # fmt: skip


async def test_resolve_gives_back_the_previous_workload_status_and_idle(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    # state/unit.go Resolve; worker/uniter/resolver.go nextOpHookError (ResolvedRetryHooks:
    # stop the retry timer, run the hook again); the workload status document was never
    # touched, so its `since` is the one from before the error.
    before = await _unit_status(conn, UNIT)
    fake_juju.error_unit(UNIT)
    await fake_juju.advance(2)

    fake_juju.resolve_unit(UNIT)
    still_error = await _unit_status(conn, UNIT)
    await fake_juju.advance(1)
    resolved = await _unit_status(conn, UNIT)
    changes = _record_unit_changes(fake_juju, UNIT)
    await fake_juju.advance(600)

    assert _current(still_error)[0] == "error"  # the retry takes its step, silently
    assert _current(resolved) == ("active", "", "idle", "")
    assert resolved["workload-status"]["since"] == before["workload-status"]["since"]
    assert changes == []  # no retry timer left running
    with pytest.raises(ValueError, match="is not in an error state"):
        fake_juju.resolve_unit(UNIT)


async def test_a_resolve_while_the_agent_is_gone_happens_when_it_is_back(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    # state/unit.go Resolve only records the resolved mode; the uniter acts on it when it runs.
    fake_juju.error_unit(UNIT)
    fake_juju.lose_unit(UNIT)

    fake_juju.resolve_unit(UNIT)
    await fake_juju.advance(30)
    while_lost = await _unit_status(conn, UNIT)
    fake_juju.lose_unit(UNIT, lost=False)
    await fake_juju.advance(2)

    assert _current(while_lost)[:3] == ("error", 'hook failed: "update-status"', "lost")
    assert _current(await _unit_status(conn, UNIT)) == ("active", "", "idle", "")


async def test_error_unit_needs_a_settled_unit_whose_agent_runs(
    fake_juju: server.FakeJujuController,
):
    new = fake_juju.lifecycle.add_units(APP, 1)[0]
    fake_juju.lose_unit(f"{APP}/2")

    with pytest.raises(ValueError, match="not found"):
        fake_juju.error_unit(f"{APP}/9")
    with pytest.raises(ValueError, match="not a settled unit"):
        fake_juju.error_unit(new)
    with pytest.raises(ValueError, match="not a settled unit"):
        fake_juju.error_unit(f"{APP}/2")
    with pytest.raises(ValueError, match="invalid hook name"):
        fake_juju.error_unit(UNIT, hook="Update Status")
    fake_juju.error_unit(UNIT)
    with pytest.raises(ValueError, match="not a settled unit"):
        fake_juju.error_unit(UNIT)


async def test_dying_unit_in_error_waits_for_resolve_then_tears_down(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    # resolver.go NextOp: in a hook error the uniter only waits for resolve or the retry
    # timer, so the stop hooks of a dying unit wait too; once resolved it goes on.
    fake_juju.error_unit(UNIT)
    fake_juju.remove_unit(UNIT)
    await fake_juju.advance(600)
    stuck = await _unit_status(conn, UNIT)

    fake_juju.resolve_unit(UNIT)
    await fake_juju.run_until_settled()
    history = await _history(conn, f"{APP}/2")  # a neighbour: the status call still works

    assert stuck["agent-status"]["life"] == "dying"
    assert _current(stuck)[:2] == ("error", 'hook failed: "update-status"')
    assert UNIT not in fake_juju.model.units
    assert history


async def test_resolve_of_a_failed_install_finishes_the_install(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    fake_juju.fail_new_units(APP, "hook-error")
    name = fake_juju.lifecycle.add_units(APP, 1)[0]
    await fake_juju.advance(8)
    assert _current(await _unit_status(conn, name))[1] == 'hook failed: "install"'

    fake_juju.resolve_unit(name)
    await fake_juju.run_until_settled()
    agents = [info for kind, _, info in await _history(conn, name) if kind == "juju-unit"]

    assert _current(await _unit_status(conn, name)) == ("active", "", "idle", "")
    resolved = len(agents) - agents[::-1].index("running install hook")
    assert agents[resolved : resolved + 3] == [
        "running leader-settings-changed hook", "running config-changed hook",
        "running start hook",
    ]  # fmt: skip


# -- 2. an operator removes a unit ---------------------------------------------------------


async def test_remove_unit_is_destroy_unit_without_force_and_its_machine_goes(
    fake_juju_factory: fake_fixtures.ControllerFactory,
):
    # `juju remove-unit` calls Application.DestroyUnit (no force): state/unit.go
    # DestroyUnitOperation, the uniter's stop and remove hooks, unit.go destroyHostOps.
    fake = await fake_juju_factory(delta_lag=0.0)
    conn = await helpers.connect(fake)
    try:
        watch = await client.ClientFacade.from_connection(conn).WatchAll()
        watcher = client.AllWatcherFacade.from_connection(conn)
        watcher.Id = watch.watcher_id
        await asyncio.wait_for(watcher.Next(), 5)
        machine = fake.model.units[UNIT].machine_id

        fake.remove_unit(UNIT)
        await fake.run_until_settled()
        await fake.wait_delivered()
        batch = await asyncio.wait_for(watcher.Next(), 5)
    finally:
        await asyncio.wait_for(conn.close(), 5)

    deltas = {(d.entity, d.type) for d in batch.deltas}
    assert ("unit", "remove") in deltas
    assert ("machine", "remove") in deltas
    assert UNIT not in fake.model.units
    assert machine not in fake.model.machines
    assert fake.calls_to("Application", "DestroyUnit") == []
    with pytest.raises(ValueError, match="does not exist"):
        fake.remove_unit(UNIT)


# -- 3. leadership ---------------------------------------------------------------------------


async def test_unit_zero_leads_and_only_the_leader_carries_the_flag(
    conn: juju_connection.Connection,
):
    # params.UnitStatus Leader bool `json:"leader,omitempty"`; status.go processUnit.
    status = await _status(conn)

    flags = {
        name: unit.get("leader")
        for app in status["applications"].values()
        for name, unit in app["units"].items()
    }
    assert flags == {
        "wsgi-example/0": True, "wsgi-example/1": None, "wsgi-example/2": None,
        "whirlwind/0": True,
    }  # fmt: skip


async def test_set_leader_moves_the_flag_and_the_new_leader_runs_leader_elected(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    # worker/uniter/leadership/resolver.go: the new leader accepts (operation/leader.go
    # acceptLeadership: the leader-elected hook); the old one resigns without a hook.
    old = _record_unit_changes(fake_juju, f"{APP}/0")

    fake_juju.set_leader(f"{APP}/2")
    running = await _unit_status(conn, f"{APP}/2")
    await fake_juju.advance(1)
    leader_pattern = await client.ClientFacade.from_connection(conn).FullStatus(
        patterns=[f"{APP}/leader"]
    )

    assert await _leaders(conn) == [f"{APP}/2"]
    assert _current(running) == ("active", "", "executing", "running leader-elected hook")
    assert _current(await _unit_status(conn, f"{APP}/2")) == ("active", "", "idle", "")
    assert old == []
    assert sorted(leader_pattern.applications[APP].units) == [f"{APP}/2"]
    with pytest.raises(ValueError, match="not found"):
        fake_juju.set_leader(f"{APP}/9")


async def test_a_leader_that_dies_normally_is_replaced_a_step_later(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    # The uniter sets its unit dead through the API (worker/uniter/uniter.go EnsureDead),
    # which revokes the lease (apiserver/common/unit.go RevokeLeadershipFunc); the waiting
    # trackers are unblocked at once (worker/lease/manager.go retryingRevoke -> checkBlocks).
    fake_juju.remove_unit(f"{APP}/0")
    leaders: list[tuple[str, list[str]]] = []
    for _ in range(5):
        await fake_juju.advance(1)
        unit = fake_juju.model.units.get(f"{APP}/0")
        leaders.append((unit.life if unit else "removed", await _leaders(conn)))

    assert leaders[:3] == [("dying", [f"{APP}/0"]), ("dying", [f"{APP}/0"]), ("dead", [])]
    assert leaders[3] == ("removed", [f"{APP}/1"])
    new_leader = await _history(conn, f"{APP}/1")
    assert (
        "juju-unit", "executing", "running leader-elected hook"
    ) in new_leader  # fmt: skip


async def test_a_leader_removed_with_force_leaves_no_leader_until_its_lease_expires(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    # state/cleanup.go cleanupForceDestroyedUnit sets it dead in state: nothing revokes the
    # lease. worker/deployer/unit_agent.go LeadershipGuarantee 30 s, worker/leadership/
    # tracker.go leases of twice that: up to 60 s more.
    await client.ApplicationFacade.from_connection(conn).DestroyUnit(
        units=[{"unit-tag": "unit-wsgi-example-0", "destroy-storage": False, **DESTROY,
                "force": True, "max-wait": 0}]
    )  # fmt: skip
    await fake_juju.advance(1.5)
    gone = fake_juju.clock.now()
    assert f"{APP}/0" not in fake_juju.model.units or (
        fake_juju.model.units[f"{APP}/0"].life == "dead"
    )

    await fake_juju.advance(57)
    during = await _leaders(conn)
    await fake_juju.advance(3)

    assert during == []
    assert await _leaders(conn) == [f"{APP}/1"]
    assert fake_juju.clock.now() - gone < lifecycle.LEASE_DURATION + 2


async def test_a_lost_leader_keeps_the_lease_a_minute_and_a_minion_takes_it(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    # worker/leadership/tracker.go: the lost agent renews nothing; another unit's tracker
    # waits in BlockUntilLeadershipReleased and claims the lease when it expires.
    fake_juju.lose_unit(f"{APP}/0")
    await fake_juju.advance(59)
    before_expiry = await _leaders(conn)
    await fake_juju.advance(2)
    after_expiry = await _leaders(conn)
    fake_juju.lose_unit(f"{APP}/0", lost=False)

    assert before_expiry == [f"{APP}/0"]
    assert after_expiry == [f"{APP}/1"]
    assert await _leaders(conn) == [f"{APP}/1"]  # back, but a minion now


async def test_a_leader_lost_for_less_than_the_lease_stays_leader(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    fake_juju.lose_unit(f"{APP}/0")
    await fake_juju.advance(30)
    fake_juju.lose_unit(f"{APP}/0", lost=False)
    await fake_juju.advance(120)

    assert await _leaders(conn) == [f"{APP}/0"]


# -- 4. storage ------------------------------------------------------------------------------


@pytest.fixture
async def db(fake_juju_factory: fake_fixtures.ControllerFactory) -> server.FakeJujuController:
    return await fake_juju_factory({"db": 2, "web": 1}, storage={"db"}, delta_lag=0.0)


async def test_seeded_storage_shows_only_with_include_storage(db: server.FakeJujuController):
    # rpc/params/status.go FullStatus: storage/filesystems/volumes are omitempty and filled
    # only with include-storage (status.go FullStatus, processStorage, processFilesystems);
    # storagecommon StorageDetails / FilesystemDetails; the LXD provider's lxd pool.
    conn = await helpers.connect(db)
    try:
        plain = await _status(conn)
        raw = await _status(conn, **{"include-storage": True})
        typed = await client.ClientFacade.from_connection(conn).FullStatus(
            include_storage=True, patterns=None
        )
    finally:
        await asyncio.wait_for(conn.close(), 5)

    assert not {"storage", "filesystems", "volumes"} & set(plain)
    assert "volumes" not in raw
    assert [(s.storage_tag, s.owner_tag, s.kind, s.status.status, s.persistent)
            for s in typed.storage] == [
        ("storage-data-0", "unit-db-0", 2, "attached", False),
        ("storage-data-1", "unit-db-1", 2, "attached", False),
    ]  # fmt: skip
    assert raw["storage"][0]["attachments"] == {
        "unit-db-0": {
            "storage-tag": "storage-data-0", "unit-tag": "unit-db-0", "machine-tag": "machine-0",
            "location": "/var/lib/juju/storage/data/0", "life": "alive",
        }
    }  # fmt: skip
    filesystem = raw["filesystems"][0]
    assert filesystem["filesystem-tag"] == "filesystem-0"
    assert filesystem["info"] == {
        "filesystem-id": f"juju:juju-{db.model_uuid[-6:]}-filesystem-0", "pool": "lxd",
        "size": 1024,
    }  # fmt: skip
    assert filesystem["machine-attachments"] == {
        "machine-0": {"mount-point": "/var/lib/juju/storage/data/0", "life": "alive"}
    }
    assert filesystem["storage"] == raw["storage"][0]
    assert typed.filesystems[1].machine_attachments["machine-1"].mount_point == (
        "/var/lib/juju/storage/data/1"
    )


async def test_client_v6_ignores_include_storage(
    fake_juju_factory: fake_fixtures.ControllerFactory,
):
    # apiserver/facades/client/client/status.go ClientV6.FullStatus sets IncludeStorage false.
    # (libjuju's v6 call has no include-storage: a non-strict fake lets the raw field through.)
    fake = await fake_juju_factory({"db": 1}, storage={"db"}, strict=False)
    conn = await helpers.connect(fake)
    try:
        reply = await _call(conn, "Client", 6, "FullStatus", **{"include-storage": True})
    finally:
        await asyncio.wait_for(conn.close(), 5)

    assert "storage" not in reply
    assert "db" in reply["applications"]


async def test_new_unit_gets_storage_attached_before_its_install_hook(
    db: server.FakeJujuController,
):
    # state/unit.go: every unit gets the application's storage; worker/storageprovisioner
    # filesystem_ops.go: pending -> attaching (created) -> attached; worker/uniter/storage/
    # resolver.go: on IAAS the storage-attached hook runs before install, which waits for it.
    conn = await helpers.connect(db)
    try:
        (name,) = (await client.ApplicationFacade.from_connection(conn).AddUnits(
            application="db", num_units=1, placement=None)).units  # fmt: skip
        pending = (await _status(conn, **{"include-storage": True}))["filesystems"][-1]
        await db.run_until_settled()
        attached = (await _status(conn, **{"include-storage": True}))["storage"][-1]
        agents = [info for kind, _, info in await _history(conn, name) if kind == "juju-unit"]
    finally:
        await asyncio.wait_for(conn.close(), 5)

    assert name == "db/2"
    assert pending["status"]["status"] == "pending"
    assert pending["info"] == {"filesystem-id": "", "pool": "", "size": 0}
    assert pending["machine-attachments"] == {"machine-3": {"life": "alive"}}
    assert "location" not in pending["storage"]["attachments"]["unit-db-2"]
    assert (attached["storage-tag"], attached["owner-tag"]) == ("storage-data-2", "unit-db-2")
    assert attached["attachments"]["unit-db-2"]["location"] == "/var/lib/juju/storage/data/2"
    hook = agents.index("running data-storage-attached hook")
    assert agents[hook + 1] == "running install hook"
    assert db.state()["storage"]["data/2"]["status"]["current"] == "attached"


async def test_destroy_unit_detaches_its_storage_which_outlives_it(
    db: server.FakeJujuController,
):
    # application.go DestroyUnit: ClassifyDetachedStorage (lxd filesystems are detachable);
    # cleanup.go cleanupDyingUnit: DetachStorage; the uniter's storage-detaching hook comes
    # before stop; storage.go removeStorageAttachmentOps disowns the instance and detaches
    # its filesystem (filesystem_ops.go detachFilesystems: "detached").
    conn = await helpers.connect(db)
    try:
        results = await _destroy(conn, "db/0", destroy_storage=False)
        await db.advance(1)
        detaching = await _unit_status(conn, "db/0")
        await db.run_until_settled()
        everything = await _status(conn, **{"include-storage": True})
        filtered = await _status(conn, patterns=["db"], **{"include-storage": True})
    finally:
        await asyncio.wait_for(conn.close(), 5)

    assert results == [{"info": {"detached-storage": [{"tag": "storage-data-0"}]}}]
    assert _current(detaching)[2:] == ("executing", "running data-storage-detaching hook")
    agents = [e.status.message for e in db.model.history["unit-db-0"] if e.kind == "juju-unit"]
    assert agents[-4:] == [
        "running data-storage-detaching hook", "running stop hook", "running remove hook", ""
    ]  # fmt: skip
    assert "db/0" not in db.model.units
    kept = everything["storage"][0]
    assert (kept["storage-tag"], kept["owner-tag"], kept["status"]["status"]) == (
        "storage-data-0", "", "detached"
    )  # fmt: skip
    assert "attachments" not in kept
    assert "machine-attachments" not in everything["filesystems"][0]
    # With patterns, status.go keeps only storage owned by a matched unit.
    assert [s["storage-tag"] for s in filtered["storage"]] == ["storage-data-1"]


async def test_destroy_storage_removes_it_with_the_unit(db: server.FakeJujuController):
    conn = await helpers.connect(db)
    try:
        results = await _destroy(conn, "db/1", destroy_storage=True)
        await db.run_until_settled()
        status = await _status(conn, **{"include-storage": True})
    finally:
        await asyncio.wait_for(conn.close(), 5)

    assert results == [{"info": {"destroyed-storage": [{"tag": "storage-data-1"}]}}]
    assert [s["storage-tag"] for s in status["storage"]] == ["storage-data-0"]
    assert [f["filesystem-tag"] for f in status["filesystems"]] == ["filesystem-0"]


async def test_a_forced_removal_detaches_the_storage_too(db: server.FakeJujuController):
    # state/cleanup.go cleanupForceDestroyedUnit: forceRemoveUnitStorageAttachments (the
    # attachment goes, the instance is disowned) before the unit is set dead.
    db.stuck_dying("db/1")
    conn = await helpers.connect(db)
    try:
        request = {"unit-tag": "unit-db-1", "destroy-storage": False, "dry-run": False}
        await _call(conn, "Application", 20, "DestroyUnit", units=[{**request, "force": False}])
        await db.run_until_settled()
        stuck = db.state()["storage"]["data/1"]
        await _call(conn, "Application", 20, "DestroyUnit",
                    units=[{**request, "force": True, "max-wait": 0}])  # fmt: skip
        await db.run_until_settled()
        status = await _status(conn, **{"include-storage": True})
    finally:
        await asyncio.wait_for(conn.close(), 5)

    assert (stuck["owner"], stuck["status"]["current"]) == ("db/1", "attached")
    assert "db/1" not in db.model.units
    detached = status["storage"][1]
    assert (detached["storage-tag"], detached["owner-tag"], detached["status"]["status"]) == (
        "storage-data-1", "", "detached"
    )  # fmt: skip


async def test_an_allocating_unit_removed_at_once_takes_its_storage(
    db: server.FakeJujuController,
):
    # state/application.go removeUnitOps -> removeStorageInstancesOps: what it still owns.
    name = db.lifecycle.add_units("db", 1)[0]
    assert [s["owner"] for s in db.state()["storage"].values()][-1] == name

    db.lifecycle.destroy_unit(name, force=False, max_wait=None)

    assert sorted(db.state()["storage"]) == ["data/0", "data/1"]
    assert name not in db.model.units


async def test_storage_needs_a_seeded_application(
    fake_juju_factory: fake_fixtures.ControllerFactory,
):
    with pytest.raises(ValueError, match="unknown application 'db'"):
        await fake_juju_factory({"web": 1}, storage={"db"})

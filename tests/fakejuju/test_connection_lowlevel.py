"""The fake seen through libjuju's Connection and generated facades."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from juju import errors as juju_errors
from juju.client import client
from juju.client import connection as juju_connection

from tests.fakejuju import helpers, protocol, server, tls


@pytest.fixture
async def conn(fake_juju: server.FakeJujuController):
    connection = await helpers.connect(fake_juju)
    yield connection
    await asyncio.wait_for(connection.close(), 5)


async def _watch(conn: juju_connection.Connection):
    watch = await client.ClientFacade.from_connection(conn).WatchAll()
    watcher = client.AllWatcherFacade.from_connection(conn)
    watcher.Id = watch.watcher_id
    return watcher


def _deltas(result) -> list[tuple[str, str, dict]]:
    return [(d.entity, d.type, d.data) for d in result.deltas]


async def test_negotiated_facade_versions_match_juju_36(conn: juju_connection.Connection):
    # A model login lists neither Admin (not in the registry) nor controller-only facades.
    wanted = {
        "Admin": None, "Pinger": 1, "ModelConfig": 3, "Client": 8, "AllWatcher": 3,
        "ModelManager": None, "Application": 20, "MachineManager": 10, "Annotations": 2,
    }  # fmt: skip
    assert {name: conn.facades.get(name) for name in wanted} == wanted
    info = conn.info
    assert isinstance(info, dict)
    assert info["server-version"] == "3.6.1"


def test_advertised_facades_are_all_known_to_libjuju():
    from juju.client import facade_versions

    known = set(facade_versions.client_facade_versions) | set(
        facade_versions.known_unsupported_facades
    )
    assert set(protocol.FACADES) - known == set()


async def test_watcher_snapshot_then_coalesced_changes(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    watcher = await _watch(conn)
    snapshot = _deltas(await asyncio.wait_for(watcher.Next(), 5))
    kinds = {kind for kind, _, _ in snapshot}
    assert kinds == {"model", "application", "machine", "unit"}
    app = client.ApplicationFacade.from_connection(conn)
    added = await app.AddUnits(application="wsgi-example", num_units=1, placement=None)
    assert added.units == ["wsgi-example/3"]
    # Several steps happen before the next Next: only the latest state of each entity comes.
    await fake_juju.run_until_settled()
    await fake_juju.wait_delivered()

    batch = _deltas(await asyncio.wait_for(watcher.Next(), 5))

    units = [info for kind, _, info in batch if kind == "unit"]
    assert len(units) == 1
    assert units[0]["name"] == "wsgi-example/3"
    assert units[0]["workload-status"]["current"] == "active"
    assert units[0]["agent-status"]["current"] == "idle"
    assert [info["id"] for kind, _, info in batch if kind == "machine"] == ["4"]


async def test_remove_delta_carries_last_info_and_machine_follows(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    watcher = await _watch(conn)
    await asyncio.wait_for(watcher.Next(), 5)
    app = client.ApplicationFacade.from_connection(conn)
    request = {"unit-tag": "unit-wsgi-example-1", "destroy-storage": False, "force": False,
               "max-wait": None, "dry-run": False}  # fmt: skip
    await app.DestroyUnit(units=[request])
    await fake_juju.run_until_settled()
    await fake_juju.wait_delivered()

    batch = _deltas(await asyncio.wait_for(watcher.Next(), 5))

    removes = {(kind, info.get("name") or info.get("id")): info for kind, change, info in batch
               if change == "remove"}  # fmt: skip
    assert set(removes) == {("unit", "wsgi-example/1"), ("machine", "1")}
    assert removes["unit", "wsgi-example/1"]["life"] == "dead"
    assert removes["machine", "1"]["life"] == "dead"
    history = [e.status.current for e in fake_juju.model.history["unit-wsgi-example-1"]]
    assert "terminated" in history


async def test_stop_ends_pending_next_with_stopped(conn: juju_connection.Connection):
    watcher = await _watch(conn)
    await asyncio.wait_for(watcher.Next(), 5)
    pending = asyncio.ensure_future(watcher.Next())
    await asyncio.sleep(0.01)

    await asyncio.wait_for(watcher.Stop(), 5)

    with pytest.raises(juju_errors.JujuAPIError) as caught:
        await asyncio.wait_for(pending, 5)
    assert not caught.value.error_code  # Juju sends no code (multiwatcher NewErrStopped)
    assert "watcher was stopped" in caught.value.message


async def test_annotations_set_get_and_watch(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    watcher = await _watch(conn)
    await asyncio.wait_for(watcher.Next(), 5)
    annotations = client.AnnotationsFacade.from_connection(conn)

    born = {"whirlwind/born": "2024-01-01"}
    await annotations.Set(annotations=[{"entity": "unit-wsgi-example-2", "annotations": born}])
    got = await annotations.Get(entities=[{"tag": "unit-wsgi-example-2"}])
    await fake_juju.wait_delivered()
    batch = _deltas(await asyncio.wait_for(watcher.Next(), 5))

    assert got.results[0].annotations == {"whirlwind/born": "2024-01-01"}
    assert batch[0] == ("annotation", "change", {"model-uuid": fake_juju.model_uuid,
                        "tag": "unit-wsgi-example-2",
                        "annotations": {"whirlwind/born": "2024-01-01"}})  # fmt: skip
    # Juju rewrites the annotated unit too: a unit "change" with nothing visible changed.
    assert [(kind, change, info["name"]) for kind, change, info in batch[1:]] == [
        ("unit", "change", "wsgi-example/2")
    ]
    assert fake_juju.state()["units"]["wsgi-example/2"]["annotations"] == born


async def test_full_status_shows_lost_unit_and_down_machine_without_deltas(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    watcher = await _watch(conn)
    await asyncio.wait_for(watcher.Next(), 5)
    fake_juju.lose_unit("wsgi-example/0")
    fake_juju.machine_down("0")

    status = await client.ClientFacade.from_connection(conn).FullStatus(patterns=None)
    quiet = asyncio.ensure_future(watcher.Next())
    await asyncio.sleep(0.05)

    unit = status.applications["wsgi-example"].units["wsgi-example/0"]
    assert unit.agent_status.status == "lost"
    assert unit.workload_status.status == "unknown"
    assert status.machines["0"].agent_status.status == "down"
    assert status.applications["wsgi-example"].units["wsgi-example/1"].agent_status.status == (
        "idle"
    )
    assert not quiet.done()
    quiet.cancel()


async def test_status_history_oldest_first_with_size(conn: juju_connection.Connection):
    facade = client.ClientFacade.from_connection(conn)

    result = await facade.StatusHistory(requests=[
        {"historyKind": "machine", "tag": "machine-2", "filter": {"size": 1000}},
        {"historyKind": "workload", "tag": "unit-wsgi-example-2", "filter": {"size": 1}},
    ])  # fmt: skip

    machine = [s.status for s in result.results[0].history.statuses]
    assert machine == ["pending", "running"]
    assert [s.status for s in result.results[1].history.statuses] == ["active"]


async def test_destroy_machine_refuses_machine_with_units(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    facade = client.MachineManagerFacade.from_connection(conn)

    with pytest.raises(juju_errors.JujuError, match='has unit "wsgi-example/0" assigned'):
        await facade.DestroyMachineWithParams(machine_tags=["machine-0"], force=False)
    await facade.DestroyMachineWithParams(machine_tags=["machine-0"], force=True)
    await fake_juju.run_until_settled()

    assert "0" not in fake_juju.state()["machines"]
    assert "wsgi-example/0" not in fake_juju.state()["units"]


async def test_unknown_calls_answer_not_implemented(conn: juju_connection.Connection):
    with pytest.raises(juju_errors.JujuAPIError) as unknown_method:
        await conn.rpc({"type": "Application", "request": "Deploy", "version": 20})
    with pytest.raises(juju_errors.JujuAPIError) as unknown_facade:
        await conn.rpc({"type": "Nope", "request": "Nothing", "version": 1})

    assert unknown_method.value.error_code == "not implemented"
    assert unknown_facade.value.error_code == "not implemented"
    assert conn.is_open


async def test_controller_facades_only_on_controller_connection(
    conn: juju_connection.Connection,
):
    # A model login does not list ModelManager, so libjuju's facade class refuses it: ask raw.
    with pytest.raises(juju_errors.JujuAPIError) as caught:
        await conn.rpc({"type": "ModelManager", "request": "ModelInfo", "version": 10})

    assert caught.value.error_code == "not supported"


async def test_wrong_ca_fails_with_ssl_error(fake_juju: server.FakeJujuController):
    other_ca = tls.generate().ca_cert

    with pytest.raises(ssl.SSLError):
        await helpers.connect(fake_juju, cacert=other_ca)


async def test_wrong_model_uuid_is_refused(fake_juju: server.FakeJujuController):
    with pytest.raises(juju_errors.JujuAPIError) as caught:
        await helpers.connect(fake_juju, uuid="00000000-0000-4000-8000-000000000000")

    assert caught.value.error_code == "model not found"


async def test_call_error_fault_fails_next_calls_then_clears(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    fake_juju.call_error("Client", "FullStatus", count=2, message="boom", code="try again")
    facade = client.ClientFacade.from_connection(conn)

    for _ in range(2):
        with pytest.raises(juju_errors.JujuAPIError) as caught:
            await facade.FullStatus(patterns=None)
        assert (caught.value.message, caught.value.error_code) == ("boom", "try again")
    status = await facade.FullStatus(patterns=None)

    assert "wsgi-example" in status.applications
    codes = [c.error_code for c in fake_juju.calls_to("Client", "FullStatus")]
    assert codes == ["try again", "try again", None]


async def test_latency_fault_delays_replies(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    fake_juju.set_latency(0.2, "Client", "FullStatus")
    facade = client.ClientFacade.from_connection(conn)
    loop = asyncio.get_running_loop()

    start = loop.time()
    await facade.FullStatus(patterns=None)
    slow = loop.time() - start
    fake_juju.set_latency(0.0, "Client", "FullStatus")
    start = loop.time()
    await facade.FullStatus(patterns=None)

    assert slow >= 0.2
    assert loop.time() - start < 0.2

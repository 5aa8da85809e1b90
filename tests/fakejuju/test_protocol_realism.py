"""The fake answers as Juju 3.6 does where a kinder answer would hide client bugs.

Each test names the Juju source (commit 6761e481) whose behaviour it pins. Per-item errors of
bulk calls make libjuju raise a plain JujuError without the code, so those tests also read the
raw reply libjuju received.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from juju import errors as juju_errors
from juju.client import client
from juju.client import connection as juju_connection

from tests.fakejuju import helpers, server

MISSING_UUID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
async def conn(fake_juju: server.FakeJujuController):
    connection = await helpers.connect(fake_juju)
    yield connection
    await asyncio.wait_for(connection.close(), 5)


@pytest.fixture
def replies(conn: juju_connection.Connection, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Return the list of raw replies libjuju receives on `conn` from now on."""
    seen: list[Any] = []
    receive = conn._recv

    async def recv(request_id: int) -> dict[str, Any]:
        reply = await receive(request_id)
        seen.append(reply)
        return reply

    monkeypatch.setattr(conn, "_recv", recv)
    return seen


def _item_errors(reply: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["error"]["message"], r["error"]["code"]) for r in reply["response"]["results"]
            if r.get("error")]  # fmt: skip


# -- 1. Annotations: apiserver/facades/client/annotations/client.go, state/annotations.go --


async def test_annotations_set_on_missing_entity_is_permission_denied(
    conn: juju_connection.Connection, replies: list[Any]
):
    facade = client.AnnotationsFacade.from_connection(conn)

    with pytest.raises(juju_errors.JujuError, match="permission denied"):
        await facade.Set(annotations=[
            {"entity": "unit-wsgi-example-9", "annotations": {"whirlwind/born": "x"}},
            {"entity": "machine-42", "annotations": {"whirlwind/born": "x"}},
        ])  # fmt: skip

    assert _item_errors(replies[-1]) == [
        ('while setting annotations to "unit-wsgi-example-9": permission denied',
         "unauthorized access"),
        ('while setting annotations to "machine-42": permission denied', "unauthorized access"),
    ]  # fmt: skip


async def test_annotations_set_rejects_keys_with_dots_and_sets_nothing(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection, replies: list[Any]
):
    facade = client.AnnotationsFacade.from_connection(conn)
    values = {"whirlwind/born": "2024-01-01", "whirlwind.born": "2024-01-01"}

    with pytest.raises(juju_errors.JujuError, match="invalid key"):
        await facade.Set(annotations=[{"entity": "unit-wsgi-example-2", "annotations": values}])

    assert _item_errors(replies[-1]) == [
        ('while setting annotations to "unit-wsgi-example-2": cannot update annotations on '
         'unit-wsgi-example-2: invalid key "whirlwind.born"', ""),
    ]  # fmt: skip
    assert fake_juju.state()["units"]["wsgi-example/2"]["annotations"] == {}


async def test_annotations_set_on_bad_tag_has_no_code(
    conn: juju_connection.Connection, replies: list[Any]
):
    facade = client.AnnotationsFacade.from_connection(conn)

    with pytest.raises(juju_errors.JujuError, match="not a valid tag"):
        await facade.Set(annotations=[{"entity": "wsgi-example/2", "annotations": {"a": "b"}}])

    assert _item_errors(replies[-1]) == [
        ('while setting annotations to "wsgi-example/2": "wsgi-example/2" is not a valid tag', ""),
    ]


async def test_annotations_get_always_carries_an_error_object(
    conn: juju_connection.Connection, replies: list[Any]
):
    facade = client.AnnotationsFacade.from_connection(conn)
    await facade.Set(annotations=[{"entity": "unit-wsgi-example-2",
                                   "annotations": {"whirlwind/born": "2024-01-01"}}])  # fmt: skip

    got = await facade.Get(entities=[{"tag": "unit-wsgi-example-2"}, {"tag": "unit-nope-1"}])

    raw = replies[-1]["response"]["results"]
    assert raw[0] == {"entity": "unit-wsgi-example-2",
                      "annotations": {"whirlwind/born": "2024-01-01"}, "error": {}}  # fmt: skip
    assert raw[1] == {"entity": "unit-nope-1", "annotations": None, "error": {"error": {
        "message": 'while getting annotations to "unit-nope-1": permission denied',
        "code": "unauthorized access"}}}  # fmt: skip
    # libjuju parses both, drops the empty object and raises for neither (the error is one level
    # deeper than its bulk-error check looks).
    assert got.results[0].error is None
    assert got.results[1].error.error.code == "unauthorized access"


# -- 2. StatusHistory: apiserver/facades/client/client/status.go, state/status.go ----------


async def _new_machine(fake_juju: server.FakeJujuController, conn: juju_connection.Connection):
    app = client.ApplicationFacade.from_connection(conn)
    (unit,) = (await app.AddUnits(application="wsgi-example", num_units=1, placement=None)).units
    await fake_juju.run_until_settled()
    return unit, fake_juju.state()["units"][unit]["machine"]


async def _history(conn: juju_connection.Connection, kind: str, tag: str, **filt: Any):
    facade = client.ClientFacade.from_connection(conn)
    result = await facade.StatusHistory(
        requests=[{"historyKind": kind, "tag": tag, "filter": filt}]
    )
    return result.results[0].history.statuses


async def test_status_history_is_oldest_first_and_size_keeps_the_newest(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    _, machine = await _new_machine(fake_juju, conn)

    everything = await _history(conn, "machine", f"machine-{machine}", size=1000)
    newest_two = await _history(conn, "machine", f"machine-{machine}", size=2)

    assert [s.status for s in everything] == ["pending", "provisioning", "running"]
    assert [s.since for s in everything] == sorted(s.since for s in everything)
    assert [s.status for s in newest_two] == ["provisioning", "running"]
    # agentStatusFromStatusInfo fills status, info, data, since and kind only.
    assert {(s.kind, s.version, s.life) for s in everything} == {("machine", "", "")}


async def test_status_history_unit_kind_merges_then_keeps_the_newest(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    unit, _ = await _new_machine(fake_juju, conn)
    tag = "unit-" + unit.replace("/", "-")

    merged = await _history(conn, "unit", tag, size=1000)
    newest = await _history(conn, "unit", tag, size=2)

    assert {s.kind for s in merged} == {"workload", "juju-unit"}
    assert [s.since for s in merged] == sorted(s.since for s in merged)
    # Not two of each kind: the newest two of the merged history.
    assert [s.since for s in newest] == [s.since for s in merged][-2:]
    assert newest[-1].status == merged[-1].status


async def test_status_history_date_delta_and_exclude_filters(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    _, machine = await _new_machine(fake_juju, conn)
    tag = f"machine-{machine}"
    pending, provisioning, _running = await _history(conn, "machine", tag, size=1000)
    await fake_juju.advance(100.0)

    after = await _history(conn, "machine", tag, date=provisioning.since)
    recent = await _history(conn, "machine", tag, delta=50 * 10**9)
    old_enough = await _history(conn, "machine", tag, delta=10_000 * 10**9)
    excluded = await _history(conn, "machine", tag, size=10, exclude=[provisioning.info])

    assert [s.status for s in after] == ["running"]  # strictly after the date
    assert recent == []
    assert [s.status for s in old_enough] == ["pending", "provisioning", "running"]
    assert [s.status for s in excluded] == [pending.status, "running"]


async def test_status_history_filter_needs_exactly_one_criterion(
    conn: juju_connection.Connection, replies: list[Any]
):
    facade = client.ClientFacade.from_connection(conn)
    date = "2024-01-01T00:00:00Z"
    filters = [{}, {"size": 0, "delta": None}, {"size": 5, "date": date},
               {"size": 5, "delta": 10}, {"date": date, "delta": 10}]  # fmt: skip

    with pytest.raises(juju_errors.JujuError, match="cannot validate status history filter"):
        await facade.StatusHistory(requests=[
            {"historyKind": "machine", "tag": "machine-0", "filter": f} for f in filters
        ])  # fmt: skip

    prefix = "cannot validate status history filter: "
    assert _item_errors(replies[-1]) == [
        (prefix + "missing filter parameters not valid", "not valid"),
        (prefix + "missing filter parameters not valid", "not valid"),
        (prefix + "Size and Date together not valid", "not valid"),
        (prefix + "Size and Delta together not valid", "not valid"),
        (prefix + "Date and Delta together not valid", "not valid"),
    ]
    assert [r["history"] for r in replies[-1]["response"]["results"]] == [{"statuses": None}] * 5


async def test_status_history_of_missing_or_removed_entity_is_an_error(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection, replies: list[Any]
):
    app = client.ApplicationFacade.from_connection(conn)
    request = {"unit-tag": "unit-wsgi-example-1", "destroy-storage": False, "force": False,
               "max-wait": None, "dry-run": False}  # fmt: skip
    await app.DestroyUnit(units=[request])
    await fake_juju.run_until_settled()
    facade = client.ClientFacade.from_connection(conn)
    requests = [("unit", "unit-wsgi-example-1"), ("workload", "unit-wsgi-example-9"),
                ("machine", "machine-1"), ("juju-machine", "machine-99"),
                ("unit", "machine-0")]  # fmt: skip

    with pytest.raises(juju_errors.JujuError, match="fetching status history"):
        await facade.StatusHistory(requests=[
            {"historyKind": kind, "tag": tag, "filter": {"size": 10}} for kind, tag in requests
        ])  # fmt: skip

    prefix = "fetching status history for "
    assert _item_errors(replies[-1]) == [
        (prefix + '"unit-wsgi-example-1": unit "wsgi-example/1" not found', "not found"),
        (prefix + '"unit-wsgi-example-9": unit "wsgi-example/9" not found', "not found"),
        (prefix + '"machine-1": machine 1 not found', "not found"),
        (prefix + '"machine-99": machine 99 not found', "not found"),
        (prefix + '"machine-0": "machine-0" is not a valid unit tag', ""),
    ]


# -- 3. AllWatcher.Stop: worker/multiwatcher/watcher.go, apiserver/watcher.go --------------


async def _watch(conn: juju_connection.Connection, watcher_id: str | None = None):
    watcher = client.AllWatcherFacade.from_connection(conn)
    if watcher_id is None:
        watcher_id = (await client.ClientFacade.from_connection(conn).WatchAll()).watcher_id
    watcher.Id = watcher_id
    return watcher


async def test_stop_fails_pending_next_without_code_then_id_is_unknown(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    watcher = await _watch(conn)
    await asyncio.wait_for(watcher.Next(), 5)
    pending = asyncio.ensure_future(watcher.Next())
    await fake_juju.wait_for_call("AllWatcher", "Next", count=2)

    await asyncio.wait_for(watcher.Stop(), 5)

    with pytest.raises(juju_errors.JujuAPIError) as stopped:
        await asyncio.wait_for(pending, 5)
    assert stopped.value.message == "watcher was stopped"
    assert not stopped.value.error_code
    for call in (watcher.Next, watcher.Stop):
        with pytest.raises(juju_errors.JujuAPIError) as unknown:
            await asyncio.wait_for(call(), 5)
        assert (unknown.value.message, unknown.value.error_code) == (
            "unknown watcher id",
            "not found",
        )


async def test_next_on_a_watcher_of_another_connection_is_unknown(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    mine = await _watch(conn)
    other = await helpers.connect(fake_juju)
    try:
        for watcher_id in (mine.Id, "99"):
            stranger = await _watch(other, watcher_id)
            with pytest.raises(juju_errors.JujuAPIError) as caught:
                await asyncio.wait_for(stranger.Next(), 5)
            assert (caught.value.message, caught.value.error_code) == (
                "unknown watcher id",
                "not found",
            )
    finally:
        await asyncio.wait_for(other.close(), 5)


# -- 4. Admin.Login: apiserver/apiserver.go serveConn, admin.go, restrict_*.go -------------

# restrict_controller.go controllerFacadeNames, then commonFacadeNames.
CONTROLLER_ONLY_FACADES = {
    "AllModelWatcher", "ApplicationOffers", "Cloud", "Controller", "CrossController",
    "MigrationTarget", "ModelManager", "ModelUpgrader", "ModelSummaryWatcher", "SecretBackends",
    "UserManager",
}  # fmt: skip
COMMON_FACADES = {"Pinger", "Bundle", "HighAvailability", "NotifyWatcher", "ModelConfig"}


async def test_unknown_model_is_refused_before_the_password_is_checked(
    fake_juju: server.FakeJujuController,
):
    with pytest.raises(juju_errors.JujuAPIError) as caught:
        await helpers.connect(fake_juju, uuid=MISSING_UUID, password="wrong")

    assert caught.value.message == f'unknown model: "{MISSING_UUID}"'
    assert caught.value.error_code == "model not found"


@pytest.mark.parametrize("uuid", ["model", None])
async def test_wrong_password_message_has_no_code_suffix(
    fake_juju: server.FakeJujuController, uuid: str | None
):
    target = fake_juju.model_uuid if uuid == "model" else None

    with pytest.raises(juju_errors.JujuAPIError) as caught:
        await helpers.connect(fake_juju, uuid=target, password="wrong")

    assert caught.value.message == "invalid entity name or password"
    assert caught.value.error_code == "unauthorized access"


async def test_model_login_lists_no_controller_facades_nor_admin(
    conn: juju_connection.Connection,
):
    info: Any = conn.info  # the raw Login result
    assert isinstance(info, dict)
    names = [f["name"] for f in info["facades"]]

    assert names == sorted(names)
    assert {"Client", "AllWatcher", "Application", "Annotations", "Pinger"} <= set(names)
    assert set(names) & CONTROLLER_ONLY_FACADES == set()
    assert set(names) >= COMMON_FACADES
    assert "Admin" not in names
    assert info["user-info"]["display-name"] == ""


async def test_controller_login_lists_only_controller_facades(
    fake_juju: server.FakeJujuController,
):
    controller = await helpers.connect(fake_juju, uuid=None)
    try:
        info: Any = controller.info
        assert isinstance(info, dict)
        model_info = await client.ModelManagerFacade.from_connection(controller).ModelInfo(
            entities=[{"tag": f"model-{fake_juju.model_uuid}"}]
        )
        with pytest.raises(juju_errors.JujuAPIError) as caught:
            await controller.rpc({"type": "Client", "request": "FullStatus", "version": 8})
    finally:
        await asyncio.wait_for(controller.close(), 5)

    assert {f["name"] for f in info["facades"]} == CONTROLLER_ONLY_FACADES | COMMON_FACADES
    assert "model-tag" not in info
    assert model_info.results[0].result.uuid == fake_juju.model_uuid
    assert caught.value.message == 'facade "Client" not supported for controller API connection'
    assert caught.value.error_code == "not supported"


async def test_after_login_unknown_facades_and_admin_read_as_unknown_versions(
    conn: juju_connection.Connection,
):
    messages = []
    for facade, version in (("Nope", 1), ("Admin", 3), ("Client", 99)):
        with pytest.raises(juju_errors.JujuAPIError) as caught:
            await conn.rpc({"type": facade, "request": "Login", "version": version})
        messages.append((caught.value.message, caught.value.error_code))

    assert messages == [
        ('unknown version (1) of interface "Nope"', "not implemented"),
        ('unknown version (3) of interface "Admin"', "not implemented"),
        ('unknown version (99) of interface "Client"', "not implemented"),
    ]
    assert conn.is_open


# -- 5. FullStatus patterns: apiserver/facades/client/client/status.go, filtering.go -------


async def _filtered(conn: juju_connection.Connection, *patterns: str):
    status = await client.ClientFacade.from_connection(conn).FullStatus(patterns=list(patterns))
    units = {name for app in status.applications.values() for name in app.units}
    return set(status.applications), units, set(status.machines)


def _machine(fake_juju: server.FakeJujuController, unit: str) -> str:
    return fake_juju.state()["units"][unit]["machine"]


async def test_full_status_application_pattern_selects_it_its_units_and_machines(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    apps, units, machines = await _filtered(conn, "whirlwind")

    assert (apps, units, machines) == (
        {"whirlwind"},
        {"whirlwind/0"},
        {_machine(fake_juju, "whirlwind/0")},
    )


async def test_full_status_unit_patterns(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    one = await _filtered(conn, "wsgi-example/1")
    leader = await _filtered(conn, "wsgi-example/leader")
    glob = await _filtered(conn, "wsgi-example/*")
    union = await _filtered(conn, "whirlwind", "wsgi-example/2")

    assert one == ({"wsgi-example"}, {"wsgi-example/1"}, {_machine(fake_juju, "wsgi-example/1")})
    assert leader[1] == {"wsgi-example/0"}
    assert glob[1] == {"wsgi-example/0", "wsgi-example/1", "wsgi-example/2"}
    assert union[:2] == ({"whirlwind", "wsgi-example"}, {"whirlwind/0", "wsgi-example/2"})
    assert union[2] == {_machine(fake_juju, "whirlwind/0"), _machine(fake_juju, "wsgi-example/2")}


async def test_full_status_machine_pattern_and_no_match(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    machine = _machine(fake_juju, "wsgi-example/2")

    by_machine = await _filtered(conn, machine)
    nothing = await _filtered(conn, "no-such-app")

    assert by_machine == ({"wsgi-example"}, {"wsgi-example/2"}, {machine})
    assert nothing == (set(), set(), set())


async def test_full_status_status_and_address_patterns(
    fake_juju: server.FakeJujuController, conn: juju_connection.Connection
):
    everything = await _filtered(conn)
    address = fake_juju.model.machines[_machine(fake_juju, "whirlwind/0")].address
    network = address.rsplit(".", 1)[0] + ".0/24"

    idle = await _filtered(conn, "idle")  # a unit agent status
    blocked = await _filtered(conn, "blocked")  # a workload status nobody has
    by_address = await _filtered(conn, address)
    by_network = await _filtered(conn, network)

    assert idle == everything
    assert blocked == (set(), set(), set())
    assert by_address[:2] == ({"whirlwind"}, {"whirlwind/0"})
    assert "whirlwind/0" in by_network[1]

"""The fake seen through libjuju's high-level Model."""

from __future__ import annotations

import asyncio

import pytest
from juju import errors as juju_errors
from juju import model as juju_model

from tests.fakejuju import helpers, server

pytestmark = pytest.mark.usefixtures("libjuju_model_closes_transports")


@pytest.fixture
async def model(fake_juju: server.FakeJujuController):
    connected = await helpers.connect_model(fake_juju)
    yield connected
    await asyncio.wait_for(connected.disconnect(), 5)


async def test_snapshot_shows_applications_units_and_machines(model: juju_model.Model):
    assert set(model.applications) == {"wsgi-example", "whirlwind"}
    assert set(model.units) == {
        "wsgi-example/0",
        "wsgi-example/1",
        "wsgi-example/2",
        "whirlwind/0",
    }
    assert set(model.machines) == {"0", "1", "2", "3"}
    unit = model.units["wsgi-example/1"]
    assert (unit.workload_status, unit.agent_status) == ("active", "idle")
    assert unit.machine is not None
    assert unit.machine.id == "1"
    assert model.info.type_ == "iaas"


async def test_add_unit_goes_through_lifecycle_to_active_idle(
    fake_juju: server.FakeJujuController, model: juju_model.Model
):
    seen: list[tuple[str, str]] = []

    async def record(delta, old, new, model_):
        seen.append((new.workload_status, new.agent_status))

    model.add_observer(record, "unit", None, "wsgi-example/3")
    adding = asyncio.create_task(model.applications["wsgi-example"].add_unit())
    await fake_juju.wait_for_call("Application", "AddUnits")
    units = await asyncio.wait_for(adding, 5)
    assert units is not None
    # AddUnits adds the unit, then assigns it: the first delta may not name a machine yet.
    await helpers.wait_until(lambda: units[0].machine is not None)
    assert units[0].machine is not None

    assert [u.name for u in units] == ["wsgi-example/3"]
    assert (units[0].workload_status, units[0].agent_status) == ("waiting", "allocating")
    assert units[0].machine.id == "4"
    # One step at a time, each delivered before the next: the watcher coalesces what happens
    # between two Next calls, so running all steps at once could skip the install entirely.
    while fake_juju.clock.next_due() is not None:  # type: ignore[attr-defined]
        await fake_juju.advance(1.0)
        await fake_juju.wait_delivered()
        await asyncio.sleep(0.02)
    await helpers.wait_until(lambda: units[0].agent_status == "idle")
    assert units[0].workload_status == "active"
    assert model.machines["4"].agent_status == "started"
    assert ("maintenance", "executing") in seen
    assert fake_juju.state()["units"]["wsgi-example/3"]["workload-status"]["current"] == "active"


async def test_destroy_unit_removes_unit_then_its_machine(
    fake_juju: server.FakeJujuController, model: juju_model.Model
):
    await model.destroy_unit("wsgi-example/0")
    await helpers.wait_until(lambda: model.units["wsgi-example/0"].life == "dying")
    await fake_juju.run_until_settled()

    await helpers.wait_until(lambda: "0" not in model.machines)
    assert "wsgi-example/0" not in model.units
    assert "0" not in fake_juju.state()["machines"]


async def test_unit_numbers_are_never_reused(
    fake_juju: server.FakeJujuController, model: juju_model.Model
):
    await model.destroy_unit("wsgi-example/2")
    await fake_juju.run_until_settled()
    units = await asyncio.wait_for(model.applications["wsgi-example"].add_unit(), 5)
    assert units is not None
    await helpers.wait_until(lambda: units[0].machine is not None)

    assert units[0].machine is not None
    assert units[0].name == "wsgi-example/3"
    assert units[0].machine.id == "4"


async def test_bad_password_is_unauthorized(fake_juju: server.FakeJujuController):
    kwargs = fake_juju.connect_kwargs() | {"password": "wrong"}

    with pytest.raises(juju_errors.JujuAPIError) as caught:
        await asyncio.wait_for(juju_model.Model().connect(**kwargs, retries=0), 5)

    assert caught.value.error_code == "unauthorized access"
    assert "invalid entity name or password" in caught.value.message

"""LibjujuBackend against the protocol-level fake controller, unmodified libjuju in between."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import socket
from collections.abc import Callable

import pytest

from tests.fakejuju import protocol as fake_protocol
from tests.fakejuju import server as fake_server
from tests.fakejuju import tls as fake_tls
from tests.functional import conftest
from whirlwind import backend, libjuju_backend

APP = "wsgi-example"


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (real time, bounded) until predicate() holds, or fail the test."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


async def started(
    backend_factory: conftest.BackendFactory,
    fake: fake_server.FakeJujuController,
    timings: libjuju_backend.BackendTimings = conftest.FAST_TIMINGS,
) -> libjuju_backend.LibjujuBackend:
    """A backend connected to `fake` with its first snapshot taken."""
    juju = backend_factory(conftest.backend_settings(fake), timings)
    await juju.start()
    assert await juju.wait_synced(5.0)
    return juju


def dead_endpoint() -> str:
    """A local address nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


# -- backoff -----------------------------------------------------------------------------------


def test_backoff_grows_jittered_and_stays_bounded():
    timings = libjuju_backend.BackendTimings(backoff_initial=1.0, backoff_max=60.0)
    rng = random.Random(7)

    delays = [timings.backoff_delay(attempt, rng) for attempt in range(8)]
    after_days = timings.backoff_delay(100_000, rng)

    for attempt, delay in enumerate(delays):
        ceiling = min(60.0, 2.0**attempt)
        assert 0.75 * ceiling <= delay <= ceiling
    assert 45.0 <= after_days <= 60.0
    assert 45.0 <= timings.max_delay(rng) <= 60.0


# -- connecting --------------------------------------------------------------------------------


async def test_connect_takes_snapshot_and_polls_status(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    juju: backend.JujuBackend = await started(backend_factory, fake_juju)

    assert juju.connected
    assert isinstance(juju, libjuju_backend.LibjujuBackend)
    assert juju.endpoint == fake_juju.endpoint
    assert juju.last_error is None
    assert juju.model.synced
    assert sorted(juju.model.units) == sorted(fake_juju.model.units)
    assert sorted(juju.model.machines) == sorted(fake_juju.model.machines)
    assert set(juju.model.applications) == {APP, "whirlwind"}
    assert juju.model.count_healthy(APP) == 3
    # The facade versions of JUJU_API.md, and one status poll right after connecting.
    assert [c.version for c in fake_juju.calls_to("Client", "WatchAll")] == [8]
    assert fake_juju.calls_to("AllWatcher", "Next")[0].version == 3
    assert len(fake_juju.calls_to("Client", "FullStatus")) == 1
    assert fake_juju.connection_count == 1


async def test_missing_facade_version_fails_clearly(
    fake_juju: fake_server.FakeJujuController,
    backend_factory: conftest.BackendFactory,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setitem(fake_protocol.FACADES, "Annotations", (1,))
    juju = backend_factory(conftest.backend_settings(fake_juju))

    await juju.start()

    await eventually(lambda: juju.last_error is not None)
    assert not await juju.wait_synced(0.05)
    assert isinstance(juju.last_error, backend.BackendError)
    assert not juju.last_error.transient
    assert "Annotations v2" in str(juju.last_error)
    assert fake_juju.calls_to("Client", "WatchAll") == []
    await eventually(lambda: fake_juju.connection_count == 0)


async def test_bad_password_is_login_error_without_tight_retries(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    timings = libjuju_backend.BackendTimings(
        backoff_initial=0.001, backoff_max=0.3, backoff_jitter=0.0
    )
    juju = backend_factory(conftest.backend_settings(fake_juju, password="wrong"), timings)

    await juju.start()
    synced = await juju.wait_synced(0.45)

    assert not synced
    assert not juju.connected
    assert isinstance(juju.last_error, backend.LoginError)
    assert "refused the credentials" in str(juju.last_error)
    assert "wrong" not in str(juju.last_error)
    # Retried after the maximum delay (0.3 s), not after 1 ms, 2 ms, 4 ms, ...
    assert juju.connect_attempts == 2
    await eventually(lambda: len(fake_juju.calls_to("Admin", "Login")) == 2)
    assert fake_juju.connection_count == 0


async def test_wrong_ca_is_a_clear_tls_error(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    other_ca = fake_tls.generate().ca_cert
    juju = backend_factory(conftest.backend_settings(fake_juju, ca_cert=other_ca))

    await juju.start()

    await eventually(lambda: juju.last_error is not None)
    error = juju.last_error
    assert isinstance(error, backend.BackendError)
    assert not isinstance(error, backend.LoginError)
    assert not error.transient
    assert "TLS verification failed" in str(error)
    assert "ca-cert" in str(error)
    assert not juju.connected
    assert fake_juju.calls_to("Admin", "Login") == []


async def test_unknown_model_is_a_clear_error(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    agent_settings = dataclasses.replace(
        conftest.backend_settings(fake_juju), model_uuid="00000000-0000-4000-8000-000000000000"
    )
    juju = backend_factory(agent_settings)

    await juju.start()

    await eventually(lambda: juju.last_error is not None)
    assert isinstance(juju.last_error, backend.BackendError)
    assert not juju.last_error.transient
    assert "model 00000000-0000-4000-8000-000000000000 not found" in str(juju.last_error)
    assert not juju.connected


async def test_first_endpoint_dead_uses_the_second(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    endpoints = (dead_endpoint(), fake_juju.endpoint)
    juju = backend_factory(conftest.backend_settings(fake_juju, endpoints=endpoints))

    await juju.start()

    assert await juju.wait_synced(5.0)
    assert juju.endpoint == fake_juju.endpoint
    assert juju.connect_attempts == 2
    # After a drop it goes back to the endpoint that worked first.
    await fake_juju.drop_connections("abrupt")
    await eventually(lambda: juju.sessions == 2 and juju.connected)
    assert juju.connect_attempts == 3


async def test_libjuju_connection_logger_never_logs_the_password(
    fake_juju: fake_server.FakeJujuController,
    backend_factory: conftest.BackendFactory,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("juju.client.connection").setLevel(logging.DEBUG)

    await started(backend_factory, fake_juju)

    assert fake_juju.password not in caplog.text
    assert any(r.name == "whirlwind.libjuju_backend" for r in caplog.records)


# -- verbs ---------------------------------------------------------------------------------------


async def test_add_unit_reaches_active_idle_in_the_view(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    juju = await started(backend_factory, fake_juju)

    name = await juju.add_unit(APP)

    assert name == f"{APP}/3"
    assert [c.version for c in fake_juju.calls_to("Application", "AddUnits")] == [20]
    assert await juju.model.wait_until(lambda m: name in m.units, 2.0)
    await fake_juju.run_until_settled()
    assert await juju.model.wait_until(lambda m: m.is_healthy(name), 2.0)
    assert juju.model.count_healthy(APP) == 4


async def test_add_unit_to_unknown_application_is_not_found(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    juju = await started(backend_factory, fake_juju)

    with pytest.raises(backend.NotFoundError, match="nope"):
        await juju.add_unit("nope")


async def test_destroy_unit_removes_unit_and_its_machine(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    juju = await started(backend_factory, fake_juju)
    victim = f"{APP}/0"
    machine_id = juju.model.units[victim].machine_id
    assert machine_id is not None

    await juju.destroy_unit(victim)
    await fake_juju.run_until_settled()

    gone = await juju.model.wait_until(
        lambda m: victim not in m.units and machine_id not in m.machines, 2.0
    )
    assert gone
    assert victim not in fake_juju.model.units
    assert juju.model.count_healthy(APP) == 2


async def test_destroy_unit_force_sends_max_wait_in_nanoseconds(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    juju = await started(backend_factory, fake_juju)
    victim = f"{APP}/1"
    fake_juju.stuck_dying(victim)

    await juju.destroy_unit(victim, force=True, max_wait=5.0)
    await fake_juju.advance(4.5)
    life_early = fake_juju.model.units[victim].life
    # state/cleanup.go: forced dead after max-wait, removed max-wait later; the cleaner runs
    # a cleanup that is not due yet at its next 30 s tick.
    await fake_juju.advance(30.0)
    life_later = fake_juju.model.units[victim].life
    await fake_juju.advance(35.0)

    assert (life_early, life_later) == ("dying", "dead")
    assert await juju.model.wait_until(lambda m: victim not in m.units, 2.0)


async def test_destroy_unit_unknown_is_not_found(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    juju = await started(backend_factory, fake_juju)

    # Juju: `unit "wsgi-example/42" does not exist`, with no error code.
    with pytest.raises(backend.NotFoundError, match=r'unit "wsgi-example/42" does not exist'):
        await juju.destroy_unit(f"{APP}/42")


async def test_destroy_machine_refused_with_units_then_forced(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    juju = await started(backend_factory, fake_juju)
    unit = juju.model.units[f"{APP}/2"]
    assert unit.machine_id is not None

    with pytest.raises(backend.BackendError, match="has assigned units") as refused:
        await juju.destroy_machine(unit.machine_id)
    await juju.destroy_machine(unit.machine_id, force=True)
    await fake_juju.run_until_settled()

    assert not isinstance(refused.value, backend.NotFoundError)
    assert not refused.value.transient
    assert await juju.model.wait_until(
        lambda m: unit.name not in m.units and unit.machine_id not in m.machines, 2.0
    )
    with pytest.raises(backend.NotFoundError):
        await juju.destroy_machine(unit.machine_id)


async def test_annotations_round_trip_through_a_reconnect(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    juju = await started(backend_factory, fake_juju)
    unit = f"{APP}/1"
    values = {"whirlwind/born": "2025-01-01T00:00:00Z", "whirlwind/op": "7"}

    await juju.set_unit_annotations(unit, values)
    set_at_once = dict(juju.model.get_unit_annotations(unit))
    # A snapshot is served from the watcher store, which learns of the change late.
    await fake_juju.wait_delivered()
    await fake_juju.drop_connections("clean")
    await eventually(lambda: juju.sessions == 2 and juju.connected)

    assert set_at_once == values
    assert fake_juju.model.annotations["unit-wsgi-example-1"] == values
    # The new snapshot replaced the view: what is there now came from the watcher.
    assert dict(juju.model.get_unit_annotations(unit)) == values
    # Juju: `while setting annotations to "unit-...-42": permission denied` (unauthorized).
    with pytest.raises(backend.BackendError, match="permission denied") as refused:
        await juju.set_unit_annotations(f"{APP}/42", values)
    assert not refused.value.transient


async def test_status_poll_sees_lost_unit(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    timings = libjuju_backend.BackendTimings(
        backoff_initial=0.02, backoff_max=0.25, status_poll_interval=0.05
    )
    juju = await started(backend_factory, fake_juju, timings)
    unit = f"{APP}/2"
    assert not juju.model.is_lost(unit)

    fake_juju.lose_unit(unit)

    assert await juju.model.wait_until(lambda m: m.is_lost(unit), 2.0)
    assert not juju.model.is_healthy(unit)
    assert juju.model.count_healthy(APP) == 2
    assert len(fake_juju.calls_to("Client", "FullStatus")) >= 2


async def test_injected_errors_map_to_backend_errors(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    juju = await started(backend_factory, fake_juju)
    fake_juju.call_error("Application", "AddUnits", message="busy", code="try again")
    fake_juju.call_error("Application", "AddUnits", message="boom", code="")

    with pytest.raises(backend.BackendError, match="busy") as transient:
        await juju.add_unit(APP)
    with pytest.raises(backend.BackendError, match="boom") as permanent:
        await juju.add_unit(APP)

    assert type(transient.value) is backend.BackendError
    assert transient.value.transient
    assert type(permanent.value) is backend.BackendError
    assert not permanent.value.transient
    assert juju.connected


async def test_hanging_call_hits_its_deadline_and_connection_stays_usable(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    timings = libjuju_backend.BackendTimings(backoff_initial=0.02, call_timeout=0.3)
    juju = await started(backend_factory, fake_juju, timings)
    fake_juju.set_latency(30.0, "Application", "AddUnits")
    loop = asyncio.get_running_loop()
    began = loop.time()

    with pytest.raises(backend.BackendError, match=r"no answer within 0\.3s") as hung:
        await juju.add_unit(APP)
    elapsed = loop.time() - began
    await juju.set_unit_annotations(f"{APP}/0", {"k": "v"})

    assert hung.value.transient
    assert 0.3 <= elapsed < 1.0
    assert juju.connected


async def test_call_in_flight_when_connection_drops_fails_fast(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    juju = await started(backend_factory, fake_juju)
    fake_juju.set_latency(30.0, "Application", "AddUnits")
    call = asyncio.create_task(juju.add_unit(APP))
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    began = loop.time()

    await fake_juju.drop_connections("abrupt")

    with pytest.raises(backend.NotConnectedError, match=r"Application\.AddUnits"):
        await call
    assert loop.time() - began < 0.5


# -- connection loss ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["abrupt", "clean"])
async def test_dropped_connection_reconnects_with_fresh_snapshot(
    fake_juju: fake_server.FakeJujuController,
    backend_factory: conftest.BackendFactory,
    caplog: pytest.LogCaptureFixture,
    mode: str,
):
    juju = await started(backend_factory, fake_juju)
    caplog.set_level(logging.INFO)

    await fake_juju.drop_connections(mode)
    await eventually(lambda: juju.sessions == 2 and juju.connected)
    name = await juju.add_unit(APP)
    await fake_juju.run_until_settled()

    assert await juju.model.wait_until(lambda m: m.is_healthy(name), 2.0)
    assert len(fake_juju.calls_to("Client", "WatchAll")) == 2
    assert len(fake_juju.calls_to("Client", "FullStatus")) == 2
    # One connection: libjuju's own background reconnect is disabled, nothing leaks.
    assert fake_juju.connection_count == 1
    assert juju.last_error is None
    assert "lost the controller connection" in caplog.text
    # libjuju's own "reconnecting" lines would be false: its reconnect is disabled.
    assert "reconnect" not in " ".join(
        r.getMessage() for r in caplog.records if r.name.startswith("juju.")
    )


async def test_flapping_connection_backs_off_more_each_time(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    timings = libjuju_backend.BackendTimings(
        backoff_initial=0.1, backoff_jitter=0.0, backoff_max=1.0, stable_after=60.0
    )
    juju = await started(backend_factory, fake_juju, timings)
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    for session in (2, 3):
        began = loop.time()
        await fake_juju.drop_connections("abrupt")
        await eventually(lambda s=session: juju.sessions == s and juju.connected)
        gaps.append(loop.time() - began)

    # Sessions shorter than stable_after: 0.2 s then 0.4 s before dialling again.
    assert 0.2 <= gaps[0] < 0.4
    assert 0.4 <= gaps[1] < 0.8


async def test_outage_backs_off_then_reconnects_with_current_view(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    timings = libjuju_backend.BackendTimings(backoff_initial=0.02, backoff_max=0.1)
    juju = await started(backend_factory, fake_juju, timings)
    victim = f"{APP}/0"

    await fake_juju.outage(30.0)
    await eventually(lambda: not juju.connected)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(backend.NotConnectedError):
        await juju.add_unit(APP)
    refused_in = loop.time() - began
    # Change the model behind the agent's back while it cannot see.
    fake_juju.lifecycle.destroy_unit(victim, force=False, max_wait=None)
    await asyncio.sleep(0.4)
    attempts_during_outage = juju.connect_attempts - 1
    error_during_outage = juju.last_error
    await fake_juju.advance(30.0)
    await fake_juju.run_until_settled()
    await eventually(lambda: juju.sessions == 2 and juju.connected)

    assert refused_in < 0.05
    assert isinstance(error_during_outage, backend.BackendError)
    assert error_during_outage.transient
    # 0.4 s of outage with delays 0.02, 0.04, 0.08, 0.1, 0.1 ...: backing off, not spinning.
    assert 2 <= attempts_during_outage <= 10
    assert await juju.model.wait_until(lambda m: victim not in m.units, 2.0)


async def test_calls_before_start_raise_not_connected(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    juju = backend_factory(conftest.backend_settings(fake_juju))

    with pytest.raises(backend.NotConnectedError):
        await juju.destroy_unit(f"{APP}/0")
    with pytest.raises(backend.NotConnectedError):
        await juju.refresh_status()
    assert not juju.connected
    assert fake_juju.calls == []


# -- stopping ------------------------------------------------------------------------------------


async def test_stop_stops_watcher_and_closes_connection(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    juju = await started(backend_factory, fake_juju)
    loop = asyncio.get_running_loop()
    began = loop.time()

    await juju.stop()

    assert loop.time() - began < 1.0
    assert len(fake_juju.calls_to("AllWatcher", "Stop")) == 1
    assert not juju.connected
    await eventually(lambda: fake_juju.connection_count == 0)
    with pytest.raises(backend.NotConnectedError):
        await juju.add_unit(APP)


async def test_stop_is_bounded_when_the_controller_hangs(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    timings = libjuju_backend.BackendTimings(close_timeout=0.2, stop_timeout=1.0)
    juju = await started(backend_factory, fake_juju, timings)
    fake_juju.set_latency(30.0, "AllWatcher", "Stop")
    loop = asyncio.get_running_loop()
    began = loop.time()

    await juju.stop()

    assert loop.time() - began < 1.0
    assert not juju.connected


async def test_stop_while_backing_off_is_quick(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
):
    timings = libjuju_backend.BackendTimings(backoff_initial=30.0, backoff_max=60.0)
    agent_settings = conftest.backend_settings(fake_juju, endpoints=(dead_endpoint(),))
    juju = backend_factory(agent_settings, timings)
    await juju.start()
    await eventually(lambda: juju.last_error is not None)
    loop = asyncio.get_running_loop()
    began = loop.time()

    await juju.stop()

    assert loop.time() - began < 0.5
    assert juju.connect_attempts == 1
    assert "connection failed" in str(juju.last_error)

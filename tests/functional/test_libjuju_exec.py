"""LibjujuBackend.run_on_unit (Action.Run, then Action.Actions) against the fake controller."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from tests.fakejuju import execs as fake_execs
from tests.fakejuju import server as fake_server
from tests.functional import conftest
from whirlwind import backend, libjuju_backend
from whirlwind.chaos import commands

UNIT = "wsgi-example/1"
TIMINGS = dataclasses.replace(conftest.FAST_TIMINGS, exec_poll_interval=0.02)


async def _started(
    backend_factory: conftest.BackendFactory, fake: fake_server.FakeJujuController
) -> libjuju_backend.LibjujuBackend:
    juju = backend_factory(conftest.backend_settings(fake), TIMINGS)
    await juju.start()
    assert await juju.wait_synced(5.0)
    return juju


async def _run_while_advancing(
    fake: fake_server.FakeJujuController, call: asyncio.Task[backend.ExecResult]
) -> None:
    """Move the fake's manual clock a second at a time (bounded) until `call` is done."""
    for _ in range(200):
        if call.done():
            return
        await fake.advance(1.0)
        await asyncio.sleep(0.02)


async def test_exec_is_refused_unless_the_fake_allows_it(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
) -> None:
    juju = await _started(backend_factory, fake_juju)

    with pytest.raises(backend.BackendError, match="unauthorized access") as refused:
        await juju.run_on_unit(UNIT, "echo hi", timeout=5.0)

    assert not refused.value.transient
    assert [(e.unit, e.command, e.allowed) for e in fake_juju.execs.log] == [
        (UNIT, "echo hi", False)
    ]


async def test_a_chaos_script_and_its_revert_show_in_the_fake(
    fake_juju: fake_server.FakeJujuController, backend_factory: conftest.BackendFactory
) -> None:
    fake_juju.set_allow_exec(True)
    juju = await _started(backend_factory, fake_juju)
    unit = juju.model.get_unit(UNIT)
    assert unit is not None
    assert unit.machine_id
    inject = commands.slow_network_inject("5-abc", 600, 200)
    revert = commands.slow_network_revert("5-abc")

    call = asyncio.ensure_future(juju.run_on_unit(UNIT, inject, timeout=10.0))
    await _run_while_advancing(fake_juju, call)
    injected = await call
    slowed = fake_juju.execs.chaos_of(unit.machine_id)["slow-network"]
    call = asyncio.ensure_future(juju.run_on_unit(UNIT, revert, timeout=10.0))
    await _run_while_advancing(fake_juju, call)
    reverted = await call

    assert (injected.code, reverted.code) == (0, 0)
    assert slowed is not None
    assert (slowed["op"], slowed["delay-ms"]) == ("5-abc", 200)
    assert fake_juju.execs.chaos_of(unit.machine_id)["slow-network"] is None
    assert [(e.unit, e.command, e.allowed) for e in fake_juju.execs.log] == [
        (UNIT, inject.splitlines()[0], True),
        (UNIT, revert.splitlines()[0], True),
    ]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("fail", ""),
        ("timeout", "action failed: command cancelled"),
        ("hang", "no result within 2s"),
    ],
)
async def test_exec_faults(
    fake_juju: fake_server.FakeJujuController,
    backend_factory: conftest.BackendFactory,
    mode: str,
    expected: str,
) -> None:
    fake_juju.set_allow_exec(True)
    fake_juju.exec_fault(UNIT, mode)
    juju = await _started(backend_factory, fake_juju)

    call = asyncio.ensure_future(juju.run_on_unit(UNIT, "echo hi", timeout=2.0))
    if mode != "hang":
        await _run_while_advancing(fake_juju, call)

    if mode == "fail":
        result = await call
        assert (result.code, result.stderr) == (1, fake_execs.FAIL_STDERR)
    else:
        with pytest.raises(backend.BackendError, match=expected) as failed:
            await call
        assert failed.value.transient is (mode == "hang")
    # Given up on at the deadline, the action is cancelled: Juju would run it later otherwise.
    cancels = fake_juju.calls_to("Action", "Cancel")
    assert len(cancels) == (1 if mode == "hang" else 0)

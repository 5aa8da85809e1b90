"""Bounded-wait helpers for tests that drive libjuju against the fake."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from juju import model as juju_model
from juju.client import connection as juju_connection

from tests.fakejuju import server as server_mod
from whirlwind import libjuju_backend

# Closes its TLS transport on close: Python 3.10 would warn "unclosed transport" otherwise.
Connection = libjuju_backend.ClosingConnection


async def connect_model(
    controller: server_mod.FakeJujuController, timeout: float = 10.0
) -> juju_model.Model:
    """Connect libjuju's high-level Model with explicit credentials and no retries.

    The test needs the libjuju_model_closes_transports fixture (see fixtures.py).
    """
    model = juju_model.Model()
    await asyncio.wait_for(
        model.connect(**controller.connect_kwargs(), retries=0, retry_backoff=0), timeout
    )
    return model


async def wait_until(
    predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01
) -> None:
    """Poll predicate every interval seconds (real time) until it holds or timeout passes."""

    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - libjuju state has no event to wait on
            await asyncio.sleep(interval)

    await asyncio.wait_for(poll(), timeout)


async def connect(
    controller: server_mod.FakeJujuController, timeout: float = 10.0, **overrides: object
) -> juju_connection.Connection:
    """Open libjuju's low-level model Connection with no retries."""
    kwargs: dict[str, object] = {**controller.connect_kwargs(), **overrides}
    return await asyncio.wait_for(
        Connection.connect(**kwargs, retries=0, retry_backoff=0),  # type: ignore[arg-type]
        timeout,
    )

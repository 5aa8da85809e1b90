"""Bounded-wait helpers for tests that drive libjuju against the fake."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from juju import model as juju_model
from juju.client import connection as juju_connection

from tests.fakejuju import server as server_mod


class Connection(juju_connection.Connection):
    """libjuju's Connection that also closes its TLS transport when it closes.

    On Python 3.10 asyncio does not count an SSL transport as closed when the peer ended
    the TCP connection (as the server does in every websocket closing handshake, drop and
    outage), and websockets' client never closes it itself: it would warn "unclosed
    transport" when collected. Same fix as whirlwind.libjuju_backend._Connection.close.
    """

    async def close(self, to_reconnect: bool = False) -> None:
        """Close like libjuju, then close the websocket's transport (a no-op if closed)."""
        ws = self._ws
        try:
            await super().close(to_reconnect)
        finally:
            if ws is not None:
                ws.transport.close()


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

"""Pytest fixtures: an in-process FakeJujuController on a manual clock, strict contracts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import pytest
import pytest_asyncio
from juju.client import connector as juju_connector

from tests.fakejuju import helpers
from tests.fakejuju import server as server_mod

DEFAULT_APPLICATIONS: Mapping[str, int] = {"wsgi-example": 3, "whirlwind": 1}

ControllerFactory = Callable[..., Awaitable[server_mod.FakeJujuController]]


@pytest_asyncio.fixture
async def fake_juju_factory() -> AsyncIterator[ControllerFactory]:
    """Return a factory of started controllers; stops them and checks contracts at teardown."""
    started: list[server_mod.FakeJujuController] = []

    async def make(
        applications: Mapping[str, int] | None = None, **kwargs: object
    ) -> server_mod.FakeJujuController:
        kwargs.setdefault("admin_api", False)
        controller = server_mod.FakeJujuController(
            DEFAULT_APPLICATIONS if applications is None else applications,
            **kwargs,  # type: ignore[arg-type]
        )
        await controller.start()
        started.append(controller)
        return controller

    yield make
    for controller in started:
        await controller.stop()
    for controller in started:
        controller.raise_contract_violations()


@pytest_asyncio.fixture
async def fake_juju(
    fake_juju_factory: ControllerFactory,
) -> server_mod.FakeJujuController:
    """Return a started controller with wsgi-example=3 and whirlwind=1, manual clock."""
    return await fake_juju_factory()


@pytest.fixture
def libjuju_model_closes_transports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make libjuju's high-level Model open helpers.Connection, which closes its transport.

    Model opens connections no test can reach: its model connection's replacement socket
    when it reconnects, a controller connection inside connect(), and the clean-up after a
    refused login. All of them end in Connection.close(); see helpers.Connection for why
    that must close the transport too (Python 3.10). Tests using helpers.connect_model need
    this fixture.
    """
    monkeypatch.setattr(juju_connector, "Connection", helpers.Connection)

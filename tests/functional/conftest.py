"""Fixtures of the functional suite (the fake controller's own come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest_asyncio

from tests.fakejuju import fixtures as fake_fixtures
from tests.fakejuju import server as fake_server
from whirlwind import libjuju_backend, settings

# -- libjuju backend (used by test_libjuju_backend.py) ------------------------------------------

# Short enough that reconnects take a few tens of milliseconds, long enough to count attempts.
FAST_TIMINGS = libjuju_backend.BackendTimings(
    backoff_initial=0.02,
    backoff_max=0.25,
    stable_after=60.0,
    connect_timeout=5.0,
    snapshot_timeout=5.0,
    call_timeout=2.0,
    status_timeout=2.0,
    status_poll_interval=60.0,
    close_timeout=1.0,
    stop_timeout=3.0,
)

BackendFactory = Callable[..., libjuju_backend.LibjujuBackend]


def backend_settings(
    controller: fake_server.FakeJujuController,
    *,
    endpoints: tuple[str, ...] | None = None,
    password: str | None = None,
    ca_cert: str | None = None,
) -> settings.AgentSettings:
    """AgentSettings that reach `controller`, with any of its connection details overridden."""
    return settings.AgentSettings(
        controller=settings.ControllerSettings(
            endpoints=endpoints or (controller.endpoint,),
            ca_cert=ca_cert or controller.ca_cert,
            username=controller.username,
            password=password or controller.password,
        ),
        model_uuid=controller.model_uuid,
    )


@pytest_asyncio.fixture
async def backend_factory(
    fake_juju_factory: fake_fixtures.ControllerFactory,
) -> AsyncIterator[BackendFactory]:
    """Build (not start) LibjujuBackends with fast timings; stops them before the fakes stop."""
    made: list[libjuju_backend.LibjujuBackend] = []

    def make(
        agent_settings: settings.AgentSettings,
        timings: libjuju_backend.BackendTimings = FAST_TIMINGS,
    ) -> libjuju_backend.LibjujuBackend:
        backend = libjuju_backend.LibjujuBackend(agent_settings, timings=timings)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.stop()

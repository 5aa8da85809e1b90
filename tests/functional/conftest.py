"""Fixtures of the functional suite (the fake controller's own come from tests/conftest.py)."""

from __future__ import annotations

import pathlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio

from tests.fakejuju import fixtures as fake_fixtures
from tests.fakejuju import server as fake_server
from tests.functional import agent_harness
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


# -- the agent (used by test_agent_*.py) ----------------------------------------------------------
# Everything below belongs to the agent's functional tests; helpers live in agent_harness.py.


@pytest.fixture
def agent_dir() -> Iterator[pathlib.Path]:
    """A short private folder (unix socket paths must stay under 108 bytes)."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="ww-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


InProcessAgentFactory = Callable[..., Awaitable[agent_harness.InProcessAgent]]
AgentProcessFactory = Callable[..., agent_harness.AgentProcess]


@pytest_asyncio.fixture
async def agent_factory(
    fake_juju_factory: fake_fixtures.ControllerFactory, agent_dir: pathlib.Path
) -> AsyncIterator[InProcessAgentFactory]:
    """Start in-process agents (engine + libjuju backend); stopped before the fakes stop."""
    started: list[agent_harness.InProcessAgent] = []

    async def make(
        fake: fake_server.FakeJujuController,
        services: tuple[str, ...],
        *,
        seed: int = 1,
        timings: libjuju_backend.BackendTimings = agent_harness.AGENT_TIMINGS,
        **overrides: object,
    ) -> agent_harness.InProcessAgent:
        agent_settings = agent_harness.make_settings(fake, agent_dir, services, **overrides)
        agent = agent_harness.InProcessAgent(agent_settings, seed=seed, timings=timings)
        started.append(agent)
        return await agent.start()

    yield make
    for agent in started:
        await agent.stop()


@pytest_asyncio.fixture
async def agent_process_factory(
    fake_juju_factory: fake_fixtures.ControllerFactory, agent_dir: pathlib.Path
) -> AsyncIterator[AgentProcessFactory]:
    """Build (not start) `python -m whirlwind run` processes; killed before the fakes stop."""
    made: list[agent_harness.AgentProcess] = []

    def make(
        fake: fake_server.FakeJujuController, services: tuple[str, ...], **overrides: object
    ) -> agent_harness.AgentProcess:
        agent_settings = agent_harness.make_settings(fake, agent_dir, services, **overrides)
        agent = agent_harness.AgentProcess(agent_settings, agent_dir)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        await agent.close()

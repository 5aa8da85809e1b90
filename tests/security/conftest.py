"""The security suite drives the real agent and the charm: the other suites' fixtures."""

import pathlib

import pytest

from tests.functional.conftest import (  # noqa: F401
    agent_dir,
    agent_factory,
    agent_process_factory,
    backend_factory,
)
from tests.unit.conftest import ctx, fake_client, fake_workload  # noqa: F401


@pytest.fixture
def socket_path(agent_dir: pathlib.Path) -> pathlib.Path:  # noqa: F811 (the fixture above)
    """A control socket path in a short private folder (unix socket paths: < 108 bytes)."""
    return agent_dir / "control.sock"

"""The security suite drives the real agent and the charm: the other suites' fixtures."""

from tests.functional.conftest import (  # noqa: F401
    agent_dir,
    agent_factory,
    agent_process_factory,
    backend_factory,
)
from tests.unit.conftest import ctx, fake_client, fake_workload  # noqa: F401

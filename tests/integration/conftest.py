"""Skip the whole suite, with a clear reason, when no Juju controller is reachable."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def _controller_problem() -> str | None:
    if shutil.which("juju") is None:
        return "no `juju` client on PATH, so no controller to test against"
    try:
        result = subprocess.run(
            ["juju", "show-controller", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "`juju show-controller` did not answer within 60s"
    if result.returncode != 0:
        return "no bootstrapped Juju controller (`juju show-controller` failed)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test skipped when there is no controller (a skip, not an error)."""
    problem = _controller_problem()
    if problem is None:
        return
    marker = pytest.mark.skip(reason=f"integration suite needs a Juju 3.6 controller: {problem}")
    for item in items:
        item.add_marker(marker)

#!/usr/bin/env python3
"""Whirlwind's one task runner: `python3 dev.py test | demo | lint | bench | integration`.

Needs only python3 with its venv module: it makes its own environments from the lock files.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent
TOOLS = ROOT / ".tools"
VENV = ROOT / ".venv"
UV_VERSION = "0.13.9"
CHARMCRAFT_PROJECT = ROOT / "tools" / "charmcraft"
INTEGRATION_PROJECT = ROOT / "tests" / "integration"


def _run(
    *args: str | os.PathLike[str], cwd: pathlib.Path = ROOT, env: dict[str, str] | None = None
) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


def _uv_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    env.pop("VIRTUAL_ENV", None)
    return env


def _uv() -> pathlib.Path:
    """A pinned uv in .tools/, installed from PyPI on first use."""
    uv = TOOLS / "bin" / "uv"
    marker = TOOLS / f".uv-{UV_VERSION}"
    if not marker.exists():
        if TOOLS.exists():
            shutil.rmtree(TOOLS)
        _run(sys.executable, "-m", "venv", TOOLS)
        _run(TOOLS / "bin" / "python", "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}")
        marker.touch()
    return uv


def _sync(project: pathlib.Path = ROOT) -> pathlib.Path:
    """Create or update a project's environment exactly from its lock file; return its bin/."""
    _run(_uv(), "sync", "--locked", "--python", sys.executable, cwd=project, env=_uv_env())
    return project / ".venv" / "bin"


def lint() -> None:
    """Ruff (lint and format) and pyright over the whole project."""
    bin_dir = _sync()
    _run(bin_dir / "ruff", "check", ".")
    _run(bin_dir / "ruff", "format", "--check", ".")
    _run(bin_dir / "pyright")


def check_charmcraft() -> None:
    """`charmcraft expand-extensions` (charmcraft 4 from PyPI, own env) must accept the project."""
    bin_dir = _sync(CHARMCRAFT_PROJECT)
    env = dict(os.environ)
    env.setdefault("XDG_RUNTIME_DIR", str(ROOT / ".tools"))
    _run(
        bin_dir / "python", ROOT / "tools" / "check_charmcraft.py", bin_dir / "charmcraft", env=env
    )


def test(pytest_args: list[str]) -> None:
    """Everything CI runs: lint, the charmcraft check, then all tests."""
    lint()
    check_charmcraft()
    bin_dir = _sync()
    _run(bin_dir / "pytest", *pytest_args)


def demo(extra: list[str]) -> None:
    """The main job: the real agent against a simulated model (tests/fakejuju)."""
    bin_dir = _sync()
    _run(bin_dir / "python", ROOT / "tools" / "demo.py", *extra)


def bench(extra: list[str]) -> None:
    """Benchmarks: the agent side by side with a naive baseline (see bench/README.md)."""
    bin_dir = _sync()
    _run(bin_dir / "python", "-m", "bench", *extra)


def integration(extra: list[str]) -> None:
    """pytest-operator suite for a real Juju 3.6 controller, in its own environment."""
    bin_dir = _sync(INTEGRATION_PROJECT)
    _run(bin_dir / "pytest", "-c", INTEGRATION_PROJECT / "pytest.ini", INTEGRATION_PROJECT, *extra)


def main() -> None:
    """Parse the task name and run it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("task", choices=["test", "lint", "demo", "bench", "integration"])
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed on to the tool")
    options = parser.parse_args()
    if options.task == "test":
        test(options.args)
    elif options.task == "lint":
        lint()
    elif options.task == "demo":
        demo(options.args)
    elif options.task == "bench":
        bench(options.args)
    else:
        integration(options.args)


if __name__ == "__main__":
    main()

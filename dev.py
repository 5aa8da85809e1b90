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
# The charm's bases run Python 3.10 (22.04) and 3.12 (24.04); the development machines 3.11.
SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12")
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


def _is_usable(exe: str) -> bool:
    """Whether `exe` runs (a pyenv shim exists even for a version that is not selected)."""
    result = subprocess.run([exe, "-c", "import venv"], capture_output=True, check=False)
    return result.returncode == 0


def _other_pythons() -> list[tuple[str, str]]:
    """The other supported Python versions installed here, as (version, interpreter path)."""
    current = f"{sys.version_info.major}.{sys.version_info.minor}"
    pyenv_root = pathlib.Path(os.environ.get("PYENV_ROOT", pathlib.Path.home() / ".pyenv"))
    found: list[tuple[str, str]] = []
    for version in SUPPORTED_PYTHONS:
        if version == current:
            continue
        candidates = [shutil.which(f"python{version}")]
        candidates += [
            str(p) for p in sorted(pyenv_root.glob(f"versions/{version}.*/bin/python3"))
        ]
        usable = [exe for exe in candidates if exe is not None and _is_usable(exe)]
        if usable:
            found.append((version, usable[0]))
        else:
            print(f"python{version} not found: tests on Python {version} skipped", flush=True)
    return found


def _with_workers(pytest_args: list[str]) -> list[str]:
    """Four workers (pytest-xdist; the tests mostly wait on clocks) unless the arguments say."""
    chosen = any(a.startswith(("-n", "--numprocesses", "--dist")) for a in pytest_args)
    if chosen or "no:xdist" in pytest_args or (os.cpu_count() or 1) < 2:
        return pytest_args
    return ["-n", "4", *pytest_args]


def run_tests(pytest_args: list[str], *, other_pythons: bool) -> None:
    """Everything CI runs: lint, the charmcraft check, all tests, again on other Pythons."""
    lint()
    check_charmcraft()
    bin_dir = _sync()
    pytest_args = _with_workers(pytest_args)
    _run(bin_dir / "pytest", *pytest_args)
    if not other_pythons:
        return
    for version, exe in _other_pythons():
        print(f"== the same tests on Python {version} ({exe})", flush=True)
        env = _uv_env()
        env["UV_PROJECT_ENVIRONMENT"] = str(ROOT / f".venv-py{version}")
        _run(_uv(), "sync", "--locked", "--python", exe, env=env)
        _run(
            ROOT / f".venv-py{version}" / "bin" / "pytest", "-p", "no:cacheprovider", *pytest_args
        )


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
    parser.add_argument(
        "--this-python-only",
        action="store_true",
        help="test: skip the runs on the other supported Python versions",
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed on to the tool")
    options = parser.parse_args()
    if options.task == "test":
        # Accept the flag after the task name too (the rest goes to pytest).
        only_this = options.this_python_only or "--this-python-only" in options.args
        pytest_args = [a for a in options.args if a != "--this-python-only"]
        run_tests(pytest_args, other_pythons=not only_this)
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

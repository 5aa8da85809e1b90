#!/usr/bin/env python3
"""Check that charmcraft accepts the project, offline and without LXD.

Usage, from the repository root: `python tools/check_charmcraft.py /path/to/charmcraft`.

Copies the files charmcraft reads into a temporary folder, runs `charmcraft expand-extensions`
there, and checks the expanded project: both platforms, the uv part, and the metadata, config
and actions that charmcraft merged in from their own files. When the charmcraft executable sits
in a Python environment (a PyPI install), that environment's own models also validate
the expanded project, metadata.yaml and config.yaml (expand-extensions alone does not check
option types). Prints one OK line,
or the charmcraft error and exits non-zero.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from typing import Any, NoReturn

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROJECT_FILES = (
    "charmcraft.yaml",
    "metadata.yaml",
    "config.yaml",
    "actions.yaml",
    "pyproject.toml",
    "uv.lock",
)
PROJECT_DIRS = ("src", "lib")
EXPECTED_PLATFORMS = {
    "ubuntu-24.04-amd64": "ubuntu@24.04:amd64",
    "ubuntu-22.04-amd64": "ubuntu@22.04:amd64",
}
JSON_TYPES = {"string", "integer", "number", "boolean", "array", "object"}

# Runs inside charmcraft's own interpreter: parse its output and validate with its models.
VALIDATE = r"""
import json, pathlib, sys
import yaml
from charmcraft.models import config, metadata, project

root = pathlib.Path(sys.argv[1])
expanded = yaml.safe_load(sys.stdin.read())
project.CharmcraftProject.unmarshal(dict(expanded))
meta = yaml.safe_load((root / "metadata.yaml").read_text())
metadata.CharmMetadataLegacy.unmarshal(dict(meta))
config.JujuConfig.model_validate(yaml.safe_load((root / "config.yaml").read_text()))
own = {n: yaml.safe_load((root / f"{n}.yaml").read_text()) for n in ("actions", "config")}
json.dump({"expanded": expanded, "metadata": meta, "own": own}, sys.stdout)
"""


def _fail(message: str) -> NoReturn:
    print(f"check_charmcraft: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def _copy_project(target: pathlib.Path) -> None:
    for name in PROJECT_FILES:
        source = ROOT / name
        if not source.exists():
            _fail(f"{name} is missing")
        shutil.copy2(source, target / name)
    for name in PROJECT_DIRS:
        shutil.copytree(
            ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )


def _environment(home: pathlib.Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "CI": "true",
            "CRAFT_MANAGED_MODE": "",
            "HOME": str(home),
            "XDG_RUNTIME_DIR": env.get("XDG_RUNTIME_DIR") or str(home),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_STATE_HOME": str(home / "state"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "PYTHONWARNINGS": "ignore",
        }
    )
    env.pop("CRAFT_MANAGED_MODE")
    return env


def _run(args: list[str], cwd: pathlib.Path, env: dict[str, str], stdin: str = "") -> str:
    try:
        result = subprocess.run(
            args, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _fail(f"cannot run {args[0]}: {exc}")
    if result.returncode != 0:
        detail = result.stderr or result.stdout
        _fail(f"{' '.join(args[:2])} exited {result.returncode}:\n{detail}")
    return result.stdout


def _charmcraft_python(charmcraft: pathlib.Path) -> pathlib.Path | None:
    """The interpreter of the environment charmcraft is installed in, if it has one."""
    candidate = charmcraft.parent / "python"
    return candidate if candidate.exists() else None


def _check(expanded: dict[str, Any], meta: dict[str, Any], own: dict[str, Any]) -> None:
    """The expanded project against what the project's own files say (all of it merged in)."""
    expected_actions = set(own.get("actions") or {})
    expected_options = set((own.get("config") or {}).get("options") or {})
    if not expected_actions or not expected_options:
        _fail("actions.yaml or config.yaml is empty")
    if expanded.get("type") != "charm":
        _fail("type is not charm")
    if "base" in expanded or "bases" in expanded:
        _fail("use the multi-base platforms form only (no top-level base/bases)")
    platforms = expanded.get("platforms")
    if not isinstance(platforms, dict) or set(platforms) != set(EXPECTED_PLATFORMS):
        _fail(f"platforms should be {sorted(EXPECTED_PLATFORMS)}, got {platforms!r}")
    for name, base in EXPECTED_PLATFORMS.items():
        entry = platforms[name]
        if entry.get("build-on") != [base] or entry.get("build-for") != [base]:
            _fail(f"platform {name} should build on and for {base}, got {entry!r}")
    parts = expanded.get("parts")
    if not isinstance(parts, dict) or parts.get("charm", {}).get("plugin") != "uv":
        _fail("parts.charm must use the uv plugin")
    if expanded.get("name") != meta.get("name") or not expanded.get("summary"):
        _fail("name/summary were not read from metadata.yaml")
    actions = expanded.get("actions")
    if not isinstance(actions, dict) or set(actions) != expected_actions:
        _fail(f"actions from actions.yaml not read: {actions!r}")
    for name, action in actions.items():
        params = action.get("params") or {}
        bad = [p for p, spec in params.items() if spec.get("type") not in JSON_TYPES]
        if bad or action.get("additionalProperties") is not False:
            _fail(f"action {name}: typed params and additionalProperties: false required")
    options = (expanded.get("config") or {}).get("options")
    if not isinstance(options, dict) or set(options) != expected_options:
        _fail(f"config from config.yaml not read: {options!r}")
    requires = meta.get("requires") or {}
    controller = requires.get("controller") if isinstance(requires, dict) else None
    if not isinstance(controller, dict) or controller.get("limit") != 1:
        _fail("metadata.yaml: requires.controller with limit 1 is missing")
    provides = meta.get("provides") or {}
    cos_agent = provides.get("cos-agent") if isinstance(provides, dict) else None
    if (
        not isinstance(cos_agent, dict)
        or cos_agent.get("interface") != "cos_agent"
        or cos_agent.get("limit") != 1
    ):
        _fail("metadata.yaml: provides.cos-agent (interface cos_agent, limit 1) is missing")


def main() -> None:
    """Run the check; exit 0 with one OK line, or non-zero with the error."""
    if len(sys.argv) != 2:
        _fail("usage: python tools/check_charmcraft.py /path/to/charmcraft")
    charmcraft = pathlib.Path(sys.argv[1]).absolute()
    if not charmcraft.exists():
        _fail(f"{charmcraft} does not exist")
    with tempfile.TemporaryDirectory(prefix="check-charmcraft-") as tmp:
        project = pathlib.Path(tmp) / "project"
        home = pathlib.Path(tmp) / "home"
        project.mkdir()
        home.mkdir(mode=0o700)
        _copy_project(project)
        env = _environment(home)
        output = _run([str(charmcraft), "expand-extensions"], project, env)
        version = _run([str(charmcraft), "version"], project, env).strip()
        python = _charmcraft_python(charmcraft)
        if python is None:
            # A snap or other self-contained install: only the generic checks below apply,
            # reading YAML with whatever this interpreter has.
            import yaml

            expanded = yaml.safe_load(output)
            meta = yaml.safe_load((project / "metadata.yaml").read_text())
            own = {
                n: yaml.safe_load((project / f"{n}.yaml").read_text())
                for n in ("actions", "config")
            }
            models = "skipped"
        else:
            reply = _run([str(python), "-c", VALIDATE, str(project)], project, env, stdin=output)
            data = json.loads(reply)
            expanded, meta, own = data["expanded"], data["metadata"], data["own"]
            models = "ok"
        if not isinstance(expanded, dict) or not isinstance(meta, dict):
            _fail("charmcraft expand-extensions did not print a YAML mapping")
        _check(expanded, meta, own)
    print(
        f"check_charmcraft: OK ({version}; platforms {', '.join(EXPECTED_PLATFORMS)}; "
        f"metadata/config/actions read; model validation {models})"
    )


if __name__ == "__main__":
    main()

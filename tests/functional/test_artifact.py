"""The packed charm, as far as this machine allows (no LXD, so no `charmcraft pack`).

Built by tools/build_artifact.py, checked by `charmcraft analyse` (charmcraft 4.5 from
tools/charmcraft), unpacked as Juju unpacks it, and run the way Juju runs it: dispatch's own
interpreter bootstrap, then the charm's Workload renders the systemd unit, and that unit's
command line imports the agent and its dependencies from the artifact alone.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import subprocess
import sys
import zipfile

import pytest

from tests.functional import agent_harness as harness
from tools import build_artifact

CHARMCRAFT = harness.ROOT / "tools" / "charmcraft" / ".venv" / "bin" / "charmcraft"
# charmcraft 4.5's entrypoint linter takes dispatch's last word literally, and in its own
# dispatch template that word is "${dispatch_path}/src/charm.py": it reports an error on
# every charm whose dispatch charmcraft generated. The test checks that entrypoint itself.
ENTRYPOINT_FALSE_POSITIVE = (
    "Cannot find the entrypoint file: '{root}/${{dispatch_path}}/src/charm.py'"
)
BASE_PYTHON = pathlib.Path(sys.base_prefix) / "bin"
AGENT_IMPORTS = (
    "whirlwind.cli",
    "whirlwind.libjuju_backend",
    "juju.client.connection",
    "ops",
    "charmlibs.systemd",
    "yaml",
    "tenacity",
    "charm",
)

pytestmark = pytest.mark.slow


def charmcraft_env(home: pathlib.Path) -> dict[str, str]:
    """Environment for charmcraft: offline, with its state in a private folder."""
    runtime = home / "run"
    runtime.mkdir(mode=0o700, parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRAFT_", "SNAP"))}
    env.update(
        {
            "CI": "true",
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(runtime),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_STATE_HOME": str(home / "state"),
            "XDG_CONFIG_HOME": str(home / "config"),
        }
    )
    return env


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The .charm, dependencies copied from this environment, python3 from this machine."""
    folder = tmp_path_factory.mktemp("artifact")
    return build_artifact.build(folder / "whirlwind.charm", python_home=str(BASE_PYTHON))


@pytest.fixture(scope="module")
def unpacked(artifact: pathlib.Path) -> pathlib.Path:
    """The charm folder as Juju unpacks it (JUJU_CHARM_DIR)."""
    return build_artifact.extract(artifact, artifact.parent / "charm")


@pytest.fixture(scope="module")
def charmcraft() -> pathlib.Path:
    if not CHARMCRAFT.exists():
        pytest.skip(
            f"charmcraft 4.5 is not installed at {CHARMCRAFT}: `python3 dev.py test` (or "
            "`python3 dev.py lint` then its charmcraft check) creates it from tools/charmcraft"
        )
    return CHARMCRAFT


def test_the_layout_is_what_charmcraft_packs(artifact: pathlib.Path, charmcraft: pathlib.Path):
    with zipfile.ZipFile(artifact) as archive:
        names = set(archive.namelist())
        dispatch = archive.getinfo("dispatch")
        dispatch_text = archive.read("dispatch").decode()
    generated = subprocess.run(
        [
            str(charmcraft.parent / "python"),
            "-c",
            "from charmcraft import dispatch; "
            "print(dispatch.DISPATCH_SCRIPT_TEMPLATE.format(entrypoint='src/charm.py'), end='')",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    packages = build_artifact.site_packages(f"{sys.version_info.major}.{sys.version_info.minor}")

    assert dispatch_text == generated
    assert (dispatch.external_attr >> 16) & 0o777 == 0o755
    for name in ("manifest.yaml", "metadata.yaml", "config.yaml", "actions.yaml"):
        assert name in names
    for name in ("src/charm.py", "src/workload.py", "src/whirlwind/__main__.py"):
        assert name in names
    assert "lib/charms/whirlwind/v0/controller_credentials.py" in names
    assert {"venv/pyvenv.cfg", "venv/bin/activate"} <= names
    assert not any(n.startswith("venv/bin/python") for n in names)  # the plugin deletes them
    assert f"{packages}/ops/__init__.py" in names
    assert f"{packages}/juju/client/connection.py" in names
    assert not any("__pycache__" in n for n in names)


def test_charmcraft_analyse_finds_nothing_wrong(
    artifact: pathlib.Path, charmcraft: pathlib.Path, tmp_path: pathlib.Path
):
    result = subprocess.run(
        [str(charmcraft), "analyse", "--format=json", str(artifact)],
        capture_output=True,
        text=True,
        env=charmcraft_env(tmp_path),
        cwd=tmp_path,
        check=False,
        timeout=300,
    )

    findings = json.loads(result.stdout)
    by_name = {f["name"]: f for f in findings}
    problems = [
        f for f in findings if f["check_type"] == "lint" and f["result"] in ("warning", "error")
    ]
    assert result.returncode in (0, 2), result.stderr
    entrypoint = by_name["entrypoint"]
    if entrypoint["result"] == "error":
        root = entrypoint["text"].split("'")[1].split("/${dispatch_path}")[0]
        assert entrypoint["text"] == ENTRYPOINT_FALSE_POSITIVE.format(root=root)
        problems.remove(entrypoint)
    assert problems == []
    assert {f["name"] for f in findings if f["result"] == "ok"} >= {
        "juju-actions",
        "juju-config",
        "metadata",
        "naming-conventions",
        "pip-check",
        "pydeps",
    }


def test_the_entrypoint_dispatch_runs_is_an_executable_ops_charm(unpacked: pathlib.Path):
    last_line = (unpacked / "dispatch").read_text().strip().splitlines()[-1]
    target = shlex.split(last_line)[-1].replace("${dispatch_path}", str(unpacked))

    entrypoint = pathlib.Path(target)
    assert entrypoint == unpacked / "src" / "charm.py"
    assert entrypoint.is_file()
    assert os.access(entrypoint, os.X_OK)
    assert "ops.main(WhirlwindCharm)" in entrypoint.read_text()


def run_as_dispatch(charm_dir: pathlib.Path, bin_dir: pathlib.Path, command: str) -> str:
    """Run charmcraft's dispatch with its last line (the charm) replaced by `command`."""
    lines = (charm_dir / "dispatch").read_text().rstrip("\n").splitlines()
    assert lines[-1].startswith('exec "${python_path}"')
    script = charm_dir / "dispatch-probe"  # next to dispatch: it finds itself with realpath
    script.write_text("\n".join([*lines[:-1], command]) + "\n")
    script.chmod(0o755)
    result = subprocess.run(
        [str(script)],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_unit_file_the_charm_renders_runs_the_agent_from_the_artifact(
    unpacked: pathlib.Path, tmp_path: pathlib.Path
):
    # The machine's python3, as `which python3` finds it for dispatch.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(BASE_PYTHON / f"python{sys.version_info.major}")
    render = (
        'exec "${python_path}" -c "import pathlib, workload; print(workload.Workload('
        "'whirlwind/0', pathlib.Path('${dispatch_path}')).unit_file_content(), end='')\""
    )

    unit_text = run_as_dispatch(unpacked, bin_dir, render)
    unit = {}
    for line in unit_text.splitlines():
        key, _, value = line.partition("=")
        if key in ("ExecStart", "Environment"):
            unit.setdefault(key, []).append(value)
    exec_start = shlex.split(unit["ExecStart"][0])
    environment = dict(item.split("=", 1) for item in unit["Environment"])
    probe = subprocess.run(
        [
            exec_start[0],
            "-c",
            f"import importlib; mods = [importlib.import_module(m) for m in {AGENT_IMPORTS!r}]; "
            "print('\\n'.join(m.__file__ for m in mods))",
        ],
        env={"PATH": "/usr/bin:/bin", **environment},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    version = subprocess.run(
        [exec_start[0], *exec_start[1:3], "--version"],
        env={"PATH": "/usr/bin:/bin", **environment},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    python = pathlib.Path(exec_start[0])
    assert python == unpacked / "venv" / "bin" / "python"
    assert python.is_symlink()  # made by dispatch, as on a unit at its first hook
    assert exec_start[1:4] == ["-m", "whirlwind", "run"]
    pythonpath = [pathlib.Path(p) for p in environment["PYTHONPATH"].split(":")]
    assert pythonpath[0] == unpacked / "src"
    for entry in pythonpath:
        assert entry.is_dir(), entry
        assert entry == unpacked or unpacked in entry.parents, entry
    assert probe.returncode == 0, probe.stderr
    for module_file in probe.stdout.split():
        assert unpacked in pathlib.Path(module_file).parents, module_file
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == build_artifact_version(unpacked)


def build_artifact_version(charm_dir: pathlib.Path) -> str:
    """The agent version in the artifact's source."""
    text = (charm_dir / "src" / "whirlwind" / "__init__.py").read_text()
    return text.split('__version__ = "', 1)[1].split('"', 1)[0]

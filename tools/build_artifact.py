#!/usr/bin/env python3
"""Build a structural .charm laid out as charmcraft 4.5's uv plugin packs it, without LXD.

Usage, from the repository root with the project's environment:

    .venv/bin/python tools/build_artifact.py [--output whirlwind.charm] [--deps copy|stand-in]
        [--base ubuntu@24.04] [--python-home /usr/bin]

The zip holds what `charmcraft pack` puts in a charm built with `plugin: uv`:

    manifest.yaml                   charmcraft version, bases, analysis attributes
    dispatch                        charmcraft 4.5's own dispatch script (0755)
    metadata.yaml config.yaml actions.yaml
    src/ lib/                       copied as the plugin copies them (no __pycache__)
    venv/pyvenv.cfg                 the venv the plugin creates; bin/ keeps only `activate`
    venv/bin/activate               (dispatch links venv/bin/python to python3 at first run)
    venv/lib/pythonX.Y/site-packages/

`--deps copy` (default) fills site-packages with the runtime dependency closure of
pyproject.toml's `[project].dependencies`, copied file by file (RECORD) from the environment
running this script, and checks every version against uv.lock. The compiled extensions are
those of this interpreter, so the artifact is structural: it is for `charmcraft analyse` and
layout tests, not for deployment (`charmcraft pack` on Ubuntu builds the real one).
`--deps stand-in` writes only the dist-info metadata of each dependency and a stub `ops`
package: small and fast, enough for the linters, not for running anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import pathlib
import re
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator

import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHARMCRAFT_VERSION = "4.5.0"  # tools/charmcraft/pyproject.toml pins this one
ENTRYPOINT = "src/charm.py"
PROJECT_FILES = ("metadata.yaml", "config.yaml", "actions.yaml")
CODE_DIRS = ("src", "lib")
# charmcraft/dispatch.py, DISPATCH_SCRIPT_TEMPLATE, in charmcraft 4.5.0 (written by
# create_dispatch() after prime when the charm has no dispatch of its own).
DISPATCH_TEMPLATE = """\
#!/bin/sh
dispatch_path="$(dirname $(realpath $0))"
venv_bin_path="${{dispatch_path}}/venv/bin"
python_path="${{venv_bin_path}}/python"
if [ ! -e "${{python_path}}" ]; then
    mkdir -p "${{venv_bin_path}}"
    ln -s $(which python3) "${{python_path}}"
fi

# Add charm lib and source directories to PYTHONPATH so the charm can import
# libraries and its own modules as expected.
export PYTHONPATH="${{dispatch_path}}/lib:${{dispatch_path}}/src"

# Add the charm's lib and usr/lib directories to LD_LIBRARY_PATH, allowing
# staged packages to be discovered by the dynamic linker.
export LD_LIBRARY_PATH="${{dispatch_path}}/usr/lib:${{dispatch_path}}/lib:${{dispatch_path}}/usr/lib/$(uname -m)-linux-gnu"

exec "${{python_path}}" "${{dispatch_path}}/{entrypoint}"
"""  # noqa: E501 (verbatim)
ACTIVATE = """\
# This file must be used with "source bin/activate" *from bash*
VIRTUAL_ENV="$( cd -- "$( dirname -- "${BASH_SOURCE[0]}" )/.." &> /dev/null && pwd )"
export VIRTUAL_ENV
PATH="$VIRTUAL_ENV/bin:$PATH"
export PATH
"""


class BuildError(Exception):
    """The artifact cannot be built; the message says why."""


@dataclasses.dataclass(frozen=True)
class Dependency:
    """One installed distribution of the runtime closure."""

    name: str
    version: str
    distribution: importlib.metadata.Distribution


def dispatch_text(entrypoint: str = ENTRYPOINT) -> str:
    """The dispatch script charmcraft 4.5 generates for a charm with this entrypoint."""
    return DISPATCH_TEMPLATE.format(entrypoint=entrypoint)


def site_packages(python_version: str) -> str:
    """Where the uv plugin's venv keeps the packages, inside the charm."""
    return f"venv/lib/python{python_version}/site-packages"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements(pyproject: pathlib.Path) -> list[Requirement]:
    """`[project].dependencies` of pyproject.toml (a regex: Python 3.10 has no tomllib)."""
    text = pyproject.read_text(encoding="utf-8")
    match = re.search(r"^\[project\].*?^dependencies\s*=\s*\[(.*?)^\]", text, re.M | re.S)
    if match is None:
        raise BuildError(f"{pyproject}: no [project].dependencies list")
    return [Requirement(item) for item in re.findall(r'"([^"]+)"', match.group(1))]


def locked_versions(lock: pathlib.Path) -> dict[str, str]:
    """Package versions uv.lock pins for this Python.

    Where the resolution forks (e.g. one version for Python < 3.11, another from 3.11), uv
    writes one [[package]] entry per version, each with the `resolution-markers` it is for:
    keep the entry whose markers hold here.
    """
    text = lock.read_text(encoding="utf-8")
    versions: dict[str, str] = {}
    for entry in re.split(r"^\[\[package\]\]\n", text, flags=re.M)[1:]:
        found = re.match(r'name = "([^"]+)"\nversion = "([^"]+)"\n', entry)
        if found is None:
            continue
        forks = re.search(r"^resolution-markers = \[\n((?:    .*\n)*?)\]", entry, re.M)
        if forks is not None and not any(
            Marker(marker).evaluate() for marker in re.findall(r'"([^"]*)"', forks.group(1))
        ):
            continue
        versions[_normalise(found.group(1))] = found.group(2)
    return versions


def resolve_closure(requirements: Iterable[Requirement]) -> list[Dependency]:
    """The installed distributions the requirements need, markers evaluated for this Python."""
    found: dict[str, Dependency] = {}
    pending = list(requirements)
    while pending:
        requirement = pending.pop()
        key = _normalise(requirement.name)
        if key in found:
            continue
        try:
            distribution = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            raise BuildError(f"{requirement.name} is not installed in {sys.prefix}") from None
        if not requirement.specifier.contains(distribution.version, prereleases=True):
            raise BuildError(
                f"{requirement.name} {distribution.version} does not match {requirement}"
            )
        found[key] = Dependency(key, distribution.version, distribution)
        for text in distribution.requires or []:
            child = Requirement(text)
            if child.marker is None or child.marker.evaluate({"extra": ""}):
                pending.append(child)
    return sorted(found.values(), key=lambda d: d.name)


def _dependency_files(dependency: Dependency) -> Iterator[tuple[pathlib.Path, str]]:
    """(source file, path relative to site-packages) for every installed file inside it."""
    for item in dependency.distribution.files or []:
        relative = pathlib.PurePosixPath(str(item))
        if (
            relative.parts[0] == ".."
            or relative.suffix == ".pyc"
            or "__pycache__" in relative.parts
        ):
            continue  # console scripts in bin/ (the plugin deletes them) and bytecode
        source = pathlib.Path(str(item.locate()))
        if source.is_file():
            yield source, str(relative)


def _stand_in_files(dependency: Dependency) -> Iterator[tuple[str, str]]:
    """(content, path relative to site-packages): metadata only, plus a stub `ops`."""
    files = dependency.distribution.files or []
    info = next((f.parent for f in files if f.name == "METADATA"), None)
    if info is None:
        raise BuildError(f"{dependency.name}: no METADATA among its installed files")
    yield dependency.distribution.read_text("METADATA") or "", f"{info}/METADATA"
    if dependency.name == "ops":
        yield '"""Stand-in for the ops package (structural artifact only)."""\n', "ops/__init__.py"


def _code_files(directory: pathlib.Path) -> Iterator[pathlib.Path]:
    for path in sorted(directory.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path


def manifest_text(base: str, architecture: str, started_at: datetime.datetime) -> str:
    """manifest.yaml as charmcraft 4.5 writes it for one platform of a multi-base charm.

    The attributes are what its own linters find in a uv-plugin charm: "unknown", because
    they look for the entrypoint in dispatch's last word (`${dispatch_path}/src/charm.py`
    in its own template) and for ops in `venv/ops` (the uv venv has it in site-packages).
    """
    name, channel = base.split("@", 1)
    manifest = {
        "analysis": {
            "attributes": [
                {"name": "language", "result": "unknown"},
                {"name": "framework", "result": "unknown"},
            ]
        },
        "bases": [{"architectures": [architecture], "channel": channel, "name": name}],
        "charmcraft-started-at": started_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "charmcraft-version": CHARMCRAFT_VERSION,
    }
    return yaml.safe_dump(manifest, sort_keys=True)


def pyvenv_cfg(python_home: str, version: str) -> str:
    """The pyvenv.cfg of the venv the uv plugin creates (`uv venv --relocatable`)."""
    return (
        f"home = {python_home}\n"
        "implementation = CPython\n"
        f"version_info = {version}\n"
        "include-system-site-packages = false\n"
        "relocatable = true\n"
    )


def build(
    output: pathlib.Path,
    *,
    deps: str = "copy",
    base: str = "ubuntu@24.04",
    architecture: str = "amd64",
    python_home: str = "/usr/bin",
    root: pathlib.Path = ROOT,
) -> pathlib.Path:
    """Write the .charm zip to `output` and return it."""
    closure = resolve_closure(runtime_requirements(root / "pyproject.toml"))
    locked = locked_versions(root / "uv.lock")
    for dependency in closure:
        if locked.get(dependency.name) != dependency.version:
            raise BuildError(
                f"{dependency.name} {dependency.version} is installed but uv.lock pins "
                f"{locked.get(dependency.name)}; run `python3 dev.py lint` to sync"
            )
    major_minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    packages = site_packages(major_minor)
    version = ".".join(str(n) for n in sys.version_info[:3])
    now = datetime.datetime.now(datetime.timezone.utc)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=output.parent, suffix=".part", delete=False) as tmp:
        partial = pathlib.Path(tmp.name)
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            _write(z, "manifest.yaml", manifest_text(base, architecture, now))
            _write(z, "dispatch", dispatch_text(), mode=0o755)
            for name in PROJECT_FILES:
                z.write(root / name, name)
            for directory in CODE_DIRS:
                for path in _code_files(root / directory):
                    z.write(path, str(path.relative_to(root)))
            _write(z, "venv/pyvenv.cfg", pyvenv_cfg(python_home, version))
            _write(z, "venv/bin/activate", ACTIVATE)
            for dependency in closure:
                if deps == "copy":
                    for source, relative in _dependency_files(dependency):
                        z.write(source, f"{packages}/{relative}")
                else:
                    for content, relative in _stand_in_files(dependency):
                        _write(z, f"{packages}/{relative}", content)
        partial.replace(output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return output


def _write(archive: zipfile.ZipFile, name: str, content: str, mode: int = 0o644) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100000 | mode) << 16  # a regular file with these permissions
    archive.writestr(info, content)


def extract(artifact: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """Unpack a .charm as Juju does, keeping the permission bits (dispatch stays executable)."""
    with zipfile.ZipFile(artifact) as archive:
        for info in archive.infolist():
            path = pathlib.Path(archive.extract(info, target))
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                path.chmod(mode)
    return target


def main(argv: list[str] | None = None) -> int:
    """Build the artifact; print its path and size."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, default=ROOT / "build" / "whirlwind.charm")
    parser.add_argument("--deps", choices=("copy", "stand-in"), default="copy")
    parser.add_argument("--base", default="ubuntu@24.04")
    parser.add_argument("--architecture", default="amd64")
    parser.add_argument(
        "--python-home",
        default="/usr/bin",
        help="pyvenv.cfg home: where python3 lives on the machine that runs the charm",
    )
    args = parser.parse_args(argv)
    try:
        path = build(
            args.output,
            deps=args.deps,
            base=args.base,
            architecture=args.architecture,
            python_home=args.python_home,
        )
    except BuildError as exc:
        print(f"build_artifact: {exc}", file=sys.stderr)
        return 1
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

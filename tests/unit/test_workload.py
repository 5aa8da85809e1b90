"""workload.py with charmlibs.systemd faked and every file in a temporary folder."""

from __future__ import annotations

import logging
import os
import pathlib
import shlex
import stat
import subprocess
from collections.abc import Iterator

import pytest
from charmlibs import systemd

import workload
from tests.unit.conftest import CA_CERT, MODEL_UUID, PASSWORD, tmp_paths
from whirlwind import settings


class FakeSystemd:
    """Stands in for charmlibs.systemd: records calls, keeps which units are active."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.active: set[str] = set()
        self.fail_on: set[str] = set()

    @property
    def running(self) -> bool:
        """Whether the agent's service is active."""
        return workload.SERVICE_NAME in self.active

    @running.setter
    def running(self, value: bool) -> None:
        (self.active.add if value else self.active.discard)(workload.SERVICE_NAME)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("start", "stop", "restart", "enable", "disable"):
            monkeypatch.setattr(systemd, f"service_{name}", self._command(name))
        monkeypatch.setattr(systemd, "service_reload", self._reload)
        monkeypatch.setattr(systemd, "service_running", self._running)
        monkeypatch.setattr(systemd, "daemon_reload", self._daemon_reload)

    def _command(self, name: str):
        def command(*args: str) -> bool:
            self.calls.append((name, *args))
            if name in self.fail_on:
                raise systemd.SystemdError(f"systemctl {name} failed")
            if name in ("start", "restart"):
                self.active.update(args)
            if name == "stop":
                self.active.difference_update(args)
            return True

        return command

    def _reload(self, service_name: str, restart_on_failure: bool = False) -> bool:
        self.calls.append(("reload", service_name))
        return True

    def _running(self, service_name: str) -> bool:
        return service_name in self.active

    def _daemon_reload(self) -> bool:
        self.calls.append(("daemon-reload",))
        return True

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]


@pytest.fixture
def fake_systemd(monkeypatch: pytest.MonkeyPatch, no_real_systemctl: None) -> FakeSystemd:
    fake = FakeSystemd()
    fake.install(monkeypatch)
    return fake


@pytest.fixture
def charm_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "charm"
    for sub in ("src", "lib", "venv/lib/python3.12/site-packages"):
        (root / sub).mkdir(parents=True)
    return root


@pytest.fixture
def machine(tmp_path: pathlib.Path, charm_dir: pathlib.Path) -> workload.Workload:
    return workload.Workload(
        "whirlwind/0",
        charm_dir,
        paths=tmp_paths(tmp_path),
        python="/charm/venv/bin/python",
        sys_path=[
            str(charm_dir / "src"),
            str(charm_dir / "lib"),
            str(charm_dir / "venv/lib/python3.12/site-packages"),
            "/usr/lib/python312.zip",
            "/usr/lib/python3.12",
        ],
    )


OP_KEY = "the-operation-signing-key-0f1e"


def agent_settings(**overrides: object) -> settings.AgentSettings:
    kwargs: dict[str, object] = {
        "controller": settings.ControllerSettings(
            endpoints=("10.0.0.1:17070",), ca_cert=CA_CERT, username="whirlwind", password=PASSWORD
        ),
        "model_uuid": MODEL_UUID,
        "services": ("wsgi-example",),
        "own_application": "whirlwind",
        "paused": False,
        "op_key": OP_KEY,
    }
    kwargs.update(overrides)
    return settings.AgentSettings(**kwargs)  # type: ignore[arg-type]


def mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_unit_file_runs_the_agent_with_the_charms_interpreter_and_paths(
    machine: workload.Workload, charm_dir: pathlib.Path, tmp_path: pathlib.Path
):
    text = machine.unit_file_content()

    settings_file = tmp_path / "etc/whirlwind/settings.yaml"
    assert f"ExecStart=/charm/venv/bin/python -m whirlwind run --config {settings_file}\n" in text
    pythonpath = ":".join(
        str(charm_dir.resolve() / p) for p in ("src", "lib", "venv/lib/python3.12/site-packages")
    )
    assert f"Environment=PYTHONPATH={pythonpath}\n" in text
    for line in (
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartSec=10",
        "StartLimitIntervalSec=600",
        "StartLimitBurst=5",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ReadWritePaths={tmp_path / 'var/lib/whirlwind'}",
        "RuntimeDirectory=whirlwind",
        "RuntimeDirectoryMode=0700",
        # /var/log/whirlwind: made by systemd, writable despite ProtectSystem=strict, root only.
        "LogsDirectory=whirlwind",
        "LogsDirectoryMode=0700",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "PrivateMounts=yes",
        "ProtectProc=invisible",
        "ProcSubset=pid",
        "RemoveIPC=yes",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "SystemCallErrorNumber=EPERM",
        "MemoryMax=1G",
        "TasksMax=64",
        "LimitNOFILE=1024",
        "CapabilityBoundingSet=",
        "WantedBy=multi-user.target",
    ):
        assert f"\n{line}\n" in text, line
    # Start limits belong to [Unit], everything the process runs with to [Service].
    assert text.index("StartLimitBurst") < text.index("[Service]") < text.index("ExecStart")


def test_unit_file_hides_juju_but_the_charm_folder(
    machine: workload.Workload, charm_dir: pathlib.Path
):
    text = machine.unit_file_content()

    # Every agent's agent.conf (API passwords), the machine agent, the tools: an empty
    # read-only tmpfs; only this unit's charm folder (interpreter and code) is bound back.
    assert "\nTemporaryFileSystem=/var/lib/juju:ro\n" in text
    assert f"\nBindReadOnlyPaths={charm_dir.resolve()}\n" in text
    assert "\nInaccessiblePaths=-/var/log/juju\n" in text
    assert text.count("BindReadOnlyPaths=") == 1
    assert "BindPaths=" not in text


def test_the_charms_interpreter_and_import_path_are_inside_the_bound_folder(
    tmp_path: pathlib.Path,
):
    charm = pathlib.Path("/var/lib/juju/agents/unit-whirlwind-0/charm")
    entries = (str(charm / "src"), str(charm / "lib"), str(charm / "venv/lib/python3.12/x"))

    text = workload.render_unit_file(
        str(charm / "venv/bin/python"), entries, tmp_paths(tmp_path), charm_dir=charm
    )

    assert f"\nBindReadOnlyPaths={charm}\n" in text
    assert f"\nExecStart={charm}/venv/bin/python -m whirlwind run" in text
    assert f"\nEnvironment=PYTHONPATH={':'.join(entries)}\n" in text


def test_pythonpath_keeps_only_entries_inside_the_charm(charm_dir: pathlib.Path):
    entries = workload.charm_pythonpath(
        charm_dir, ["", str(charm_dir / "lib"), "/usr/lib/python3.12", str(charm_dir / "lib")]
    )

    assert entries == (str(charm_dir.resolve() / "src"), str(charm_dir.resolve() / "lib"))


def test_default_pythonpath_comes_from_sys_path(tmp_path: pathlib.Path):
    here = pathlib.Path(workload.__file__).resolve().parent.parent

    machine = workload.Workload("whirlwind/0", here, paths=tmp_paths(tmp_path))

    assert f"PYTHONPATH={here / 'src'}:" in machine.unit_file_content()


def test_configure_writes_files_with_modes_and_no_password_in_settings(
    machine: workload.Workload, fake_systemd: FakeSystemd
):
    changed = machine.configure(agent_settings())

    paths = machine.paths
    assert changed == workload.Changed(unit_file=True, settings=True, status_units=True)
    assert mode(paths.settings_file) == 0o644
    assert mode(paths.credentials_file) == 0o600
    assert mode(paths.unit_file) == 0o644
    assert mode(paths.status_path_file) == 0o644
    assert mode(paths.status_service_file) == 0o644
    assert paths.credentials_file.stat().st_uid == os.geteuid()
    assert paths.credentials_file.read_text() == PASSWORD + "\n"
    assert mode(paths.op_key_file) == 0o600
    assert paths.op_key_file.read_text() == OP_KEY + "\n"
    for secret in (PASSWORD, OP_KEY):
        assert secret not in paths.settings_file.read_text()
        assert secret not in paths.unit_file.read_text()
        assert secret not in paths.status_service_file.read_text()
    loaded = settings.load_settings(paths.settings_file)
    assert loaded.controller.password == PASSWORD
    assert loaded.op_key == OP_KEY
    assert loaded.paused is False
    assert loaded.own_application == "whirlwind"
    assert paths.lib_dir.is_dir()
    assert fake_systemd.names() == ["daemon-reload"]


@pytest.fixture(params=[0o077, 0o000], ids=["umask-077", "umask-000"])
def hook_umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under the umask a hook might have, restrictive or permissive."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_file_modes_do_not_depend_on_the_hooks_umask(
    machine: workload.Workload, fake_systemd: FakeSystemd, hook_umask: int
):
    machine.configure(agent_settings())

    paths = machine.paths
    assert mode(paths.etc_dir) == 0o755
    assert mode(paths.settings_file) == 0o644
    assert mode(paths.credentials_file) == 0o600
    assert mode(paths.unit_file) == 0o644


@pytest.mark.parametrize("found", [0o700, 0o777, 0o750], ids=["0700", "0777", "0750"])
def test_configure_repairs_the_mode_of_an_existing_settings_folder(
    machine: workload.Workload, fake_systemd: FakeSystemd, hook_umask: int, found: int
):
    machine.paths.etc_dir.mkdir(parents=True)
    os.chmod(machine.paths.etc_dir, found)

    machine.configure(agent_settings())

    assert mode(machine.paths.etc_dir) == 0o755
    assert mode(machine.paths.credentials_file) == 0o600


def test_configure_again_changes_nothing(machine: workload.Workload, fake_systemd: FakeSystemd):
    machine.configure(agent_settings())
    inode = machine.paths.settings_file.stat().st_ino

    changed = machine.configure(agent_settings())

    assert changed == workload.Changed(unit_file=False, settings=False)
    assert machine.paths.settings_file.stat().st_ino == inode
    assert fake_systemd.names() == ["daemon-reload"]


def test_changed_settings_are_replaced_atomically(
    machine: workload.Workload, fake_systemd: FakeSystemd
):
    machine.configure(agent_settings())
    inode = machine.paths.settings_file.stat().st_ino

    changed = machine.configure(agent_settings(paused=True))

    assert changed == workload.Changed(unit_file=False, settings=True)
    # A new inode: the file was renamed into place, never rewritten where it stood.
    assert machine.paths.settings_file.stat().st_ino != inode
    assert settings.load_settings(machine.paths.settings_file).paused is True
    assert not list(machine.paths.etc_dir.glob(".*"))


def test_a_new_password_alone_counts_as_a_settings_change(
    machine: workload.Workload, fake_systemd: FakeSystemd
):
    machine.configure(agent_settings())
    new = settings.ControllerSettings(("10.0.0.1:17070",), CA_CERT, "whirlwind", "other-password")

    changed = machine.configure(agent_settings(controller=new))

    assert changed == workload.Changed(unit_file=False, settings=True)
    assert machine.paths.credentials_file.read_text() == "other-password\n"
    assert mode(machine.paths.credentials_file) == 0o600


def test_ensure_running_starts_a_stopped_agent(
    machine: workload.Workload, fake_systemd: FakeSystemd
):
    result = machine.ensure_running(workload.Changed(unit_file=True, settings=True))

    assert result is workload.StartResult.STARTED
    assert fake_systemd.calls == [
        ("enable", "whirlwind-agent"),
        ("start", "whirlwind-agent"),
        ("enable", "whirlwind-status.path"),
        ("start", "whirlwind-status.path"),
    ]
    assert "whirlwind-status.service" not in fake_systemd.active  # the path unit starts it


@pytest.mark.parametrize(
    ("changed", "restart", "expected", "command"),
    [
        (workload.Changed(unit_file=True), False, workload.StartResult.RESTARTED, "restart"),
        (workload.Changed(settings=True), False, workload.StartResult.RELOADED, "reload"),
        (workload.Changed(), True, workload.StartResult.RESTARTED, "restart"),
        (
            workload.Changed(unit_file=True, settings=True),
            False,
            workload.StartResult.RESTARTED,
            "restart",
        ),
        (workload.Changed(), False, workload.StartResult.UNCHANGED, None),
    ],
)
def test_reload_or_restart_a_running_agent(
    machine: workload.Workload,
    fake_systemd: FakeSystemd,
    changed: workload.Changed,
    restart: bool,
    expected: workload.StartResult,
    command: str | None,
):
    fake_systemd.running = True

    result = machine.ensure_running(changed, restart=restart)

    assert result is expected
    commands = [c[0] for c in fake_systemd.calls if c[0] != "enable" and c[1] == "whirlwind-agent"]
    assert commands == ([command] if command else [])


def test_a_systemd_failure_becomes_a_workload_error(
    machine: workload.Workload, fake_systemd: FakeSystemd
):
    fake_systemd.fail_on.add("start")

    with pytest.raises(workload.WorkloadError, match="cannot start whirlwind-agent"):
        machine.ensure_running(workload.Changed())


def test_stop_and_disable_without_unit_file_does_nothing(
    machine: workload.Workload, fake_systemd: FakeSystemd
):
    assert machine.stop_and_disable() is False
    assert fake_systemd.calls == []


def test_stop_and_disable_a_running_agent(machine: workload.Workload, fake_systemd: FakeSystemd):
    machine.configure(agent_settings())
    fake_systemd.running = True
    fake_systemd.calls.clear()

    assert machine.stop_and_disable() is True

    assert fake_systemd.calls == [
        ("stop", "whirlwind-agent"),
        ("disable", "whirlwind-agent"),
        ("stop", "whirlwind-status.path"),
        ("disable", "whirlwind-status.path"),
    ]
    assert not machine.is_running()


def test_remove_credentials_deletes_password_and_settings(
    machine: workload.Workload, fake_systemd: FakeSystemd
):
    machine.configure(agent_settings())

    assert machine.remove_credentials() is True

    assert not machine.paths.credentials_file.exists()
    assert not machine.paths.settings_file.exists()
    assert machine.paths.unit_file.exists()
    assert machine.remove_credentials() is False


def test_remove_deletes_everything_but_the_state_dir(
    machine: workload.Workload, fake_systemd: FakeSystemd
):
    machine.configure(agent_settings())
    machine.paths.state_dir.mkdir(parents=True)
    (machine.paths.state_dir / "journal.sqlite").write_text("history")
    fake_systemd.running = True
    fake_systemd.calls.clear()

    machine.remove()

    assert fake_systemd.names() == ["stop", "disable", "stop", "disable", "daemon-reload"]
    assert not machine.paths.unit_file.exists()
    assert not machine.paths.status_path_file.exists()
    assert not machine.paths.status_service_file.exists()
    assert not machine.paths.settings_file.exists()
    assert not machine.paths.credentials_file.exists()
    assert not machine.paths.etc_dir.exists()
    assert (machine.paths.state_dir / "journal.sqlite").read_text() == "history"


def test_remove_when_nothing_was_installed(machine: workload.Workload, fake_systemd: FakeSystemd):
    machine.remove()

    assert fake_systemd.calls == []


# -- the status trigger: path unit and update-status service ---------------------------------


def _directives(text: str) -> dict[str, list[str]]:
    """`Key=value` lines by key, in order (comments and sections left out)."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith(("#", "[")):
            values.setdefault(key, []).append(value)
    return values


def _exec_start(text: str) -> list[str]:
    """ExecStart as the argv systemd runs: `$$` is a literal `$`, single quotes group."""
    (value,) = _directives(text)["ExecStart"]
    return shlex.split(value.replace("$$", "$"))


def test_status_path_unit_watches_the_agents_trigger_file(
    machine: workload.Workload, tmp_path: pathlib.Path
):
    text = machine.status_unit_contents()[machine.paths.status_path_file]

    trigger = tmp_path / "var/lib/whirlwind/state/status-changed"
    assert machine.paths.status_trigger == trigger
    values = _directives(text)
    assert values["PathChanged"] == [str(trigger)]
    assert values["Unit"] == ["whirlwind-status.service"]
    assert values["WantedBy"] == ["multi-user.target"]
    assert set(values) == {"Description", "PathChanged", "Unit", "WantedBy"}
    assert text.index("[Path]") < text.index("PathChanged") < text.index("[Install]")


def test_status_service_runs_update_status_of_this_unit_through_juju_exec(
    tmp_path: pathlib.Path, charm_dir: pathlib.Path
):
    machine = workload.Workload("whirlwind/7", charm_dir, paths=tmp_paths(tmp_path))

    text = machine.status_unit_contents()[machine.paths.status_service_file]

    values = _directives(text)
    assert values["Type"] == ["oneshot"]
    assert values["TimeoutStartSec"] == ["120"]
    assert values["StartLimitIntervalSec"] == ["0"]
    assert text.index("StartLimitIntervalSec") < text.index("[Service]")
    argv = _exec_start(text)
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[3:] == [
        str(tmp_path / "var/lib/whirlwind/state/status-changed"),
        "whirlwind/7",
        "/usr/bin/juju-exec",
    ]
    assert '"$2" -u "$1" -- "JUJU_DISPATCH_PATH=hooks/update-status ./dispatch"' in argv[2]
    # juju-exec must reach the unit agent's socket under /var/lib/juju/agents/unit-*/.
    for hiding in ("InaccessiblePaths", "TemporaryFileSystem", "BindReadOnlyPaths"):
        assert hiding not in values
    assert "[Install]" not in text  # only the path unit starts it


FAKE_JUJU_EXEC = """#!/bin/sh
# Records its arguments; touches the trigger during the first $TOUCHES runs (the agent
# moving on while update-status runs); exits with $FAIL_WITH.
echo "$*" >> "$LOG"
runs=$(wc -l < "$LOG")
if [ "$runs" -le "$TOUCHES" ]; then echo "run $runs" > "$TRIGGER"; fi
exit "$FAIL_WITH"
"""


@pytest.mark.parametrize(
    ("touches", "fail_with", "runs", "code"),
    [
        (0, 0, 1, 0),  # nothing changed during the run: once
        (2, 0, 3, 0),  # changed during two runs: again until a run saw no change
        (9, 0, workload.STATUS_ROUNDS, 0),  # keeps changing: bounded, the next touch restarts
        (2, 3, 1, 3),  # juju-exec failed (no unit agent, timeout): its exit code, no retry
    ],
)
def test_status_service_runs_update_status_again_while_the_trigger_changes(
    tmp_path: pathlib.Path, touches: int, fail_with: int, runs: int, code: int
):
    fake = tmp_path / "juju-exec"
    fake.write_text(FAKE_JUJU_EXEC)
    fake.chmod(0o755)
    paths = tmp_paths(tmp_path)
    paths.state_dir.mkdir(parents=True)
    paths.status_trigger.write_text("touched by the agent\n")
    log = tmp_path / "calls.log"
    text = workload.render_status_service_unit("whirlwind/0", paths, juju_exec=str(fake))

    result = subprocess.run(
        _exec_start(text),
        env={
            "PATH": "/usr/bin:/bin",
            "LOG": str(log),
            "TRIGGER": str(paths.status_trigger),
            "TOUCHES": str(touches),
            "FAIL_WITH": str(fail_with),
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == code, result.stderr
    expected = "-u whirlwind/0 -- JUJU_DISPATCH_PATH=hooks/update-status ./dispatch"
    assert log.read_text().splitlines() == [expected] * runs


def test_status_service_copes_without_a_trigger_file(tmp_path: pathlib.Path):
    fake = tmp_path / "juju-exec"
    fake.write_text(FAKE_JUJU_EXEC)
    fake.chmod(0o755)
    paths = tmp_paths(tmp_path)
    text = workload.render_status_service_unit("whirlwind/0", paths, juju_exec=str(fake))
    env = {"PATH": "/usr/bin:/bin", "LOG": str(tmp_path / "calls.log"), "TOUCHES": "0"}

    result = subprocess.run(
        _exec_start(text),
        env={**env, "TRIGGER": str(tmp_path / "elsewhere"), "FAIL_WITH": "0"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "calls.log").read_text().splitlines()) == 1


def test_new_status_units_restart_a_running_path_unit(
    machine: workload.Workload, fake_systemd: FakeSystemd
):
    machine.configure(agent_settings())
    fake_systemd.active |= {"whirlwind-agent", "whirlwind-status.path"}
    fake_systemd.calls.clear()
    machine.paths.status_path_file.write_text("# an older revision's\n")

    changed = machine.configure(agent_settings())
    result = machine.ensure_running(changed)

    assert changed == workload.Changed(status_units=True)
    assert result is workload.StartResult.UNCHANGED  # the agent keeps running
    assert fake_systemd.calls == [
        ("daemon-reload",),
        ("enable", "whirlwind-agent"),
        ("enable", "whirlwind-status.path"),
        ("restart", "whirlwind-status.path"),
    ]


def test_a_running_path_unit_is_left_alone(machine: workload.Workload, fake_systemd: FakeSystemd):
    fake_systemd.active |= {"whirlwind-agent", "whirlwind-status.path"}

    machine.ensure_running(workload.Changed(), restart=True)

    assert ("restart", "whirlwind-agent") in fake_systemd.calls
    assert [c for c in fake_systemd.calls if c[1:] == ("whirlwind-status.path",)] == [
        ("enable", "whirlwind-status.path")
    ]


def test_a_path_unit_that_fails_to_start_does_not_stop_the_agent(
    machine: workload.Workload, fake_systemd: FakeSystemd, caplog: pytest.LogCaptureFixture
):
    fake_systemd.running = True
    fake_systemd.fail_on.add("start")

    with caplog.at_level(logging.WARNING, logger="workload"):
        result = machine.ensure_running(workload.Changed())

    assert result is workload.StartResult.UNCHANGED
    assert "cannot start whirlwind-status.path" in caplog.text


def test_stop_and_disable_an_agent_installed_before_the_status_units(
    machine: workload.Workload, fake_systemd: FakeSystemd
):
    machine.configure(agent_settings())
    machine.paths.status_path_file.unlink()
    machine.paths.status_service_file.unlink()
    fake_systemd.calls.clear()

    assert machine.stop_and_disable() is False

    assert fake_systemd.calls == [("disable", "whirlwind-agent")]


def test_read_agent_controller_info(machine: workload.Workload, tmp_path: pathlib.Path):
    conf = tmp_path / "var/lib/juju/agents/unit-whirlwind-0/agent.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        "tag: unit-whirlwind-0\n"
        "apiaddresses:\n- 10.0.0.5:17070\n- '[fd42::5]:17070'\n"
        f"cacert: |\n  {CA_CERT.strip().replace(chr(10), chr(10) + '  ')}\n"
        "apipassword: not-for-us\n"
    )

    info = machine.read_agent_controller_info()

    assert info == workload.AgentControllerInfo(
        endpoints=("10.0.0.5:17070", "[fd42::5]:17070"), ca_cert=CA_CERT
    )


@pytest.mark.parametrize("content", [None, "::: not yaml", "- a list", "other: 1\n"])
def test_read_agent_controller_info_degrades(
    machine: workload.Workload, tmp_path: pathlib.Path, content: str | None
):
    conf = tmp_path / "var/lib/juju/agents/unit-whirlwind-0/agent.conf"
    if content is not None:
        conf.parent.mkdir(parents=True)
        conf.write_text(content)

    info = machine.read_agent_controller_info()

    assert info is None or info == workload.AgentControllerInfo(endpoints=(), ca_cert=None)


def test_default_paths_are_the_real_ones():
    paths = workload.WorkloadPaths()

    assert paths.settings_file == pathlib.Path("/etc/whirlwind/settings.yaml")
    assert paths.credentials_file == pathlib.Path("/etc/whirlwind/credentials")
    assert paths.state_dir == pathlib.Path("/var/lib/whirlwind/state")
    assert paths.log_file == pathlib.Path("/var/log/whirlwind/agent.log")
    assert paths.log_dir == pathlib.Path("/var/log") / workload.LOGS_DIRECTORY
    assert paths.unit_file == pathlib.Path("/etc/systemd/system/whirlwind-agent.service")
    assert paths.status_trigger == pathlib.Path("/var/lib/whirlwind/state/status-changed")
    assert paths.status_path_file == pathlib.Path("/etc/systemd/system/whirlwind-status.path")
    assert paths.status_service_file == pathlib.Path(
        "/etc/systemd/system/whirlwind-status.service"
    )
    assert paths.agent_conf("whirlwind/3") == pathlib.Path(
        "/var/lib/juju/agents/unit-whirlwind-3/agent.conf"
    )
    assert pathlib.Path("/run/whirlwind/control.sock") == workload.CONTROL_SOCKET

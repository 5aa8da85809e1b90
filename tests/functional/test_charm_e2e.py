"""Charm and agent as one product: what the charm renders is what the real agent runs on.

The charm runs under ops.testing with a `controller` relation and its granted secret pointing
at a fake Juju controller. Its Workload writes into a temporary folder, and a fake systemctl
runs the unit file the charm installed: `start` executes the rendered `ExecStart` line with the
rendered `Environment=` (nothing else of the test's environment), `reload` runs the rendered
`ExecReload` line with `$MAINPID`, `stop` sends SIGTERM and waits, as systemd does. The
charm's own action handlers then drive that agent process over the rendered control socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import shlex
import signal
import stat
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from charmlibs import systemd
from ops import testing

import charm
import workload
from tests.fakejuju import fixtures as fake_fixtures
from tests.fakejuju import server as fake_server
from tests.functional import agent_harness as harness
from whirlwind import control, policy

TARGET = "wsgi-example"
OTHER = "other-app"
NEW_LEADER = "whirlwind/1"
# What systemd gives a system service: this PATH and the unit's own Environment= lines.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FAST_CONFIG = {
    "services": TARGET,
    "interval": 3600,
    "settle-period": 0,
    "settle-timeout": 30,
    "remove-timeout": 30,
    "log-level": "debug",
}


@dataclasses.dataclass
class UnitFile:
    """The parts of a rendered systemd unit that a fake systemd needs."""

    exec_start: list[str]
    exec_reload: list[str]
    environment: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> UnitFile:
        """Read ExecStart, ExecReload and Environment from the [Service] section."""
        values: dict[str, list[str]] = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.startswith("#"):
                values.setdefault(key.strip(), []).append(value.strip())
        environment = dict(item.split("=", 1) for item in values.get("Environment", []))
        return cls(
            exec_start=shlex.split(values["ExecStart"][0]),
            exec_reload=shlex.split(values["ExecReload"][0]),
            environment=environment,
        )


class FakeSystemd:
    """`systemctl` for the unit files the charm installs: runs them as systemd would."""

    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = folder
        self.calls: list[tuple[str, ...]] = []
        self.processes: dict[str, subprocess.Popen[bytes]] = {}  # unit file path -> process
        self.enabled: set[str] = set()
        self.unit_files: dict[str, pathlib.Path] = {}  # service name -> unit file (per unit)
        self.machines: dict[str, workload.WorkloadPaths] = {}  # unit name -> its paths
        self.started = 0
        self.path_unit_active = False

    def use(self, unit_file: pathlib.Path) -> None:
        """The unit file that `systemctl` of the unit under test sees."""
        self.unit_files[workload.SERVICE_NAME] = unit_file

    def systemctl(self, *args: str, check: bool = False) -> int:
        """Stand-in for charmlibs.systemd's `_systemctl`."""
        self.calls.append(args)
        verb, *rest = [a for a in args if not a.startswith("--")]
        code = self._run(verb, rest[0] if rest else "")
        if check and code != 0:
            raise systemd.SystemdError(f"systemctl {' '.join(args)} failed with {code}")
        return code

    def _run(self, verb: str, service: str) -> int:
        if verb == "daemon-reload":
            return 0
        if service == workload.STATUS_PATH_UNIT:
            return self._run_path_unit(verb)
        unit_file = self.unit_files[service]
        process = self.processes.get(str(unit_file))
        running = process is not None and process.poll() is None
        if verb == "is-active":
            return 0 if running else 3
        if verb == "is-failed":
            return 0 if process is not None and process.returncode not in (None, 0) else 1
        if verb in ("enable", "disable"):
            (self.enabled.add if verb == "enable" else self.enabled.discard)(str(unit_file))
            return 0
        if verb == "start":
            if not running:
                self._start(unit_file)
            return 0
        if verb == "stop":
            if running and process is not None:
                process.send_signal(signal.SIGTERM)  # KillMode=mixed: SIGTERM to the main PID
                process.wait(timeout=60)  # TimeoutStopSec=60
            return 0
        if verb == "restart":
            self._run("stop", service)
            self._start(unit_file)
            return 0
        if verb == "reload":
            if not running or process is None:
                return 1
            unit = UnitFile.parse(unit_file.read_text())
            command = [a.replace("$MAINPID", str(process.pid)) for a in unit.exec_reload]
            return subprocess.run(command, check=False, timeout=10).returncode
        raise AssertionError(f"unexpected systemctl {verb}")

    def _run_path_unit(self, verb: str) -> int:
        """The status path unit: only its state (the test itself watches the trigger file)."""
        if verb in ("enable", "disable"):
            (self.enabled.add if verb == "enable" else self.enabled.discard)(
                workload.STATUS_PATH_UNIT
            )
            return 0
        if verb in ("start", "restart"):
            self.path_unit_active = True
        elif verb == "stop":
            self.path_unit_active = False
        elif verb == "is-active":
            return 0 if self.path_unit_active else 3
        return 0

    def _start(self, unit_file: pathlib.Path) -> None:
        unit = UnitFile.parse(unit_file.read_text())
        self.started += 1
        log = self.folder / f"journal-{self.started}.log"
        with log.open("wb") as out:
            self.processes[str(unit_file)] = subprocess.Popen(
                unit.exec_start,
                env={"PATH": SYSTEMD_PATH, **unit.environment},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
            )

    def process_of(self, unit_file: pathlib.Path) -> subprocess.Popen[bytes]:
        """The agent process started from `unit_file`."""
        return self.processes[str(unit_file)]

    def logs(self) -> str:
        """Everything the agents printed (for failure messages)."""
        return "\n".join(p.read_text(errors="replace") for p in self.folder.glob("journal-*.log"))

    def kill_all(self) -> None:
        """Make sure no agent outlives the test."""
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def fake_systemd(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_dir: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FakeSystemd]:
    """Patch systemctl and the units' paths; agents are killed before the fakes stop."""
    fake = FakeSystemd(agent_dir)
    monkeypatch.setattr("charmlibs.systemd._systemd._systemctl", fake.systemctl)
    monkeypatch.setattr(
        charm.WhirlwindCharm, "_get_paths", lambda self: fake.machines[self.unit.name]
    )
    yield fake
    fake.kill_all()


def charm_dir(folder: pathlib.Path) -> pathlib.Path:
    """A charm folder laid out as in the packed charm (src/, lib/), for JUJU_CHARM_DIR."""
    root = folder / "charm"
    root.mkdir(parents=True)
    for name in ("src", "lib"):
        (root / name).symlink_to(harness.ROOT / name)
    return root


class CharmUnit:
    """One unit of the charm under ops.testing, its machine folder, and its State."""

    def __init__(self, systemd_fake: FakeSystemd, folder: pathlib.Path, unit_id: int = 0) -> None:
        self.systemd = systemd_fake
        self.name = f"whirlwind/{unit_id}"
        machine = folder / f"m{unit_id}"  # short: the socket path must stay under 108 bytes
        self.paths = workload.WorkloadPaths(
            etc_dir=machine / "etc",
            lib_dir=machine / "lib",
            unit_dir=machine / "systemd",
            agents_dir=machine / "agents",
            control_socket=machine / "run" / "control.sock",
        )
        self.ctx = testing.Context(
            charm.WhirlwindCharm, charm_root=charm_dir(machine), unit_id=unit_id
        )
        self.client = control.ControlClient(self.paths.control_socket, timeout=10.0)
        systemd_fake.machines[self.name] = self.paths

    @staticmethod
    def initial_state(
        fake: fake_server.FakeJujuController, config: dict[str, Any] | None = None
    ) -> testing.State:
        """Leader state: config, the `controller` relation and its granted password secret."""
        password = testing.Secret(tracked_content={"password": fake.password})
        relation = testing.Relation(
            "controller",
            remote_app_name="credentials-provider",
            remote_app_data={
                "endpoints": fake.endpoint,
                "ca-cert": fake.ca_cert,
                "username": fake.username,
                "secret-id": password.id,
            },
        )
        return testing.State(
            leader=True,
            config={**FAST_CONFIG, **(config or {})},
            relations=[relation, testing.PeerRelation("whirlwind-peers")],
            secrets=[password],
            model=testing.Model(name=fake.model.name, uuid=fake.model_uuid),
        )

    async def run(self, event: Any, state: testing.State) -> testing.State:
        """One hook or action in a worker thread: the fake controller keeps serving meanwhile."""
        self.systemd.use(self.paths.unit_file)
        return await asyncio.to_thread(self.ctx.run, event, state)

    async def agent_status(self) -> dict[str, Any] | None:
        """The agent's status over the rendered control socket, or None if it does not answer."""
        try:
            return await asyncio.to_thread(self.client.status)
        except (control.AgentUnavailableError, control.ControlError):
            return None

    async def wait_ready(self, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until the agent answers, is connected and has recovered."""

        async def ready() -> bool:
            process = self.systemd.processes.get(str(self.paths.unit_file))
            if process is not None and process.poll() is not None:
                raise AssertionError(f"agent exited: {self.systemd.logs()[-3000:]}")
            status = await self.agent_status()
            return bool(
                status and status["connected"] and (status["paused"] or status["next-due"])
            )

        await harness.wait_for(ready, timeout, "agent ready", interval=0.05)
        status = await self.agent_status()
        assert status is not None
        return status

    async def history(self) -> list[dict[str, Any]]:
        """The agent's whole history, newest first."""
        return await asyncio.to_thread(self.client.history, 1000)

    async def in_step(self, step: str) -> bool:
        """Whether the operation in flight has journaled `step`."""
        status = await self.agent_status()
        return bool(status and status["in-flight"] and status["in-flight"]["step"] == step)

    async def idle(self) -> bool:
        """At least one operation finished and none is in flight."""
        status = await self.agent_status()
        return bool(status and status["in-flight"] is None and status["last"] is not None)


@pytest.fixture
def apps() -> dict[str, int]:
    return {TARGET: 3, OTHER: 1, harness.OWN_APP: 1}


async def start_leader(
    fake: fake_server.FakeJujuController,
    systemd_fake: FakeSystemd,
    folder: pathlib.Path,
    config: dict[str, Any] | None = None,
) -> tuple[CharmUnit, testing.State]:
    """The leader unit after config-changed: files rendered, agent running and ready."""
    unit = CharmUnit(systemd_fake, folder)
    state = await unit.run(unit.ctx.on.config_changed(), CharmUnit.initial_state(fake, config))
    await unit.wait_ready()
    return unit, state


async def test_the_agent_runs_on_what_the_charm_rendered(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    fake_systemd: FakeSystemd,
    agent_dir: pathlib.Path,
    apps: dict[str, int],
):
    fake = await fake_juju_factory(apps)

    unit, state = await start_leader(fake, fake_systemd, agent_dir)
    state = await unit.run(unit.ctx.on.update_status(), state)

    paths = unit.paths
    rendered = yaml.safe_load(paths.settings_file.read_text())
    assert rendered["controller"] == {
        "endpoints": [fake.endpoint],
        "ca-cert": fake.ca_cert.strip() + "\n",
        "username": fake.username,
        "password-file": str(paths.credentials_file),
    }
    assert rendered["model-uuid"] == fake.model_uuid
    assert rendered["control-socket"] == str(paths.control_socket)
    assert rendered["state-dir"] == str(paths.state_dir)
    assert fake.password not in paths.settings_file.read_text()
    assert paths.credentials_file.read_text() == fake.password + "\n"
    assert stat.S_IMODE(paths.credentials_file.stat().st_mode) == 0o600
    unit_file = UnitFile.parse(paths.unit_file.read_text())
    assert unit_file.exec_start[1:] == [
        "-m",
        "whirlwind",
        "run",
        "--config",
        str(paths.settings_file),
    ]
    assert unit_file.environment["PYTHONPATH"].split(":")[0] == str(unit.ctx.charm_root) + "/src"
    assert ("start", workload.SERVICE_NAME) in fake_systemd.calls
    process = fake_systemd.process_of(paths.unit_file)
    assert process.args == unit_file.exec_start
    assert state.unit_status.name == "active"
    assert state.unit_status.message.startswith(f"Watching {TARGET}; every 1h; next {TARGET} at ")
    assert fake.password not in fake_systemd.logs()


async def test_the_charms_actions_drive_the_live_agent(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    fake_systemd: FakeSystemd,
    agent_dir: pathlib.Path,
    apps: dict[str, int],
):
    fake = await fake_juju_factory(apps)
    checker = harness.InvariantChecker(fake, [TARGET])
    unit, state = await start_leader(fake, fake_systemd, agent_dir)
    pump = harness.ClockPump(fake)

    state = await unit.run(unit.ctx.on.action("pause"), state)
    paused = dict(unit.ctx.action_results or {})
    agent_paused = await unit.agent_status()
    state = await unit.run(unit.ctx.on.action("resume"), state)
    resumed = dict(unit.ctx.action_results or {})
    agent_resumed = await unit.agent_status()
    async with pump.running():
        state = await unit.run(
            unit.ctx.on.action("replace-now", params={"service": TARGET}), state
        )
    replaced = dict(unit.ctx.action_results or {})
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    state = await unit.run(unit.ctx.on.update_status(), state)

    assert (paused["paused"], paused["changed"]) == ("true", "true")
    assert agent_paused is not None
    assert agent_paused["paused"] is True
    assert (resumed["paused"], resumed["changed"], resumed["message"]) == (
        "false",
        "true",
        "resumed",
    )
    assert agent_resumed is not None
    assert agent_resumed["paused"] is False
    assert (replaced["old-unit"], replaced["new-unit"], replaced["result"]) == (
        f"{TARGET}/1",  # the oldest unit that is not the leader (unit 0)
        f"{TARGET}/3",
        "ok",
    )
    assert (replaced["service"], replaced["trigger"]) == (TARGET, "replace-now")
    assert f"{TARGET}/1: ok" in unit.ctx.action_logs
    assert harness.units_of(fake, TARGET) == {f"{TARGET}/0", f"{TARGET}/2", f"{TARGET}/3"}
    annotations = fake.state()["units"][f"{TARGET}/3"]["annotations"]
    assert harness.annotated_with(fake, f"{TARGET}/3", replaced["operation-id"])
    assert set(annotations) == {policy.BORN_ANNOTATION}  # the marks came off at the end
    assert state.unit_status.message.endswith(f"; last {TARGET}/1 -> {TARGET}/3 ok")
    checker.assert_final(await unit.history())


FAKE_JUJU_EXEC = """#!/bin/sh
echo "$*" >> "$0.log"
"""


async def test_the_status_follows_the_agent_step_by_step(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    fake_systemd: FakeSystemd,
    agent_dir: pathlib.Path,
    apps: dict[str, int],
):
    """The agent touches the trigger; the status service runs update-status through juju-exec.

    The test plays systemd's part: it watches the trigger file as `PathChanged=` does, runs the
    rendered status service's ExecStart with a juju-exec that only records its arguments, and
    plays the unit agent's part by running update-status under ops.testing for each call.
    """
    fake = await fake_juju_factory(apps)
    unit, state = await start_leader(fake, fake_systemd, agent_dir)
    juju_exec = agent_dir / "juju-exec"
    juju_exec.write_text(FAKE_JUJU_EXEC)
    juju_exec.chmod(0o755)
    service_file = unit.paths.status_service_file
    (line,) = [x for x in service_file.read_text().splitlines() if x.startswith("ExecStart=")]
    exec_start = shlex.split(line.removeprefix("ExecStart=").replace("$$", "$"))
    assert exec_start[-1] == workload.JUJU_EXEC
    exec_start[-1] = str(juju_exec)
    trigger = unit.paths.status_trigger
    story: list[str] = []

    def juju_exec_calls() -> list[str]:
        log = pathlib.Path(f"{juju_exec}.log")
        return log.read_text().splitlines() if log.exists() else []

    def read_trigger() -> str:
        return trigger.read_text() if trigger.exists() else ""

    async def status_service() -> None:
        """What the path unit starts: the rendered script, then the hook it asked for."""
        before = len(juju_exec_calls())
        await asyncio.to_thread(subprocess.run, exec_start, check=True, timeout=30)
        for _ in range(len(juju_exec_calls()) - before):
            nonlocal state
            state = await unit.run(unit.ctx.on.update_status(), state)
            story.append(state.unit_status.message)

    # Slow enough on the real clock for the one-touch-per-second limit to show the steps.
    pump = harness.ClockPump(fake, period=0.25)
    seen = read_trigger()
    state = await unit.run(
        unit.ctx.on.action("replace-now", params={"service": TARGET, "wait": False}), state
    )
    async with pump.running():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not (story and " ok" in story[-1] and await unit.idle()):
            assert loop.time() < deadline, story
            if read_trigger() != seen:
                seen = read_trigger()
                await status_service()
            await asyncio.sleep(0.02)

    assert workload.STATUS_PATH_UNIT in fake_systemd.enabled
    assert fake_systemd.path_unit_active
    assert stat.S_IMODE(trigger.stat().st_mode) == 0o600
    assert set(juju_exec_calls()) == {
        "-u whirlwind/0 -- JUJU_DISPATCH_PATH=hooks/update-status ./dispatch"
    }
    # The story as show-status-log tells it: the replacement as it happens, then its result.
    replacing = [m for m in story if m.startswith(f"Replacing {TARGET}/1")]
    assert replacing, story
    assert story[-1].endswith(f"; last {TARGET}/1 -> {TARGET}/3 ok"), story
    assert story.index(replacing[0]) < len(story) - 1


async def test_config_changes_reach_the_agent_by_sighup_mid_settle(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    fake_systemd: FakeSystemd,
    agent_dir: pathlib.Path,
    apps: dict[str, int],
):
    fake = await fake_juju_factory(apps)
    checker = harness.InvariantChecker(fake, [TARGET])
    unit, state = await start_leader(fake, fake_systemd, agent_dir)
    process = fake_systemd.process_of(unit.paths.unit_file)
    pump = harness.ClockPump(fake)
    state = await unit.run(
        unit.ctx.on.action("replace-now", params={"service": TARGET, "wait": False}), state
    )
    started = dict(unit.ctx.action_results or {})
    # Juju frozen with the new unit half installed: the agent waits in SETTLE.
    await pump.until(lambda: harness.unit_status(fake, f"{TARGET}/3") == "maintenance")
    await harness.wait_for(lambda: unit.in_step("settle"), what="agent settling")

    changed = {**FAST_CONFIG, "interval": 7200, "services": f"{TARGET} {OTHER}", "dry-run": True}
    state = await unit.run(
        unit.ctx.on.config_changed(), dataclasses.replace(state, config=changed)
    )

    async def reloaded() -> bool:
        status = await unit.agent_status()
        return bool(status and status["services"] == [TARGET, OTHER])

    await harness.wait_for(reloaded, what="settings reloaded")
    mid = await unit.agent_status()
    await pump.until(unit.idle, what="replacement finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    state = await unit.run(unit.ctx.on.update_status(), state)
    history = await unit.history()

    assert started["result"] == "started"
    assert ("reload", workload.SERVICE_NAME) in fake_systemd.calls
    assert not any(c[0] in ("restart", "stop") for c in fake_systemd.calls)
    assert fake_systemd.process_of(unit.paths.unit_file) is process
    assert process.poll() is None  # the same process: reloaded, not restarted
    assert mid is not None
    assert (mid["interval"], mid["dry-run"]) == (7200, True)
    assert mid["in-flight"]["step"] == "settle"
    assert [(op["id"], op["result"]) for op in history] == [(started["operation-id"], "ok")]
    assert (history[0]["old-unit"], history[0]["new-unit"]) == (f"{TARGET}/1", f"{TARGET}/3")
    assert state.unit_status.message.startswith(
        f"Dry-run: watching {TARGET}, {OTHER}; every 2h; next {TARGET} at "
    )
    checker.assert_final(history)


async def stop_on_leadership_loss(
    fake: fake_server.FakeJujuController,
    fake_systemd: FakeSystemd,
    agent_dir: pathlib.Path,
) -> tuple[CharmUnit, CharmUnit, testing.State, dict[str, Any]]:
    """Leader whirlwind/0 starts a replacement, loses leadership mid-SETTLE to whirlwind/1."""
    old, state = await start_leader(fake, fake_systemd, agent_dir)
    pump = harness.ClockPump(fake)
    state = await old.run(
        old.ctx.on.action("replace-now", params={"service": TARGET, "wait": False}), state
    )
    await pump.until(lambda: harness.unit_status(fake, f"{TARGET}/3") == "maintenance")
    await harness.wait_for(lambda: old.in_step("settle"), what="agent settling")
    in_flight = (await old.agent_status() or {})["in-flight"]
    # The new leader speaks in the peer databag; the old unit's next hook sees it is no leader.
    peer = state.get_relations("whirlwind-peers")[0]
    moved = dataclasses.replace(peer, local_app_data={**peer.local_app_data, "leader": NEW_LEADER})
    others = [r for r in state.relations if r.id != peer.id]
    standby = dataclasses.replace(state, leader=False, relations=[*others, moved])
    standby = await old.run(old.ctx.on.relation_changed(moved, remote_unit=1), standby)
    new = CharmUnit(fake_systemd, agent_dir, unit_id=1)
    await new.run(new.ctx.on.leader_elected(), dataclasses.replace(state, leader=True))
    return old, new, standby, in_flight


async def test_leadership_moves_the_agent_to_the_new_leader(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    fake_systemd: FakeSystemd,
    agent_dir: pathlib.Path,
    apps: dict[str, int],
):
    fake = await fake_juju_factory(apps)

    old, new, standby, in_flight = await stop_on_leadership_loss(fake, fake_systemd, agent_dir)
    new_status = await new.wait_ready()

    old_process = fake_systemd.process_of(old.paths.unit_file)
    assert old_process.returncode == 0  # SIGTERM: a clean stop mid-SETTLE
    assert ("stop", workload.SERVICE_NAME) in fake_systemd.calls
    assert not old.paths.control_socket.exists()
    assert not old.paths.credentials_file.exists()
    assert not old.paths.settings_file.exists()
    assert standby.unit_status == testing.ActiveStatus(
        f"Standby: the agent runs on the leader ({NEW_LEADER})"
    )
    assert fake_systemd.process_of(new.paths.unit_file).poll() is None
    assert new_status["connected"] is True
    assert (in_flight["step"], in_flight["new-unit"]) == ("settle", f"{TARGET}/3")
    # What the new leader has to go on: the op annotations on both units in the model.
    units = fake.state()["units"]
    assert units[f"{TARGET}/1"]["annotations"][policy.OP_ANNOTATION] == in_flight["id"]
    assert units[f"{TARGET}/3"]["annotations"][policy.OP_ANNOTATION] == in_flight["id"]


async def test_the_new_leader_finishes_what_was_in_flight(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    fake_systemd: FakeSystemd,
    agent_dir: pathlib.Path,
    apps: dict[str, int],
):
    fake = await fake_juju_factory(apps)
    checker = harness.InvariantChecker(fake, [TARGET])
    _, new, _, in_flight = await stop_on_leadership_loss(fake, fake_systemd, agent_dir)
    pump = harness.ClockPump(fake)

    # A fresh journal on another machine: all it has are the annotations in the model.
    status = await new.wait_ready()
    await pump.until(new.idle, timeout=30, what="adopted operation finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    history = await new.history()

    adopted = status["in-flight"]
    assert adopted is not None
    assert (adopted["id"], adopted["old-unit"], adopted["new-unit"]) == (
        in_flight["id"],
        in_flight["old-unit"],
        in_flight["new-unit"],
    )
    assert [(op["id"], op["result"]) for op in history] == [(in_flight["id"], "ok")]
    assert harness.units_of(fake, TARGET) == {f"{TARGET}/0", f"{TARGET}/2", f"{TARGET}/3"}
    checker.assert_final(history)

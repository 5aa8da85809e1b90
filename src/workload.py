"""The machine side of the charm: settings and credential files, the systemd unit, the agent.

No ops import here. systemctl calls go through charmlibs-systemd: charmhelpers is deprecated
upstream and refuses to import outside Ubuntu, so it is not used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import os
import pathlib
import stat
import sys
from collections.abc import Sequence

import yaml
from charmlibs import systemd

from whirlwind import notify, settings

logger = logging.getLogger(__name__)

SERVICE_NAME = "whirlwind-agent"
SERVICE_FILE = f"{SERVICE_NAME}.service"
RUNTIME_DIRECTORY = "whirlwind"  # systemd creates /run/whirlwind (0700) for the socket
CONTROL_SOCKET = pathlib.Path("/run") / RUNTIME_DIRECTORY / "control.sock"
# systemd creates /var/log/whirlwind (root, 0700) and makes it writable under ProtectSystem=strict.
# The agent writes its log there too (settings `log-file`): opentelemetry-collector reads
# /var/log/**/*log, not the journal. Both collector snaps' daemons run as root, so 0700 suffices.
LOGS_DIRECTORY = "whirlwind"
LOGS_DIRECTORY_MODE = "0700"
AGENT_LOG_NAME = "agent.log"
# Juju's data on the machine: every agent's agent.conf (its API password), the machine agent,
# the tools. The service sees none of it but its own charm folder (read-only).
JUJU_DATA_DIR = pathlib.Path("/var/lib/juju")
# Juju's logs: other charms' hook output. The agent logs to the journal and never reads these.
JUJU_LOG_DIR = pathlib.Path("/var/log/juju")
# Resource limits: the agent peaks at about 140 MiB on a 5,000-unit model (bench/README.md),
# runs a few threads (asyncio's resolver pool: at most 32) and holds a handful of files.
MEMORY_MAX = "1G"
TASKS_MAX = 64
LIMIT_NOFILE = 1024
ETC_DIR_MODE = 0o755
# The status follows the agent: the agent touches <state dir>/status-changed (whirlwind/notify.py),
# this path unit sees it and starts the oneshot service, which runs update-status now.
STATUS_PATH_UNIT = "whirlwind-status.path"
STATUS_SERVICE_UNIT = "whirlwind-status.service"
# Where the machine agent links juju-exec (juju core/paths/paths.go, `jujuExec`).
JUJU_EXEC = "/usr/bin/juju-exec"
# Deadline for one start of the status service: juju-exec waits for Juju's machine lock
# (another hook may hold it) and the hook itself takes a few seconds.
STATUS_TIMEOUT = 120
# Update-status runs again while the trigger changed during the run, at most this often.
STATUS_ROUNDS = 5


@dataclasses.dataclass(frozen=True)
class WorkloadPaths:
    """Where the workload keeps its files; tests point these at a temporary folder."""

    etc_dir: pathlib.Path = pathlib.Path("/etc/whirlwind")
    lib_dir: pathlib.Path = pathlib.Path("/var/lib/whirlwind")
    unit_dir: pathlib.Path = pathlib.Path("/etc/systemd/system")
    agents_dir: pathlib.Path = pathlib.Path("/var/lib/juju/agents")
    control_socket: pathlib.Path = CONTROL_SOCKET
    log_dir: pathlib.Path = pathlib.Path("/var/log") / LOGS_DIRECTORY

    @property
    def settings_file(self) -> pathlib.Path:
        """The rendered settings (no password; 0644)."""
        return self.etc_dir / "settings.yaml"

    @property
    def credentials_file(self) -> pathlib.Path:
        """The controller password alone (0600, root)."""
        return self.etc_dir / "credentials"

    @property
    def op_key_file(self) -> pathlib.Path:
        """The key that signs Whirlwind's operations, alone (0600, root)."""
        return self.etc_dir / "op-key"

    @property
    def state_dir(self) -> pathlib.Path:
        """The agent's journal and history."""
        return self.lib_dir / "state"

    @property
    def log_file(self) -> pathlib.Path:
        """The agent's log file (size-rotated by the agent; the journal has the same lines)."""
        return self.log_dir / AGENT_LOG_NAME

    @property
    def unit_file(self) -> pathlib.Path:
        """The systemd unit running the agent."""
        return self.unit_dir / SERVICE_FILE

    @property
    def status_trigger(self) -> pathlib.Path:
        """The file the agent touches when the status should be looked at again."""
        return self.state_dir / notify.TRIGGER_FILE

    @property
    def status_path_file(self) -> pathlib.Path:
        """The systemd path unit watching `status_trigger`."""
        return self.unit_dir / STATUS_PATH_UNIT

    @property
    def status_service_file(self) -> pathlib.Path:
        """The oneshot service that runs update-status through juju-exec."""
        return self.unit_dir / STATUS_SERVICE_UNIT

    def agent_conf(self, unit_name: str) -> pathlib.Path:
        """The Juju unit agent's own configuration file, e.g. unit-whirlwind-0/agent.conf."""
        return self.agents_dir / f"unit-{unit_name.replace('/', '-')}" / "agent.conf"


@dataclasses.dataclass(frozen=True)
class Changed:
    """What `configure` rewrote: the unit file, the settings or credentials, the status units."""

    unit_file: bool = False
    settings: bool = False
    status_units: bool = False


class StartResult(enum.Enum):
    """What `ensure_running` did to the agent."""

    UNCHANGED = "unchanged"
    STARTED = "started"
    RELOADED = "reloaded"
    RESTARTED = "restarted"


@dataclasses.dataclass(frozen=True)
class AgentControllerInfo:
    """Controller addresses and CA from the unit agent's own connection."""

    endpoints: tuple[str, ...]
    ca_cert: str | None


class WorkloadError(Exception):
    """systemd refused to do something to the agent; the message says what."""


def charm_pythonpath(charm_dir: pathlib.Path, sys_path: Sequence[str]) -> tuple[str, ...]:
    """The import path entries of the charm's own process that live in the charm folder."""
    root = charm_dir.resolve()
    entries: list[str] = [str(root / "src")]
    for entry in sys_path:
        if not entry:
            continue
        path = pathlib.Path(entry).resolve()
        if (path == root or root in path.parents) and path.is_dir():
            text = str(path)
            if text not in entries:
                entries.append(text)
    return tuple(entries)


def render_unit_file(
    python: str, pythonpath: Sequence[str], paths: WorkloadPaths, *, charm_dir: pathlib.Path
) -> str:
    """The systemd unit: the charm's interpreter and import path, hardened, restart on failure.

    The agent runs as root (it reads the root-only password file) with no capabilities. Its
    interpreter and code live in the charm folder, which Juju keeps inside its own data folder
    next to every agent's agent.conf: the service gets an empty read-only tmpfs over
    `/var/lib/juju` with only `charm_dir` bound back, read-only (`TemporaryFileSystem=` and
    `BindReadOnlyPaths=`, the pattern of systemd.exec(5); `InaccessiblePaths=` would leave no
    mount point for the bind). The interpreter and `pythonpath` must lie in `charm_dir` (or
    outside `/var/lib/juju`): `charm_pythonpath` keeps only entries inside the charm folder.
    """
    charm_root = charm_dir.resolve()
    return f"""\
# Installed by the whirlwind charm; changes are overwritten.
[Unit]
Description=Whirlwind agent: keeps replacing units of Juju applications, make-before-break
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=600
StartLimitBurst=5

[Service]
Type=simple
Environment=PYTHONPATH={":".join(pythonpath)}
Environment=PYTHONUNBUFFERED=1
Environment=PYTHONDONTWRITEBYTECODE=1
ExecStart={python} -m whirlwind run --config {paths.settings_file}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=10
TimeoutStopSec=60
KillMode=mixed
UMask=0077
RuntimeDirectory={RUNTIME_DIRECTORY}
RuntimeDirectoryMode=0700
LogsDirectory={LOGS_DIRECTORY}
LogsDirectoryMode={LOGS_DIRECTORY_MODE}
MemoryMax={MEMORY_MAX}
TasksMax={TASKS_MAX}
LimitNOFILE={LIMIT_NOFILE}
# Files: the OS read-only, writable state and logs only (LogsDirectory= above is writable);
# no Juju agent's files but this charm's own.
ProtectSystem=strict
ReadWritePaths={paths.lib_dir}
TemporaryFileSystem={JUJU_DATA_DIR}:ro
BindReadOnlyPaths={charm_root}
InaccessiblePaths=-{JUJU_LOG_DIR}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateMounts=yes
ProtectProc=invisible
ProcSubset=pid
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# The controller may be at any address: the network stays open.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RemoveIPC=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
CapabilityBoundingSet=
AmbientCapabilities=

[Install]
WantedBy=multi-user.target
"""


def render_status_path_unit(paths: WorkloadPaths) -> str:
    """The path unit: a change of the agent's status trigger starts the status service.

    `PathChanged=` fires when a file opened for writing is closed, which is how the agent
    touches it. systemd's default trigger limit stays: the agent touches at most once a second.
    """
    return f"""\
# Installed by the whirlwind charm; changes are overwritten.
[Unit]
Description=Whirlwind status: run update-status when the agent's status changes

[Path]
PathChanged={paths.status_trigger}
Unit={STATUS_SERVICE_UNIT}

[Install]
WantedBy=multi-user.target
"""


def render_status_service_unit(
    unit_name: str, paths: WorkloadPaths, *, juju_exec: str = JUJU_EXEC
) -> str:
    """The oneshot service: the charm's update-status hook now, through juju-exec.

    juju-exec (juju cmd/jujud/run/run.go) takes the unit with `-u`; after `--` a single
    argument is the command text as is, which the unit agent runs with `/bin/bash -s` in the
    charm folder (worker/uniter/runner/runner.go: WorkingDir is the charm dir) in a hook
    context, after taking Juju's machine lock (worker/uniter/operation/runcommands.go:
    RequiresMachineLock), so it waits for a hook in progress. JUJU_DISPATCH_PATH is set for
    hooks only (runner.go), so the command sets it: ops dispatches from it to update-status.

    systemd drops a change of the trigger while this service runs (systemd issues #5770,
    #37667), so the script runs update-status again while the trigger changed during a run,
    at most STATUS_ROUNDS times. Never start this service from a hook and wait for it: it
    waits for the machine lock that hook holds.

    The hook runs in the unit agent's processes, not here: the hardening binds only the
    juju-exec client, which must read /usr/bin/juju-exec (a link into /var/lib/juju/tools) and
    connect to the unit agent's socket in /var/lib/juju/agents/unit-*/ (root, 0700).
    """
    rounds = " ".join(str(n) for n in range(1, STATUS_ROUNDS + 1))
    script = (
        f"for round in {rounds}; do"
        ' seen=$$(cat -- "$$0" 2>/dev/null);'
        ' "$$2" -u "$$1" -- "JUJU_DISPATCH_PATH=hooks/update-status ./dispatch" || exit;'
        ' [ "$$(cat -- "$$0" 2>/dev/null)" = "$$seen" ] && exit 0;'
        " done; exit 0"
    )
    return f"""\
# Installed by the whirlwind charm; changes are overwritten.
[Unit]
Description=Whirlwind status: the charm's update-status hook, now (started by {STATUS_PATH_UNIT})
# No start limit: a start limit hit would stop {STATUS_PATH_UNIT} watching for good.
StartLimitIntervalSec=0

[Service]
Type=oneshot
# In the script $0 is the trigger file, $1 the unit, $2 juju-exec; systemd reads $$ as $.
ExecStart=/bin/sh -c '{script}' {paths.status_trigger} {unit_name} {juju_exec}
TimeoutStartSec={STATUS_TIMEOUT}
UMask=0077
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectProc=invisible
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# juju-exec reaches the unit agent over a Unix socket in the file system only
# (worker/uniter/paths.go newUnixSocket: <agent dir>/run.socket), which a private network
# namespace does not hide.
RestrictAddressFamilies=AF_UNIX
PrivateNetwork=yes
IPAddressDeny=any
PrivateMounts=yes
ProcSubset=pid
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
CapabilityBoundingSet=
AmbientCapabilities=
"""


def read_agent_controller_info(path: pathlib.Path) -> AgentControllerInfo | None:
    """Addresses (`apiaddresses`) and CA (`cacert`) from a unit agent.conf, or None."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        logger.warning("cannot read the controller address from %s: %s", path, exc)
        return None
    if not isinstance(data, dict):
        return None
    addresses = data.get("apiaddresses") or []
    endpoints = (
        tuple(a for a in addresses if isinstance(a, str)) if isinstance(addresses, list) else ()
    )
    ca_cert = data.get("cacert")
    return AgentControllerInfo(
        endpoints=endpoints, ca_cert=ca_cert if isinstance(ca_cert, str) and ca_cert else None
    )


class Workload:
    """Installs, configures and runs the agent as the systemd service whirlwind-agent."""

    def __init__(
        self,
        unit_name: str,
        charm_dir: pathlib.Path,
        paths: WorkloadPaths | None = None,
        python: str | None = None,
        sys_path: Sequence[str] | None = None,
    ) -> None:
        self._unit_name = unit_name
        self._paths = paths or WorkloadPaths()
        self._python = python or sys.executable
        self._charm_dir = charm_dir
        self._pythonpath = charm_pythonpath(charm_dir, sys.path if sys_path is None else sys_path)

    @property
    def paths(self) -> WorkloadPaths:
        """Where the files live."""
        return self._paths

    def unit_file_content(self) -> str:
        """The unit file this charm revision wants."""
        return render_unit_file(
            self._python, self._pythonpath, self._paths, charm_dir=self._charm_dir
        )

    def status_unit_contents(self) -> dict[pathlib.Path, str]:
        """The status path unit and service this charm revision wants, by file."""
        return {
            self._paths.status_path_file: render_status_path_unit(self._paths),
            self._paths.status_service_file: render_status_service_unit(
                self._unit_name, self._paths
            ),
        }

    def install(self) -> bool:
        """Write the unit files (daemon-reload if any differs); return whether the agent's did."""
        return self._install_units().unit_file

    def _install_units(self) -> Changed:
        agent = settings.write_file_atomically(
            self._paths.unit_file, self.unit_file_content(), 0o644
        )
        status = False
        for path, text in self.status_unit_contents().items():
            status |= settings.write_file_atomically(path, text, 0o644)
        if agent or status:
            systemd.daemon_reload()
        return Changed(unit_file=agent, status_units=status)

    def configure(self, agent_settings: settings.AgentSettings) -> Changed:
        """Write unit file, settings (0644, no password) and credentials (0600) atomically.

        The settings folder is made 0755 whatever the umask.
        """
        units = self._install_units()
        self._ensure_etc_dir()
        self._paths.lib_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The password file first: a reloaded agent must never read settings that point at
        # a password file that does not exist yet.
        secrets_changed = settings.write_file_atomically(
            self._paths.credentials_file, agent_settings.controller.password + "\n", 0o600
        )
        op_key_file = None
        if agent_settings.op_key:
            op_key_file = self._paths.op_key_file
            secrets_changed |= settings.write_file_atomically(
                op_key_file, agent_settings.op_key + "\n", 0o600
            )
        text = settings.dump_settings(
            agent_settings, password_file=self._paths.credentials_file, op_key_file=op_key_file
        )
        settings_changed = settings.write_file_atomically(self._paths.settings_file, text, 0o644)
        return Changed(
            unit_file=units.unit_file,
            settings=settings_changed or secrets_changed,
            status_units=units.status_units,
        )

    def _ensure_etc_dir(self) -> None:
        """Create the settings folder 0755 whatever the hook's umask, and repair its mode."""
        etc_dir = self._paths.etc_dir
        # mkdir's mode goes through the hook's umask (0o077 gives 0700, and the mkdir in
        # write_file_atomically gives 0777 under 0o000): set it, also on an existing folder.
        etc_dir.mkdir(mode=ETC_DIR_MODE, parents=True, exist_ok=True)
        if stat.S_IMODE(etc_dir.stat().st_mode) != ETC_DIR_MODE:
            os.chmod(etc_dir, ETC_DIR_MODE)

    def is_running(self) -> bool:
        """Whether systemd reports the agent active."""
        return systemd.service_running(SERVICE_NAME)

    def is_installed(self) -> bool:
        """Whether the unit file is in place."""
        return self._paths.unit_file.exists()

    def ensure_running(self, changed: Changed, restart: bool = False) -> StartResult:
        """Enable and start the agent; restart for a new unit file/code, reload for settings.

        Then enable and start the status path unit (restarted when its files changed).
        """
        result = self._ensure_agent_running(changed, restart)
        self._ensure_status_trigger(restart=changed.status_units)
        return result

    def _ensure_agent_running(self, changed: Changed, restart: bool) -> StartResult:
        try:
            systemd.service_enable(SERVICE_NAME)
            if not self.is_running():
                systemd.service_start(SERVICE_NAME)
                return StartResult.STARTED
            if restart or changed.unit_file:
                systemd.service_restart(SERVICE_NAME)
                return StartResult.RESTARTED
            if changed.settings:
                # SIGHUP: the agent re-reads its settings without losing in-flight work.
                systemd.service_reload(SERVICE_NAME, restart_on_failure=True)
                return StartResult.RELOADED
        except systemd.SystemdError as exc:
            raise WorkloadError(f"cannot start {SERVICE_NAME}: {exc}") from None
        return StartResult.UNCHANGED

    def _ensure_status_trigger(self, *, restart: bool) -> None:
        """Enable and start the path unit; a failure only delays the status (logged).

        Only the path unit: starting the service from a hook would wait for the machine
        lock that hook holds.
        """
        try:
            systemd.service_enable(STATUS_PATH_UNIT)
            if not systemd.service_running(STATUS_PATH_UNIT):
                systemd.service_start(STATUS_PATH_UNIT)
            elif restart:
                systemd.service_restart(STATUS_PATH_UNIT)  # watches the path it names now
        except systemd.SystemdError as exc:
            logger.warning(
                "cannot start %s (the status follows at update-status): %s", STATUS_PATH_UNIT, exc
            )

    def _stop_status_trigger(self) -> None:
        """Stop and disable the path unit if it is installed."""
        if not self._paths.status_path_file.exists():
            return
        try:
            systemd.service_stop(STATUS_PATH_UNIT)
            systemd.service_disable(STATUS_PATH_UNIT)
        except systemd.SystemdError as exc:
            raise WorkloadError(f"cannot stop {STATUS_PATH_UNIT}: {exc}") from None

    def stop_and_disable(self) -> bool:
        """Stop and disable the agent if it is installed; return whether it was running."""
        if not self.is_installed():
            return False
        was_running = self.is_running()
        try:
            if was_running:
                systemd.service_stop(SERVICE_NAME)
            systemd.service_disable(SERVICE_NAME)
        except systemd.SystemdError as exc:
            raise WorkloadError(f"cannot stop {SERVICE_NAME}: {exc}") from None
        self._stop_status_trigger()
        return was_running

    def remove_credentials(self) -> bool:
        """Delete the settings, password and key files (standby units need none of them)."""
        removed = False
        for path in (
            self._paths.settings_file,
            self._paths.credentials_file,
            self._paths.op_key_file,
        ):
            if path.exists():
                path.unlink()
                removed = True
        return removed

    def remove(self) -> None:
        """Stop the agent and delete unit files, settings and credentials; keep the state dir."""
        self.stop_and_disable()
        self.remove_credentials()
        unit_files = (
            self._paths.unit_file,
            self._paths.status_path_file,
            self._paths.status_service_file,
        )
        installed = [path for path in unit_files if path.exists()]
        for path in installed:
            path.unlink()
        if installed:
            systemd.daemon_reload()
        # Not empty (an operator's file) or already gone: leave it.
        with contextlib.suppress(OSError):
            self._paths.etc_dir.rmdir()

    def read_agent_controller_info(self) -> AgentControllerInfo | None:
        """The controller addresses and CA this unit's own Juju agent uses."""
        return read_agent_controller_info(self._paths.agent_conf(self._unit_name))

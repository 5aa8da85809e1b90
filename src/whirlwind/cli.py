"""Command line: `python -m whirlwind run --config FILE [--once]` and `... ctl COMMAND`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import pathlib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import whirlwind
from whirlwind import backend as backend_mod
from whirlwind import control, logsetup, pausing, policies
from whirlwind import engine as engine_mod
from whirlwind import journal as journal_mod
from whirlwind import metrics as metrics_mod
from whirlwind import settings as settings_mod
from whirlwind.chaos import arming

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

# How long a stopping engine gets to return before it is cancelled (seconds).
SHUTDOWN_GRACE = 10.0
# Default client timeouts: quick requests, and replace-now waiting for the whole operation.
# `--timeout` must be more than 0; longer than control.MAX_CLIENT_TIMEOUT is clamped to it.
CTL_TIMEOUT = 10.0
CTL_WAIT_TIMEOUT = 6 * 3600.0

BackendFactory = Callable[[settings_mod.AgentSettings], backend_mod.JujuBackend]


class UsageError(Exception):
    """Bad command-line arguments."""


def default_backend_factory(settings: settings_mod.AgentSettings) -> backend_mod.JujuBackend:
    """The production backend: libjuju, imported only when the agent runs (it is heavy)."""
    # Imported here: libjuju costs 0.6 s and 90 MB, and ctl never needs it.
    from whirlwind import libjuju_backend

    return libjuju_backend.LibjujuBackend(settings)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m whirlwind`."""
    parser = _Parser(prog="whirlwind", description=whirlwind.__doc__)
    parser.add_argument("--version", action="version", version=whirlwind.__version__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run the agent")
    run.add_argument("--config", required=True, type=pathlib.Path, help="settings YAML file")
    run.add_argument(
        "--once", action="store_true", help="replace one unit of the next due service and exit"
    )

    ctl = commands.add_parser("ctl", help="talk to a running agent")
    ctl.add_argument(
        "--socket",
        type=pathlib.Path,
        default=settings_mod.DEFAULT_CONTROL_SOCKET,
        help="control socket of the agent",
    )
    ctl.add_argument("--timeout", type=float, default=None, help="seconds to wait for an answer")
    requests = ctl.add_subparsers(dest="request", required=True, parser_class=_Parser)
    requests.add_parser("status", help="the agent's state")
    pause = requests.add_parser("pause", help="start no new replacements")
    pause.add_argument(
        "--duration", default=None, help="resume by itself after this long (90s, 30m, 2h, 3d)"
    )
    pause.add_argument("--reason", default="", help="why (shown in the status)")
    requests.add_parser("plan", help="what happens next for every target (changes nothing)")
    requests.add_parser("resume", help="start replacements again")
    history = requests.add_parser("history", help="the newest operations")
    history.add_argument(
        "--limit",
        type=int,
        default=control.DEFAULT_HISTORY,
        help=f"how many operations, newest first (1..{control.MAX_HISTORY})",
    )
    history.add_argument("--service", default=None, help="only this application's operations")
    history.add_argument("--id", default=None, help="one operation, with its steps")
    replace = requests.add_parser("replace-now", help="replace one unit now")
    replace.add_argument("service")
    replace.add_argument("--unit", default=None, help="the unit to replace (default: oldest)")
    replace.add_argument("--no-wait", action="store_true", help="return once it has started")
    replace.add_argument(
        "--dry-run", action="store_true", default=None, help="plan only, change nothing"
    )
    arm = requests.add_parser("arm-chaos", help="arm failure injection for a while")
    arm.add_argument("--confirm", required=True, help="the model's name, exactly")
    arm.add_argument("--duration", required=True, help="disarm by itself after (30m, 2h; <= 24h)")
    arm.add_argument("--dry-run", action="store_true", help="log and journal, inject nothing")
    requests.add_parser("disarm-chaos", help="end failure injection now")
    return parser


def main(
    argv: Sequence[str] | None = None, *, backend_factory: BackendFactory | None = None
) -> int:
    """Entry point; returns the exit code (0 ok, 1 failed/unreachable, 2 bad input)."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"whirlwind: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "run":
        return run_command(args.config, once=args.once, backend_factory=backend_factory)
    return ctl_command(args)


# -- ctl ---------------------------------------------------------------------------------


def ctl_command(args: argparse.Namespace) -> int:
    """Send one control request and print its JSON result."""
    pause_duration: int | None = None
    if args.request == "pause":
        problem, pause_duration = _check_pause_args(args)
        if problem is not None:
            print(f"whirlwind: {problem}", file=sys.stderr)
            return EXIT_USAGE
    if args.request == "history":
        problem = _check_history_args(args)
        if problem is not None:
            print(f"whirlwind: {problem}", file=sys.stderr)
            return EXIT_USAGE
    arm_duration = 0
    if args.request == "arm-chaos":
        problem, arm_duration = _check_arm_args(args)
        if problem is not None:
            print(f"whirlwind: {problem}", file=sys.stderr)
            return EXIT_USAGE
    if args.timeout is not None and not args.timeout > 0:  # also NaN
        print("whirlwind: --timeout must be a number of seconds greater than 0", file=sys.stderr)
        return EXIT_USAGE
    waiting = args.request == "replace-now" and not args.no_wait
    default = CTL_WAIT_TIMEOUT if waiting else CTL_TIMEOUT
    timeout = default if args.timeout is None else args.timeout
    client = control.ControlClient(args.socket, timeout=timeout)
    try:
        if args.request == "history":
            result: Any = client.history(args.limit, service=args.service, op_id=args.id)
        elif args.request == "pause":
            result = client.pause(pause_duration, args.reason)
        elif args.request == "replace-now":
            request = control.ReplaceNowRequest(
                service=args.service, unit=args.unit, wait=not args.no_wait, dry_run=args.dry_run
            )
            result = client.replace_now(request)
        elif args.request == "arm-chaos":
            result = client.arm_chaos(arm_duration, args.confirm, args.dry_run, _get_caller())
        elif args.request == "disarm-chaos":
            result = client.disarm_chaos()
        else:
            result = client.call(args.request)
    except control.AgentUnavailableError as exc:
        print(f"whirlwind: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except control.ControlError as exc:
        print(f"whirlwind: {exc.code}: {exc.message}", file=sys.stderr)
        bad_input = exc.code in (control.BAD_REQUEST, control.UNKNOWN_OPERATION)
        return EXIT_USAGE if bad_input else EXIT_FAILED
    print(json.dumps(result, indent=2))
    return EXIT_OK


def _check_pause_args(args: argparse.Namespace) -> tuple[str | None, int | None]:
    """What is wrong with the arguments of `ctl pause`, and the duration in seconds."""
    duration = None
    try:
        if args.duration is not None:
            seconds = policies.parse_duration(args.duration, "--duration")
            duration = pausing.check_duration(seconds)
        pausing.check_reason(args.reason)
    except (policies.PolicyError, pausing.PauseError) as exc:
        text = str(exc)
        return (text if text.startswith("--") else f"--{text}"), None
    return None, duration


def _check_arm_args(args: argparse.Namespace) -> tuple[str | None, int]:
    """What is wrong with the arguments of `ctl arm-chaos`, and the duration in seconds."""
    if not args.confirm:
        return "--confirm must be the model's name", 0
    try:
        return None, arming.check_duration(args.duration)
    except arming.ArmingError as exc:
        return f"--{exc}", 0


def _get_caller() -> str:
    """Who runs `ctl`, as the journal records the arming (`ctl as root`)."""
    try:
        return f"ctl as {getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container without /etc/passwd)
        return "ctl"


def _check_history_args(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments of `ctl history`, if anything."""
    if not 1 <= args.limit <= control.MAX_HISTORY:
        return f"--limit must be 1 or more and at most {control.MAX_HISTORY}"
    if args.service is not None and not control.is_application_name(args.service):
        return f"--service: {args.service!r} is not one application name"
    if args.id is not None and not args.id:
        return "--id must not be empty"
    return None


# -- run ---------------------------------------------------------------------------------


def run_command(
    config: pathlib.Path, *, once: bool = False, backend_factory: BackendFactory | None = None
) -> int:
    """Load settings, run the agent until a signal (or one replacement with `once`)."""
    try:
        settings = settings_mod.load_settings(config)
    except settings_mod.SettingsError as exc:
        print(f"whirlwind: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logsetup.setup_logging(settings.log_level, settings.log_file)
    agent = Agent(config, settings, backend_factory or default_backend_factory)
    try:
        return asyncio.run(agent.run(once=once))
    except (journal_mod.JournalError, backend_mod.BackendError, OSError, ImportError) as exc:
        # Expected trouble (disk, socket folder, controller, missing libjuju): one line.
        logger.error("cannot run the agent: %s", exc)
        return EXIT_FAILED


class _EngineProxy:
    """The control server's handler: forwards to whichever engine runs now."""

    def __init__(self) -> None:
        self.engine: engine_mod.Engine | None = None

    def _get(self) -> engine_mod.Engine:
        if self.engine is None:
            raise control.ControlError(control.NOT_READY, "the agent is starting")
        return self.engine

    async def get_status(self) -> dict[str, Any]:
        """Forwarded to the engine."""
        return await self._get().get_status()

    async def pause(self, duration: int | None = None, reason: str = "") -> dict[str, Any]:
        """Forwarded to the engine."""
        return await self._get().pause(duration=duration, reason=reason)

    async def get_plan(self) -> dict[str, Any]:
        """Forwarded to the engine."""
        return await self._get().get_plan()

    async def resume(self) -> dict[str, Any]:
        """Forwarded to the engine."""
        return await self._get().resume()

    async def get_history(
        self, limit: int, *, service: str | None = None, op_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Forwarded to the engine."""
        return await self._get().get_history(limit, service=service, op_id=op_id)

    async def replace_now(self, request: control.ReplaceNowRequest) -> dict[str, Any]:
        """Forwarded to the engine."""
        return await self._get().replace_now(request)

    async def arm_chaos(
        self, duration: int, confirm: str, dry_run: bool = False, by: str = ""
    ) -> dict[str, Any]:
        """Forwarded to the engine."""
        return await self._get().arm_chaos(duration, confirm, dry_run=dry_run, by=by)

    async def disarm_chaos(self) -> dict[str, Any]:
        """Forwarded to the engine."""
        return await self._get().disarm_chaos()


class Agent:
    """The running agent: settings file, backend, engine and control server, plus signals."""

    def __init__(
        self,
        config: pathlib.Path,
        settings: settings_mod.AgentSettings,
        backend_factory: BackendFactory,
    ) -> None:
        self._config = config
        self._settings = settings
        self._backend_factory = backend_factory
        self._proxy = _EngineProxy()
        self._engine: engine_mod.Engine | None = None
        self._shutdown = False
        self._restart = False
        self._server: control.ControlServer | None = None
        # Prometheus metrics on 127.0.0.1:<metrics-port>: they outlive engine restarts.
        self._metrics = metrics_mod.AgentMetrics()
        self._metrics_server = metrics_mod.MetricsServer(self._metrics.registry)

    def request_shutdown(self) -> None:
        """Stop cleanly (SIGTERM, SIGINT)."""
        logger.info("shutting down")
        self._shutdown = True
        if self._engine is not None:
            self._engine.stop()

    async def reload(self) -> None:
        """Read the settings file again and apply it (SIGHUP); keep the old ones if invalid."""
        try:
            new = settings_mod.load_settings(self._config)
        except settings_mod.SettingsError as exc:
            logger.error("settings not reloaded: %s", exc)
            return
        old, self._settings = self._settings, new
        logsetup.setup_logging(new.log_level, new.log_file)
        if new.state_dir != old.state_dir:
            logger.warning("state-dir changes take effect at the next start")
        if new.control_socket != old.control_socket and self._server is not None:
            await self._server.stop()
            self._server = control.ControlServer(new.control_socket, self._proxy)
            await self._server.start()
        if new.metrics_port != old.metrics_port:
            await asyncio.to_thread(self._metrics_server.start, new.metrics_port)
        if self._engine is not None:
            self._metrics.prepare(new.services)
        if self._engine is not None and self._engine.reload(new):
            logger.info("controller settings changed: reconnecting")
            self._restart = True
            self._engine.stop()

    async def run(self, *, once: bool = False) -> int:
        """Run until shut down; with `once`, one replacement; return the exit code."""
        logger.info("whirlwind %s starting", whirlwind.__version__)
        logger.info("effective settings: %s", json.dumps(self._settings.describe()))
        loop = asyncio.get_running_loop()
        journal = journal_mod.Journal.open_in(self._settings.state_dir)
        handled = self._install_signals(loop)
        self._server = control.ControlServer(self._settings.control_socket, self._proxy)
        self._metrics.attach_journal(journal)
        try:
            self._metrics_server.start(self._settings.metrics_port)
            await self._server.start()
            while True:
                self._restart = False
                ok = await self._run_engine(journal, once=once)
                if once:
                    return EXIT_OK if ok else EXIT_FAILED
                if self._shutdown or not self._restart:
                    return EXIT_OK
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)
            await self._server.stop()
            await asyncio.to_thread(self._metrics_server.stop)
            self._metrics.detach_journal()
            journal.close()
            logger.info("whirlwind stopped")

    async def _run_engine(self, journal: journal_mod.Journal, *, once: bool) -> bool:
        backend = self._backend_factory(self._settings)
        engine = engine_mod.Engine(self._settings, backend, journal)
        self._engine = engine
        self._proxy.engine = engine
        self._metrics.attach(engine, backend)
        await backend.start()
        task = asyncio.ensure_future(engine.run(once=once))
        try:
            if self._shutdown:
                engine.stop()
            while not task.done():
                await asyncio.wait([task], timeout=1.0)
                if (self._shutdown or self._restart) and not task.done():
                    _, pending = await asyncio.wait([task], timeout=SHUTDOWN_GRACE)
                    while pending:
                        # Cancel until it ends: wait_for before 3.12 may swallow a cancel.
                        task.cancel()
                        _, pending = await asyncio.wait([task], timeout=1.0)
            return not task.cancelled() and task.result()
        finally:
            self._proxy.engine = None
            self._engine = None
            self._metrics.detach()
            await backend.stop()

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        handled: list[int] = []
        reloads: set[asyncio.Task[None]] = set()

        def on_hup() -> None:
            task = asyncio.ensure_future(self.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        for signum, callback in (
            (signal.SIGTERM, self.request_shutdown),
            (signal.SIGINT, self.request_shutdown),
            (signal.SIGHUP, on_hup),
        ):
            try:
                loop.add_signal_handler(signum, callback)
            except (NotImplementedError, RuntimeError):  # not the main thread
                continue
            handled.append(signum)
        return handled

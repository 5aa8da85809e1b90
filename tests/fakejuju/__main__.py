"""Run the fake controller: python -m tests.fakejuju --app NAME=N[:storage] [...]."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import signal
import sys
from typing import NoReturn

_APP_RE = re.compile(r"^([a-z][a-z0-9-]*)=(\d+)(:storage)?$")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Print one line on stderr and exit 2."""
        sys.stderr.write(f"fakejuju: error: {message}\n")
        sys.exit(2)


def _app(value: str) -> tuple[str, int, bool]:
    match = _APP_RE.match(value)
    if not match:
        raise argparse.ArgumentTypeError(f"--app expects NAME=COUNT[:storage], got {value!r}")
    return match.group(1), int(match.group(2)), bool(match.group(3))


def _delay(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--step-delay expects seconds, got {value!r}") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError("--step-delay must not be negative")
    return seconds


def _lag(value: str) -> tuple[float, float]:
    low_text, _, high_text = value.partition(":")
    try:
        low = float(low_text)
        high = float(high_text) if high_text else low
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--delta-lag expects MIN[:MAX] seconds, got {value!r}"
        ) from None
    if low < 0 or high < low:
        raise argparse.ArgumentTypeError(f"--delta-lag needs 0 <= MIN <= MAX, got {value!r}")
    return low, high


def _count(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}")
    return int(value)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the command line (exit 2 with one stderr line on error)."""
    parser = _Parser(prog="python -m tests.fakejuju", description=__doc__)
    parser.add_argument(
        "--app",
        type=_app,
        action="append",
        default=[],
        metavar="NAME=N[:storage]",
        help="an application with N settled units (:storage: each with a filesystem, data/K)",
    )
    parser.add_argument("--step-delay", type=_delay, default=0.5, metavar="SECONDS")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default=None)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument(
        "--delta-lag",
        type=_lag,
        default=None,
        metavar="MIN[:MAX]",
        help="seconds between a change and its watcher delta (default 0.02:0.3)",
    )
    parser.add_argument(
        "--unset-status",
        action="append",
        default=[],
        metavar="APP",
        help="this application's charm never sets a workload status (repeatable)",
    )
    parser.add_argument("--seed", type=_count, default=None, help="seed of every random choice")
    parser.add_argument(
        "--spare-machines",
        type=_count,
        default=0,
        metavar="N",
        help="clean, empty machines that AddUnits may use (as after juju add-machine)",
    )
    parser.add_argument(
        "--allow-exec",
        action="store_true",
        help="serve exec (Action.Run); without it every exec is refused with Juju's "
        "'permission denied' (unauthorized access) and only logged",
    )
    args = parser.parse_args(argv)
    names = [name for name, _, _ in args.app]
    if len(set(names)) != len(names):
        parser.error("--app names must be unique")
    unknown = sorted(set(args.unset_status) - set(names))
    if unknown:
        parser.error(f"--unset-status {unknown[0]}: no --app of that name")
    return args


async def serve(args: argparse.Namespace) -> None:
    """Start the controller, print its JSON line, serve until SIGTERM/SIGINT."""
    # Imported here so that bad arguments fail fast, without importing libjuju.
    from tests.fakejuju import server as server_mod

    controller = server_mod.FakeJujuController(
        {name: count for name, count, _ in args.app},
        storage=[name for name, _, storage in args.app if storage],
        step_delay=args.step_delay,
        realtime=True,
        username=args.username,
        password=args.password,
        seed=args.seed,
        unset_status=args.unset_status,
        spare_machines=args.spare_machines,
        allow_exec=args.allow_exec,
        **({} if args.delta_lag is None else {"delta_lag": args.delta_lag}),
    )
    await controller.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    sys.stdout.write(json.dumps(controller.info()) + "\n")
    sys.stdout.flush()
    await stopping.wait()
    await controller.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

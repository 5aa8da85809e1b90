"""Stand-in for `python -m whirlwind run --config FILE` while src/whirlwind/cli.py is missing.

Wires the same pieces the CLI does (settings file, journal, LibjujuBackend, Engine, control
socket) and runs until SIGTERM. The benchmark uses the real CLI as soon as it exists.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import pathlib
import signal
import sys

import bench  # noqa: F401 - puts src/ on sys.path
from whirlwind import control, libjuju_backend
from whirlwind import engine as engine_mod
from whirlwind import journal as journal_mod
from whirlwind import settings as settings_mod


async def _run(config: pathlib.Path) -> None:
    settings = settings_mod.load_settings(config)
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    journal = journal_mod.Journal.open_in(settings.state_dir)
    backend = libjuju_backend.LibjujuBackend(settings)
    engine = engine_mod.Engine(settings, backend, journal)
    server = control.ControlServer(settings.control_socket, engine)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, engine.stop)
    await backend.start()
    await server.start()
    try:
        await engine.run()
    finally:
        await server.stop()
        await backend.stop()
        journal.close()


def main() -> None:
    """Parse `--config FILE` and run the agent."""
    parser = argparse.ArgumentParser(prog="python -m bench.agent_main", description=__doc__)
    parser.add_argument("--config", required=True, type=pathlib.Path)
    asyncio.run(_run(parser.parse_args().config))


if __name__ == "__main__":
    main()

"""The control client clamps its timeout: no settings value can make it raise OverflowError.

Finding: `settle-timeout=10**10` made the `replace-now` action a hook error, because the charm
waits settle-timeout + remove-timeout + a margin and socket.settimeout overflowed. These tests
fail on the client before the fix (OverflowError, ValueError, a traceback out of `ctl`).
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import json
import pathlib
import threading
from typing import Any

import pytest

from whirlwind import cli, control

# The longest wait the charm asks for with 10**10 s timeouts (charm.py: settle + remove + 300).
CHARM_WAIT = 10**10 + 10**10 + 300


class Handler:
    """Canned answers."""

    async def get_status(self) -> dict[str, Any]:
        return {"paused": False}

    async def pause(self, duration: int | None = None, reason: str = "") -> dict[str, Any]:
        return {"paused": True, "changed": True}

    async def get_plan(self) -> dict[str, Any]:
        return {"targets": []}

    async def resume(self) -> dict[str, Any]:
        return {"paused": False, "changed": True}

    async def get_history(
        self, limit: int, *, service: str | None = None, op_id: str | None = None
    ) -> list[dict[str, Any]]:
        return []

    async def replace_now(self, request: control.ReplaceNowRequest) -> dict[str, Any]:
        return {"service": request.service, "result": "ok"}


@contextlib.contextmanager
def _serving(path: pathlib.Path) -> collections.abc.Iterator[None]:
    """A real server on its own event loop in a thread, so that sync callers can use it."""
    loop = asyncio.new_event_loop()
    server = control.ControlServer(path, Handler())
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(server.stop())
        loop.close()


@pytest.mark.parametrize(
    "timeout",
    [10**10, CHARM_WAIT, 10**400, float("inf"), 1e300],
    ids=["1e10", "charm-wait", "1e400", "inf", "1e300"],
)
def test_huge_timeouts_are_clamped_instead_of_overflowing(
    socket_path: pathlib.Path, timeout: float
) -> None:
    request = control.ReplaceNowRequest("app", wait=True)
    with _serving(socket_path):
        # The charm's two ways: the client's own timeout, and the per-call one of replace-now.
        status = control.ControlClient(socket_path, timeout=timeout).status()
        reply = control.ControlClient(socket_path, timeout=30).replace_now(
            request, timeout=timeout
        )

    assert status == {"paused": False}
    assert reply == {"service": "app", "result": "ok"}


@pytest.mark.parametrize(
    "timeout", [float("nan"), -1, 0, -(10**400)], ids=["nan", "-1", "0", "-1e400"]
)
def test_unusable_timeouts_are_an_agent_unavailable_error(
    socket_path: pathlib.Path, timeout: float
) -> None:
    client = control.ControlClient(socket_path, timeout=timeout)

    with pytest.raises(control.AgentUnavailableError, match=r"^unusable timeout .*greater than 0"):
        client.status()


def test_an_unreachable_agent_with_a_huge_timeout_is_still_agent_unavailable(
    socket_path: pathlib.Path,
) -> None:
    client = control.ControlClient(socket_path, timeout=10**10)

    with pytest.raises(control.AgentUnavailableError, match="the agent is not running"):
        client.status()


@pytest.mark.parametrize("timeout", ["1e300", "inf", str(CHARM_WAIT)])
def test_ctl_with_a_huge_timeout_answers(
    capsys: pytest.CaptureFixture[str], socket_path: pathlib.Path, timeout: str
) -> None:
    with _serving(socket_path):
        code = cli.main(["ctl", "--socket", str(socket_path), "--timeout", timeout, "status"])

    assert code == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"paused": False}


@pytest.mark.parametrize("timeout", ["nan", "-1", "0"])
def test_ctl_with_an_unusable_timeout_gives_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], socket_path: pathlib.Path, timeout: str
) -> None:
    code = cli.main(["ctl", "--socket", str(socket_path), "--timeout", timeout, "status"])

    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert err == "whirlwind: --timeout must be a number of seconds greater than 0\n"

"""Retrying controller calls that fail transiently (tenacity), within a step's deadline.

Juju answers a busy or closing controller with errors that clear up on their own
(`excessive contention`, `upgrade in progress`, `connection is shut down`, ...): the backend
marks those `transient`. They are tried again with exponential backoff until the step's
deadline, and never turn into a rollback by themselves. A deadline that passes while the
controller is unreachable is judged only once connected again: nothing is decided blind.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn

import tenacity

from whirlwind import backend as backend_mod

logger = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
# While disconnected past the deadline: look again at least this often (seconds).
RECHECK = 10.0

Clock = Callable[[], datetime.datetime]


class DeadlineError(Exception):
    """A step's deadline passed while a controller call kept failing transiently."""


def is_transient(exc: BaseException) -> bool:
    """Whether trying the call again later may work."""
    return isinstance(exc, backend_mod.BackendError) and exc.transient


def until_deadline(
    what: str,
    backend: backend_mod.JujuBackend,
    deadline: datetime.datetime | None,
    now: Clock,
) -> tenacity.AsyncRetrying:
    """A tenacity loop: transient errors are retried with backoff until `deadline`.

    Non-transient errors propagate at once; when the deadline has passed (and the backend is
    connected, so the failure is real) it raises DeadlineError naming `what`.
    """

    def remaining() -> float:
        if deadline is None:
            return 0.0
        return (deadline - now()).total_seconds()

    def stop(state: tenacity.RetryCallState) -> bool:
        return remaining() <= 0 and backend.connected

    def wait(state: tenacity.RetryCallState) -> float:
        left = remaining()
        if left <= 0:
            return RECHECK
        return min(BACKOFF_FIRST * 2 ** (state.attempt_number - 1), BACKOFF_MAX, left)

    async def sleep(seconds: float) -> None:
        if backend.connected:
            await asyncio.sleep(seconds)
        else:
            # Blind: try again as soon as the view is back (or after `seconds`).
            await backend.wait_synced(seconds)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        pause = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning("%s failed (%s); trying again in %.1fs", what, exc, pause)

    def give_up(state: tenacity.RetryCallState) -> NoReturn:
        exc = state.outcome.exception() if state.outcome is not None else None
        raise DeadlineError(f"{what}: {exc}")

    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(is_transient),
        stop=stop,
        wait=wait,
        sleep=sleep,
        before_sleep=before_sleep,
        retry_error_callback=give_up,
    )


async def call(
    what: str,
    backend: backend_mod.JujuBackend,
    deadline: datetime.datetime | None,
    now: Clock,
    func: Callable[[], Awaitable[object]],
) -> None:
    """Run `func`, retrying transient failures until `deadline` (see until_deadline)."""
    async for attempt in until_deadline(what, backend, deadline, now):
        with attempt:
            await func()

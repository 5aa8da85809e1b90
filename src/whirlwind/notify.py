"""Tell the charm that the status changed: the agent touches `<state-dir>/status-changed`.

The charm computes the unit status in hooks, and update-status runs only every 5 minutes by
default. So the agent touches this trigger file whenever an operator would see something new:
an operation starts, changes step (plan, add, settle, remove, cleanup, rollback, done), names
its new unit or finishes; the agent pauses or resumes; a circuit breaker changes. The charm's
systemd path unit `whirlwind-status.path` watches the file and runs update-status through
juju-exec (src/workload.py renders both units), so `juju show-status-log` follows the agent.

Best effort: a touch never raises, and at most one touch per second goes out by the caller's
clock; a change within that second is touched when the second is over, so the last one is
never lost to the rate limit.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import pathlib
from collections.abc import Callable

logger = logging.getLogger(__name__)

TRIGGER_FILE = "status-changed"
# At most one touch per this many seconds: a burst of commits (plan and add land together)
# starts one update-status, not one per commit.
MIN_GAP = 1.0
MODE = 0o600

# Journal commit labels (journal.Journal._transaction) an operator sees in the status.
_ALWAYS = frozenset({"create", "adopt", "step", "breaker", "breakers"})
_STATE_KEYS = frozenset({"pause", "chaos"})
_FIELDS = frozenset({"new_unit"})


def is_notable(label: str) -> bool:
    """Whether a journal commit (its label, e.g. `step:add`) changes what the status shows."""
    kind, _, detail = label.partition(":")
    if kind in _ALWAYS:
        return True
    if kind == "state":
        return detail in _STATE_KEYS
    if kind == "update":
        return not _FIELDS.isdisjoint(detail.split(","))
    return False


def get_delay(now: float, last: float | None, min_gap: float = MIN_GAP) -> float:
    """Seconds to wait before the next touch (0: touch now), for one touch per `min_gap`.

    `now` and `last` (the previous touch, None if none) are the caller's clock in seconds.
    A clock that went back since `last` touches now rather than wait for it to catch up.
    """
    if last is None or now < last:
        return 0.0
    return max(0.0, min_gap - (now - last))


def touch(path: pathlib.Path, at: datetime.datetime) -> bool:
    """Write `at` into `path` (mode 0600) and close it; False, never an exception, on failure.

    Closing a file opened for writing is the event `PathChanged=` reacts to (IN_CLOSE_WRITE).
    """
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, MODE)
        try:
            os.fchmod(fd, MODE)
            os.write(fd, f"{at.isoformat()}\n".encode())
        finally:
            os.close(fd)
    except Exception as exc:  # noqa: BLE001 - best effort: the status catches up at update-status
        logger.debug("cannot touch the status trigger %s: %s", path, exc)
        return False
    return True


class Notifier:
    """Touches the trigger file for notable journal commits, at most once per `MIN_GAP`."""

    def __init__(self, path: pathlib.Path, now: Callable[[], datetime.datetime]) -> None:
        self.path = path
        self._now = now
        self._last: datetime.datetime | None = None
        self._pending: asyncio.TimerHandle | None = None

    def on_commit(self, label: str) -> None:
        """Journal listener: touch for a commit an operator would see."""
        if is_notable(label):
            self.notify()

    def notify(self) -> None:
        """Touch now, or at the end of the second if a touch went out within it; never raises."""
        try:
            if self._pending is not None:
                return  # a touch is already due, and it will show this change too
            now = self._now()
            last = self._last.timestamp() if self._last is not None else None
            delay = get_delay(now.timestamp(), last)
            if delay <= 0:
                self._touch(now)
                return
            # Outside an event loop (no running loop) this raises: the change waits for the
            # next one or the next update-status.
            self._pending = asyncio.get_running_loop().call_later(delay, self._fire)
        except Exception as exc:  # noqa: BLE001 - never fail a journal commit over a status
            logger.debug("status trigger not touched: %s", exc)

    def close(self) -> None:
        """Drop a touch still due (the agent stops)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _fire(self) -> None:
        self._pending = None
        try:
            self._touch(self._now())
        except Exception as exc:  # noqa: BLE001 - a timer callback must not raise either
            logger.debug("status trigger not touched: %s", exc)

    def _touch(self, now: datetime.datetime) -> None:
        touch(self.path, now)
        # Also after a failed touch: the rate limit holds whatever the file system says.
        self._last = now

"""Clocks driving the fake controller: a manual clock for tests and a real-time one."""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import time
from collections.abc import Callable


@dataclasses.dataclass(order=True)
class _Timer:
    when: float
    seq: int
    callback: Callable[[], None] = dataclasses.field(compare=False)
    cancelled: bool = dataclasses.field(default=False, compare=False)

    def cancel(self) -> None:
        """Stop the timer from firing."""
        self.cancelled = True


class Clock:
    """Wall-clock seconds (epoch) plus one-shot timers; base class of both clocks."""

    def now(self) -> float:
        """Return the current time in epoch seconds."""
        raise NotImplementedError

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        """Run callback after delay seconds of this clock."""
        raise NotImplementedError

    def pending(self) -> int:
        """Return how many timers are still waiting."""
        raise NotImplementedError

    def close(self) -> None:
        """Cancel every timer."""


class ManualClock(Clock):
    """A clock that only moves when the test calls advance()."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._timers: list[_Timer] = []
        self._seq = itertools.count()

    def now(self) -> float:
        """Return the current fake time."""
        return self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        """Schedule callback at now + delay (fired by advance())."""
        timer = _Timer(self._now + max(0.0, delay), next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def pending(self) -> int:
        """Return how many live timers are queued."""
        return sum(1 for timer in self._timers if not timer.cancelled)

    def next_due(self) -> float | None:
        """Return the time of the next live timer, if any."""
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0].when if self._timers else None

    def advance_sync(self, seconds: float) -> int:
        """Move time forward, firing due timers in order; return how many fired."""
        target = self._now + seconds
        fired = 0
        while True:
            due = self.next_due()
            if due is None or due > target:
                break
            timer = heapq.heappop(self._timers)
            self._now = max(self._now, timer.when)
            timer.callback()
            fired += 1
        self._now = target
        return fired

    def close(self) -> None:
        """Drop every timer."""
        self._timers.clear()


class RealClock(Clock):
    """Real time: timers run on the asyncio loop."""

    def __init__(self) -> None:
        self._handles: set[asyncio.TimerHandle] = set()

    def now(self) -> float:
        """Return time.time()."""
        return time.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        """Schedule callback on the running loop."""
        timer = _Timer(self.now() + delay, 0, callback)
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._handles.discard(handle)
            if not timer.cancelled:
                callback()

        handle = loop.call_later(max(0.0, delay), fire)
        self._handles.add(handle)
        return timer

    def pending(self) -> int:
        """Return how many loop timers are queued."""
        return len(self._handles)

    def close(self) -> None:
        """Cancel every loop timer."""
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()

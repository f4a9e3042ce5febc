"""Timers that measure the time the relay's event loop has lived, not wall-clock time.

A relay that was frozen (SIGSTOP, a long GC pause, VM steal time, CPU starvation) could not
read what its peers sent meanwhile. Timers on the wall clock fire the moment it thaws,
before it reads the frames that arrived during the freeze, and blame healthy peers. Here a
freeze of any length counts as at most `max_step_s`: `LoopClock` advances with the loop's
own clock, by no more than that between two looks, and looks every `tick_s`.

Silence is judged by what arrived on the socket (`Arrivals`), not by when a task got round
to reading it. No sockets here: the server hands in what to count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class LoopClock:
    """Seconds of loop life; call start() inside the running loop, stop() when done."""

    def __init__(self, tick_s: float = 0.1, max_step_s: float = 0.25) -> None:
        self.loop = asyncio.get_running_loop()
        self.tick_s = tick_s
        self.max_step_s = max_step_s
        self._seen = self.loop.time()
        self._alive = 0.0
        self._ticker: asyncio.TimerHandle | None = None

    def now(self) -> float:
        t = self.loop.time()
        self._alive += min(t - self._seen, self.max_step_s)
        self._seen = t
        return self._alive

    def start(self) -> None:
        self.now()
        self._ticker = self.loop.call_later(self.tick_s, self.start)

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def call_after(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        return Timer(self, delay_s, callback)


class Timer:
    """Runs callback once `delay_s` of loop life has passed; cancel() stops it."""

    def __init__(self, clock: LoopClock, delay_s: float, callback: Callable[[], None]) -> None:
        self.clock = clock
        self.deadline = clock.now() + delay_s
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = clock.loop.call_later(delay_s, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        remaining = self.deadline - self.clock.now()
        if remaining > 0:  # the loop was frozen meanwhile: that time does not count
            self._handle = self.clock.loop.call_later(remaining, self._fire)
            return
        self._handle = None
        self._callback()


class Arrivals(Protocol):
    """A connection that counts the reads of its socket and says whether it still reads."""

    arrivals: int

    def reading(self) -> bool: ...


class SilenceWatch:
    """Calls on_silent once a peer sent nothing for idle_s of loop life.

    Anything that reached the socket counts as heard, even if no task has read it yet; so
    does time when we were not reading (paused for backpressure by us or by websockets'
    own queue): that silence is ours. One timer per peer, looking every idle_s / 4, so the
    verdict comes between idle_s and 1.25 x idle_s after the last arrival.
    """

    def __init__(
        self, clock: LoopClock, peer: Arrivals, idle_s: float, on_silent: Callable[[], None]
    ) -> None:
        self.clock = clock
        self.peer = peer
        self.idle_s = idle_s
        self.paused = False
        self._on_silent = on_silent
        self._seen = peer.arrivals
        self._quiet_since = clock.now()
        self._timer: Timer | None = clock.call_after(idle_s / 4, self._check)

    def resume(self) -> None:
        """We stopped pausing the peer: its silence counts from now."""
        self.paused = False
        self._quiet_since = self.clock.now()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        now = self.clock.now()
        if self.paused or not self.peer.reading() or self.peer.arrivals != self._seen:
            self._seen = self.peer.arrivals
            self._quiet_since = now
        if now - self._quiet_since >= self.idle_s:
            self._timer = None
            self._on_silent()
        else:
            self._timer = self.clock.call_after(self.idle_s / 4, self._check)

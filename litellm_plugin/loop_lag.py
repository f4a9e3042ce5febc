"""How late the proxy's event loop runs: the part of a measured latency that is the proxy's.

Under a burst, LiteLLM's single event loop falls behind: a first token that arrived on time
is read late, and an SLA rule fed those readings would demote a healthy tier for the proxy's
own queueing. A sleeper task measures how late it wakes and adds that up; an attempt's time
to first token, less the lag that accrued while it waited, is what the tier took.
"""

from __future__ import annotations

import asyncio
import time

TICK_S = 0.02  # the sleeper's period: the finest lag it can see


class LoopLag:
    """A running total of event-loop lag, in milliseconds, since the sleeper started."""

    def __init__(self, tick_s: float = TICK_S) -> None:
        self.tick_s = tick_s
        self._total_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        """Start the sleeper on the running loop (once; call from any coroutine)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def total_ms(self) -> float:
        return self._total_ms

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.tick_s)
            late = time.perf_counter() - before - self.tick_s
            if late > 0:
                self._total_ms += late * 1000

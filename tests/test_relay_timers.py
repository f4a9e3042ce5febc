"""The relay's timers count loop life, not wall-clock time, and silence by what arrived."""

from __future__ import annotations

import asyncio
import time

from relay.timers import LoopClock, SilenceWatch


def test_a_frozen_loop_counts_at_most_one_step() -> None:
    async def scenario() -> None:
        clock = LoopClock(tick_s=0.05, max_step_s=0.25)
        clock.start()
        fired: list[float] = []
        clock.call_after(2.0, lambda: fired.append(clock.now()))
        time.sleep(3.0)  # frozen: a wall-clock timer would fire the moment we thaw
        await asyncio.sleep(0)
        assert fired == []
        assert clock.now() < 1.0
        for _ in range(200):
            if fired:
                break
            await asyncio.sleep(0.05)
        assert fired and fired[0] >= 2.0
        clock.stop()

    asyncio.run(scenario())


def test_a_cancelled_timer_never_fires() -> None:
    async def scenario() -> None:
        clock = LoopClock(tick_s=0.01)
        clock.start()
        fired: list[bool] = []
        clock.call_after(0.05, lambda: fired.append(True)).cancel()
        await asyncio.sleep(0.3)
        assert fired == []
        clock.stop()

    asyncio.run(scenario())


class Peer:
    """A connection as SilenceWatch sees it: a count of socket reads, and whether we read."""

    def __init__(self) -> None:
        self.arrivals = 0
        self.paused = False

    def reading(self) -> bool:
        return not self.paused


def _watch(peer: Peer, clock: LoopClock) -> tuple[SilenceWatch, list[float]]:
    silent: list[float] = []
    return SilenceWatch(clock, peer, 1.0, lambda: silent.append(clock.now())), silent


def test_silence_is_judged_by_arrivals_and_excused_while_we_do_not_read() -> None:
    async def scenario() -> None:
        clock = LoopClock(tick_s=0.01)
        clock.start()
        talking, quiet, paused = Peer(), Peer(), Peer()
        paused.paused = True
        watches = [_watch(peer, clock) for peer in (talking, quiet, paused)]
        for _ in range(60):  # 3 s of loop life, at least
            talking.arrivals += 1
            await asyncio.sleep(0.05)
        assert watches[0][1] == [] and watches[2][1] == []
        assert len(watches[1][1]) == 1 and 1.0 <= watches[1][1][0] <= 1.25 + 0.25
        for watch, _ in watches:
            watch.stop()
        clock.stop()

    asyncio.run(scenario())

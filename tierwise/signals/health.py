"""Tier health: a tier that fails repeatedly is skipped for a cool-down, then tried again.

Only tier faults reach this breaker (see tierwise/faults.py), and one caller cannot open it
for everyone: a run of consecutive failures opens the shared breaker only when at least two
callers contributed to it (or a failure came unattributed, as from an SDK user with one
application). A run from one caller opens that caller's own breaker, so a single-user
deployment still skips its broken tier while others never feel one caller's failures.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

CALLERS_KEPT = 4096  # per-caller breakers remembered (oldest forgotten first)
UNATTRIBUTED = ""  # the run's caller set holds this for a failure with no caller


@dataclass
class _State:
    consecutive_failures: int = 0
    cooldown_until: float = 0.0
    last_error: str = ""
    callers: set[str] = field(default_factory=set)  # who contributed to the current run


class HealthTracker:
    """Circuit breaker per tier: closed -> open after N failures -> half-open after cool-down."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._state: dict[str, _State] = {}
        self._own: OrderedDict[tuple[str, str], _State] = OrderedDict()
        self._lock = threading.Lock()

    def record_success(self, tier: str, caller: str | None = None) -> None:
        with self._lock:
            self._state[tier] = _State()
            if caller is not None:
                own = self._own.get((tier, caller))
                if own is not None:
                    own.consecutive_failures = 0

    def record_failure(
        self,
        tier: str,
        max_failures: int,
        cooldown_s: float,
        error: str = "",
        caller: str | None = None,
    ) -> bool:
        """Count a tier fault; return True when it opened the breaker for everyone."""
        with self._lock:
            now = self._clock()
            if caller is not None:
                own = self._own_state(tier, caller)
                own.consecutive_failures += 1
                if own.consecutive_failures >= max_failures:
                    own.cooldown_until = now + cooldown_s
                    own.consecutive_failures = 0
            state = self._state.setdefault(tier, _State())
            state.consecutive_failures += 1
            state.last_error = error[:200]
            state.callers.add(UNATTRIBUTED if caller is None else caller)
            diverse = UNATTRIBUTED in state.callers or len(state.callers) >= 2
            if state.consecutive_failures >= max_failures and diverse:
                state.cooldown_until = now + cooldown_s
                state.consecutive_failures = 0
                state.callers = set()
                return True
            return False

    def cooling_down(self, tier: str, caller: str | None = None) -> float:
        """Seconds of cool-down left for `caller` (0 when the tier may be used)."""
        with self._lock:
            until = 0.0
            state = self._state.get(tier)
            if state is not None:
                until = state.cooldown_until
            if caller is not None:
                own = self._own.get((tier, caller))
                if own is not None:
                    until = max(until, own.cooldown_until)
            return max(0.0, until - self._clock())

    def last_error(self, tier: str) -> str:
        with self._lock:
            state = self._state.get(tier)
            return state.last_error if state else ""

    def _own_state(self, tier: str, caller: str) -> _State:
        key = (tier, caller)
        own = self._own.get(key)
        if own is None:
            own = self._own[key] = _State()
            while len(self._own) > CALLERS_KEPT:
                self._own.popitem(last=False)
        else:
            self._own.move_to_end(key)
        return own

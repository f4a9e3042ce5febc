"""Tier health: a tier that fails repeatedly is skipped for a cool-down, then tried again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _State:
    consecutive_failures: int = 0
    cooldown_until: float = 0.0
    last_error: str = ""


class HealthTracker:
    """Circuit breaker per tier: closed -> open after N failures -> half-open after cool-down."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._state: dict[str, _State] = {}
        self._lock = threading.Lock()

    def record_success(self, tier: str) -> None:
        with self._lock:
            self._state[tier] = _State()

    def record_failure(
        self, tier: str, max_failures: int, cooldown_s: float, error: str = ""
    ) -> bool:
        """Count a failure; return True when it opened the breaker."""
        with self._lock:
            state = self._state.setdefault(tier, _State())
            state.consecutive_failures += 1
            state.last_error = error[:200]
            if state.consecutive_failures >= max_failures:
                state.cooldown_until = self._clock() + cooldown_s
                state.consecutive_failures = 0
                return True
            return False

    def cooling_down(self, tier: str) -> float:
        """Seconds of cool-down left (0 when the tier may be used)."""
        with self._lock:
            state = self._state.get(tier)
            if state is None:
                return 0.0
            return max(0.0, state.cooldown_until - self._clock())

    def last_error(self, tier: str) -> str:
        with self._lock:
            state = self._state.get(tier)
            return state.last_error if state else ""

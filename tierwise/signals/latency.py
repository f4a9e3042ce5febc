"""Per-tier latency EMA with a warm-up seed, and probe traffic so a demoted tier can recover.

The EMA tracks time to first token (for a non-streaming call that is the whole latency:
the first token reaches the client with the last). A tier whose EMA is over its SLA stops
receiving ordinary traffic, which would freeze its EMA forever; so it keeps one request in
`probe_every`, and those observations pull the EMA back once the tier is fast again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class _Ema:
    value_ms: float
    samples: int = 0


class LatencyTracker:
    """Thread-safe EMA of observed time to first token, per tier."""

    def __init__(self) -> None:
        self._ema: dict[str, _Ema] = {}
        self._skipped: dict[str, int] = {}
        self._lock = threading.Lock()

    def observe(self, tier: str, ttft_ms: float, alpha: float, seed_ms: float) -> float:
        """Fold one observation in. Early samples weigh more (1/(n+2)) so the seed fades fast."""
        with self._lock:
            ema = self._ema.setdefault(tier, _Ema(seed_ms))
            weight = max(alpha, 1.0 / (ema.samples + 2))
            ema.value_ms += weight * (ttft_ms - ema.value_ms)
            ema.samples += 1
            return ema.value_ms

    def ema_ms(self, tier: str, seed_ms: float) -> float:
        with self._lock:
            ema = self._ema.get(tier)
            return ema.value_ms if ema else seed_ms

    def samples(self, tier: str) -> int:
        with self._lock:
            ema = self._ema.get(tier)
            return ema.samples if ema else 0

    def should_probe(self, tier: str, probe_every: int) -> bool:
        """Count a request the demoted tier would have served; every Nth becomes a probe."""
        with self._lock:
            skipped = self._skipped.get(tier, 0) + 1
            if skipped >= probe_every:
                self._skipped[tier] = 0
                return True
            self._skipped[tier] = skipped
            return False

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {tier: ema.value_ms for tier, ema in self._ema.items()}

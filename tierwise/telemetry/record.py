"""One request as the decision log and the metrics see it: a flat, host-neutral row."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Column order of the `requests` table; RequestRecord.as_row() follows it.
COLUMNS: tuple[str, ...] = (
    "ts",
    "host",
    "scope",
    "tier",
    "routed_tier",
    "model",
    "score",
    "band",
    "reason",
    "reasons",
    "cache_hit",
    "summarized",
    "fallback",
    "probe",
    "ok",
    "error",
    "latency_ms",
    "ttft_ms",
    "decide_ms",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "top_cost_usd",
    "request_id",
    "raw_score",
    "sketch",
    "explored",
)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What happened to one request. `tier` served it; `routed_tier` is what was decided.

    `scope` is already hashed (Scope.key()); no prompt text and no raw user or key is kept.
    `top_cost_usd` is what the same tokens would have cost on the most expensive tier, so
    the log can say what routing saved against sending everything there.
    """

    ts: float
    host: str
    scope: str
    tier: str
    routed_tier: str
    model: str
    score: float | None
    band: str
    reason: str
    reasons: tuple[str, ...] = ()
    cache_hit: bool = False
    summarized: bool = False
    probe: bool = False
    ok: bool = True
    error: str = ""
    latency_ms: float | None = None
    ttft_ms: float | None = None
    decide_ms: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    top_cost_usd: float = 0.0
    request_id: str = ""  # what the host answered with, so an outcome can find this row
    raw_score: float | None = None  # the scorer's score before the install's adaptation
    sketch: bytes | None = None  # the question's embedding as int8 (only with adapt on)
    explored: bool = False

    @property
    def fallback(self) -> bool:
        """Served by another tier than the one decided (the decided one failed)."""
        return not self.cache_hit and self.tier != self.routed_tier

    def as_row(self) -> tuple[Any, ...]:
        return (
            self.ts,
            self.host,
            self.scope,
            self.tier,
            self.routed_tier,
            self.model,
            self.score,
            self.band,
            self.reason,
            json.dumps(list(self.reasons), ensure_ascii=False),
            int(self.cache_hit),
            int(self.summarized),
            int(self.fallback),
            int(self.probe),
            int(self.ok),
            self.error,
            self.latency_ms,
            self.ttft_ms,
            self.decide_ms,
            self.tokens_in,
            self.tokens_out,
            self.cost_usd,
            self.top_cost_usd,
            self.request_id,
            self.raw_score,
            self.sketch,
            int(self.explored),
        )

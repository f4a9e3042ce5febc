"""The facade adapters call: decide() before the host call, record() after it."""

from __future__ import annotations

import logging
import time

from tierwise.config import TierwiseConfig, load_config
from tierwise.decision import Decision
from tierwise.request import ChatRequest
from tierwise.rules import RoutingState, Signals, build_chain
from tierwise.scoring.base import Scorer
from tierwise.scoring.cascade import Judge
from tierwise.scoring.factory import build_scorer
from tierwise.signals.vram import NvmlMonitor

log = logging.getLogger(__name__)


class TierRouter:
    """Turns chat requests into tier decisions and learns from how each tier performed."""

    def __init__(
        self,
        config: TierwiseConfig | None = None,
        *,
        scorer: Scorer | None = None,
        signals: Signals | None = None,
        judge: Judge | None = None,
    ) -> None:
        """`judge`: an adapter's LLM judge for the cascade scorer (see scoring/cascade.py)."""
        self.config = config or load_config()
        self.scorer = scorer or build_scorer(self.config, judge=judge)
        self.signals = signals or Signals()
        self.chain = build_chain(self.config)
        self._nvml: NvmlMonitor | None = None

    def decide(self, request: ChatRequest) -> Decision:
        """Score the request and run the rule chain; raises RoutingError if no tier can serve."""
        started = time.perf_counter()
        score = self.scorer.score(request)
        state = RoutingState(
            request=request,
            score=score,
            config=self.config,
            signals=self.signals,
            candidates=list(self.config.ranked_tiers),
        )
        for rule in self.chain:
            rule.apply(state)
        chosen = state.pick()
        if state.floor is not None and chosen.order < state.floor:
            state.reasons.append(
                f"chosen: {chosen.name}, the strongest tier left (none at or above the floor)"
            )
        elif state.floor is not None and chosen.order > state.floor:
            state.reasons.append(f"chosen: {chosen.name}, the cheapest tier left above the floor")
        above = [t.name for t in state.candidates if t.order > chosen.order]
        below = [t.name for t in reversed(state.candidates) if t.order < chosen.order]
        return Decision(
            tier=chosen.name,
            models=chosen.models,
            score=score.value,
            band=score.band.value,
            reasons=tuple(state.reasons),
            fallback_chain=tuple(above + below),
            scorer=score.source,
            drivers=score.drivers,
            probe=state.probe == chosen.name,
            prompt_tokens=state.notes.get("prompt_tokens"),
            decided_in_ms=(time.perf_counter() - started) * 1000,
            notes=state.notes,
        )

    def decide_text(self, text: str) -> Decision:
        return self.decide(ChatRequest.from_text(text))

    def record(self, tier: str, *, ok: bool, ttft_ms: float | None = None, error: str = "") -> None:
        """Feed what happened on `tier` back into the latency EMA and the health breaker."""
        try:
            settings = self.config.tier(tier)
        except KeyError:
            log.debug("record() for unknown tier %r ignored", tier)
            return
        if ok:
            self.signals.health.record_success(tier)
            if ttft_ms is not None and settings.sla is not None:
                seed = settings.sla.seed_ms or settings.sla.max_ttft_ms / 2
                self.signals.latency.observe(tier, ttft_ms, settings.sla.alpha, seed)
            return
        health = self.config.rules.health
        if self.signals.health.record_failure(tier, health.max_failures, health.cooldown_s, error):
            log.warning(
                "tier %s failed %d times in a row; cooling down %.0fs",
                tier,
                health.max_failures,
                health.cooldown_s,
            )

    def start_monitors(self, nvml: object | None = None, interval_s: float = 1.0) -> None:
        """Start the NVML thread for tiers that watch a local GPU (no-op without one)."""
        devices = [
            t.vram.device
            for t in self.config.tiers
            if t.vram is not None and t.vram.source == "nvml"
        ]
        if not devices or self._nvml is not None:
            return
        self._nvml = NvmlMonitor(self.signals.gpu, devices, interval_s=interval_s, nvml=nvml)
        self._nvml.start()

    def close(self) -> None:
        if self._nvml is not None:
            self._nvml.stop()
            self._nvml = None

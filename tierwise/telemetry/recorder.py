"""What adapters call: one `Telemetry` per process, one `request()` per finished request.

It turns the core's Decision plus what the host measured into a RequestRecord (hashed
scope, prices from the config, the top tier's cost for the same tokens), then counts it in
the Prometheus metrics and queues it for the decision log. It never raises: telemetry
must not fail a request.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierwise.config import TierwiseConfig
from tierwise.decision import Decision
from tierwise.request import Scope
from tierwise.telemetry.log import DecisionLog, default_path
from tierwise.telemetry.reasons import reason_key
from tierwise.telemetry.record import RequestRecord

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from tierwise.router import TierRouter
    from tierwise.rules import Signals
    from tierwise.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

CACHE_TIER = "cache"  # the `tier` of a request answered from the cache


class Telemetry:
    """Decision log + metrics for one host process."""

    def __init__(
        self,
        config: TierwiseConfig,
        host: str,
        *,
        signals: Signals | None = None,
        decision_log: DecisionLog | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.host = host
        self.signals = signals
        self.log = decision_log
        self.metrics = metrics
        self._prices = {t.name: t.price for t in config.tiers}
        self._models = {t.name: t.models[0] for t in config.tiers}

    @classmethod
    def from_config(
        cls,
        config: TierwiseConfig,
        host: str,
        *,
        signals: Signals | None = None,
        registry: CollectorRegistry | None = None,
    ) -> Telemetry:
        """Build what `config.telemetry` turns on. Metrics go to prometheus-client's default
        registry (the one LiteLLM serves at /metrics) unless `registry` is given."""
        settings = config.telemetry
        decision_log = None
        if settings.log:
            path = Path(settings.path).expanduser() if settings.path else default_path()
            decision_log = DecisionLog(
                path, retention_days=settings.retention_days, queue_size=settings.queue_size
            )
        metrics = None
        if settings.metrics:
            from tierwise.telemetry.metrics import metrics_for

            metrics = metrics_for(registry) if registry is not None else metrics_for()
        return cls(config, host, signals=signals, decision_log=decision_log, metrics=metrics)

    @classmethod
    def for_router(
        cls, router: TierRouter, host: str, registry: CollectorRegistry | None = None
    ) -> Telemetry:
        """The usual way: the router's config and live signals (for the EMA and VRAM gauges)."""
        return cls.from_config(router.config, host, signals=router.signals, registry=registry)

    def request(
        self,
        decision: Decision | None,
        *,
        scope: Scope | str | None = None,
        tier: str | None = None,
        model: str | None = None,
        ok: bool = True,
        error: str = "",
        latency_ms: float | None = None,
        ttft_ms: float | None = None,
        tokens_in: int | None = None,
        tokens_out: int = 0,
        cache_hit: bool = False,
        summarized: bool = False,
        cost_usd: float | None = None,
        ts: float | None = None,
        request_id: str = "",
    ) -> RequestRecord | None:
        """Record one finished request (after the host's call, or after a cache replay).

        decision: what TierRouter.decide() returned (None when the cache answered first).
        tier: the tier that served (default: the decided one; "cache" for a cache hit).
        tokens_in: prompt tokens (default: the decision's count). cost_usd: what the host
        charged, if it knows (default: the served tier's configured price).
        request_id: the id the host answered with, so an outcome (a rating, a feedback
        call) can find this row later.
        Returns the record, or None if building it failed (counted as a plugin error).
        """
        try:
            record = self.build(
                decision,
                scope=scope,
                tier=tier,
                model=model,
                ok=ok,
                error=error,
                latency_ms=latency_ms,
                ttft_ms=ttft_ms,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                cache_hit=cache_hit,
                summarized=summarized,
                cost_usd=cost_usd,
                ts=ts,
                request_id=request_id,
            )
        except Exception:
            log.exception("tierwise telemetry: cannot build a record (ignored)")
            self.error("telemetry")
            return None
        self.emit(record)
        return record

    def emit(self, record: RequestRecord) -> None:
        """Count a ready-made record and queue it for the log."""
        if self.metrics is not None:
            try:
                self.metrics.observe(record)
                if self.signals is not None:
                    self.metrics.update_signals(self.signals)
            except Exception:
                log.exception("tierwise telemetry: metrics update failed (ignored)")
        if self.log is not None:
            try:
                written = self.log.append(record)
            except Exception:  # e.g. no thread can be started: lose the row, not the request
                log.exception("tierwise telemetry: decision log append failed (ignored)")
                written = False
            if self.metrics is not None:
                self.metrics.log_up.labels(self.host).set(1 if self.log.enabled else 0)
                if not written:
                    self.metrics.log_dropped.labels(self.host).inc()

    def error(self, where: str) -> None:
        """Count an error inside tierwise (the adapter served the request anyway)."""
        if self.metrics is not None:
            self.metrics.plugin_errors.labels(self.host, where).inc()

    def close(self) -> None:
        """Write what is queued (the log also does this at interpreter exit)."""
        if self.log is not None:
            self.log.close()

    def build(
        self,
        decision: Decision | None,
        *,
        scope: Scope | str | None,
        tier: str | None,
        model: str | None,
        ok: bool,
        error: str,
        latency_ms: float | None,
        ttft_ms: float | None,
        tokens_in: int | None,
        tokens_out: int,
        cache_hit: bool,
        summarized: bool,
        cost_usd: float | None,
        ts: float | None,
        request_id: str = "",
    ) -> RequestRecord:
        """The record request() would emit (same arguments, all required); may raise."""
        routed = decision.tier if decision is not None else CACHE_TIER
        served = CACHE_TIER if cache_hit else (tier or routed)
        if tokens_in is None:
            tokens_in = (decision.prompt_tokens if decision is not None else None) or 0
        if cost_usd is None:
            price = self._prices.get(served)
            cost_usd = price.cost(tokens_in, tokens_out) if price and not cache_hit else 0.0
        top_cost = max(p.cost(tokens_in, tokens_out) for p in self._prices.values())
        if cache_hit:
            reason = "cache: hit"
        elif decision is not None:
            reason = reason_key(decision)
        else:
            reason = "default"
        scope_key = scope.key() if isinstance(scope, Scope) else (scope or Scope().key())
        return RequestRecord(
            ts=time.time() if ts is None else ts,
            host=self.host,
            scope=scope_key,
            tier=served,
            routed_tier=routed,
            model=model or (self._models.get(served) or ""),
            score=decision.score if decision is not None else None,
            band=decision.band if decision is not None else "",
            reason=reason,
            reasons=decision.reasons if decision is not None else (),
            cache_hit=cache_hit,
            summarized=summarized,
            probe=decision.probe if decision is not None else False,
            ok=ok,
            error=error[:300],
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            decide_ms=decision.decided_in_ms if decision is not None else None,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=cost_usd,
            top_cost_usd=top_cost,
            request_id=request_id[:200],
            **_adapt_fields(decision),
        )


def _adapt_fields(decision: Decision | None) -> dict[str, Any]:
    """raw_score / sketch / explored from the decision's feedback-loop trace, if any."""
    trace = decision.adapt_trace if decision is not None else {}
    if not trace:
        return {}
    sketch = trace.get("sketch")
    raw = trace.get("raw")
    return {
        "raw_score": float(raw) if isinstance(raw, int | float) else None,
        "sketch": bytes.fromhex(sketch) if isinstance(sketch, str) else None,
        "explored": bool(trace.get("explored")),
    }

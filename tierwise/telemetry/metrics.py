"""Prometheus metrics for routing, built on prometheus-client (what LiteLLM's /metrics serves).

By default the metrics live in prometheus-client's default registry, which is the one
LiteLLM mounts at /metrics when its `prometheus` callback is on: in the proxy process they
show up next to LiteLLM's own, with no extra endpoint. With PROMETHEUS_MULTIPROC_DIR set
(several proxy workers), prometheus-client writes every value to per-process files and the
scrape adds them up; gauges then report the most recent value any worker wrote.

Hosts without a /metrics of their own (the relay, the Open WebUI pipe) call `exposition()`
for the text to serve, or `serve()` for a small HTTP endpoint.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tierwise.telemetry.record import RequestRecord

if TYPE_CHECKING:
    from tierwise.rules import Signals

GIB = 1024**3
# Decisions take tens of microseconds (heuristic) to a few milliseconds (learned scorer).
DECIDE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
# Whole requests: a cache replay to a long cloud answer.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)


class Metrics:
    """Every tierwise metric, registered once in one registry."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        r = registry
        self.requests = Counter(
            "tierwise_requests",
            "Requests routed, by host, serving tier and the reason that decided the tier",
            ["host", "tier", "reason"],
            registry=r,
        )
        self.errors = Counter(
            "tierwise_request_errors",
            "Requests that failed on their tier",
            ["host", "tier"],
            registry=r,
        )
        self.cache_hits = Counter(
            "tierwise_cache_hits",
            "Requests answered from the semantic cache",
            ["host"],
            registry=r,
        )
        self.summarized = Counter(
            "tierwise_summarizations",
            "Requests whose context was summarized to fit the tier",
            ["host", "tier"],
            registry=r,
        )
        self.fallbacks = Counter(
            "tierwise_fallbacks",
            "Requests served by another tier than the one decided",
            ["host", "routed_tier", "tier"],
            registry=r,
        )
        self.plugin_errors = Counter(
            "tierwise_plugin_errors",
            "Errors inside tierwise itself (the request was still served)",
            ["host", "where"],
            registry=r,
        )
        self.cost = Counter(
            "tierwise_cost_usd",
            "Cost of served requests at the tiers' prices",
            ["host", "tier"],
            registry=r,
        )
        self.top_cost = Counter(
            "tierwise_top_tier_cost_usd",
            "What the same requests would have cost on the most expensive tier",
            ["host"],
            registry=r,
        )
        self.log_dropped = Counter(
            "tierwise_log_dropped_rows",
            "Decision-log rows not written (log off, or its queue full)",
            ["host"],
            registry=r,
        )
        self.decide_seconds = Histogram(
            "tierwise_decision_seconds",
            "Time to decide a tier (score + rule chain)",
            ["host"],
            buckets=DECIDE_BUCKETS,
            registry=r,
        )
        self.latency_seconds = Histogram(
            "tierwise_request_seconds",
            "Whole request latency, by serving tier",
            ["host", "tier"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft_seconds = Histogram(
            "tierwise_ttft_seconds",
            "Time to first token, by serving tier",
            ["host", "tier"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.latency_ema = Gauge(
            "tierwise_tier_ttft_ema_ms",
            "Time-to-first-token EMA per tier, as the SLA rule sees it",
            ["tier"],
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.gpu_free = Gauge(
            "tierwise_gpu_free_bytes",
            "Free GPU memory per watched device or tier, as the VRAM rule sees it",
            ["gpu"],
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.kv_cache = Gauge(
            "tierwise_gpu_kv_cache_usage_ratio",
            "vLLM KV-cache usage per tier (0..1), as the VRAM rule sees it",
            ["gpu"],
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.log_up = Gauge(
            "tierwise_decision_log_up",
            "1 while the decision log is writing, 0 once it turned itself off",
            ["host"],
            multiprocess_mode="min",
            registry=r,
        )

    def observe(self, record: RequestRecord) -> None:
        """Count one finished request."""
        host, tier = record.host, record.tier
        self.requests.labels(host, tier, record.reason).inc()
        if not record.ok:
            self.errors.labels(host, tier).inc()
        if record.cache_hit:
            self.cache_hits.labels(host).inc()
        if record.summarized:
            self.summarized.labels(host, tier).inc()
        if record.fallback:
            self.fallbacks.labels(host, record.routed_tier, tier).inc()
        if record.cost_usd:
            self.cost.labels(host, tier).inc(record.cost_usd)
        if record.top_cost_usd:
            self.top_cost.labels(host).inc(record.top_cost_usd)
        if record.decide_ms is not None:
            self.decide_seconds.labels(host).observe(record.decide_ms / 1000)
        if record.latency_ms is not None:
            self.latency_seconds.labels(host, tier).observe(record.latency_ms / 1000)
        if record.ttft_ms is not None:
            self.ttft_seconds.labels(host, tier).observe(record.ttft_ms / 1000)

    def update_signals(self, signals: Signals) -> None:
        """Copy the live signals (latency EMA, GPU readings) into the gauges."""
        for tier, ema_ms in signals.latency.snapshot().items():
            self.latency_ema.labels(tier).set(ema_ms)
        for key, reading in signals.gpu.snapshot().items():
            if reading.free_gb is not None:
                self.gpu_free.labels(key).set(reading.free_gb * GIB)
            if reading.kv_cache_usage is not None:
                self.kv_cache.labels(key).set(reading.kv_cache_usage)


_by_registry: dict[int, Metrics] = {}
_lock = threading.Lock()


def metrics_for(registry: CollectorRegistry = REGISTRY) -> Metrics:
    """The Metrics of `registry`, created on first use (a registry refuses the same name
    twice, and several routers in one process must share one set)."""
    with _lock:
        found = _by_registry.get(id(registry))
        if found is None or found.registry is not registry:
            found = _by_registry[id(registry)] = Metrics(registry)
        return found


def scrape_registry(registry: CollectorRegistry = REGISTRY) -> CollectorRegistry:
    """What a scrape should read: the registry, or every worker's files in multiprocess mode."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or registry is not REGISTRY:
        return registry
    from prometheus_client import multiprocess

    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged, path=directory)
    return merged


def exposition(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """(body, content type) of a Prometheus scrape, for hosts that serve /metrics themselves."""
    return generate_latest(scrape_registry(registry)), CONTENT_TYPE_LATEST


def serve(port: int, addr: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY) -> None:
    """Serve /metrics on a daemon thread, for hosts without a /metrics of their own."""
    start_http_server(port, addr=addr, registry=scrape_registry(registry))

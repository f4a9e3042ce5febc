"""Prometheus metrics: counted per request, readable where LiteLLM serves /metrics, and
added up across worker processes in prometheus-client's multiprocess mode."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import three_tiers
from tierwise.config import load_config
from tierwise.router import TierRouter
from tierwise.signals.vram import GpuReading
from tierwise.telemetry import Telemetry
from tierwise.telemetry.metrics import exposition, metrics_for


def make() -> tuple[TierRouter, Telemetry, CollectorRegistry]:
    router = TierRouter(load_config(three_tiers(local={"sla": {"max_ttft_ms": 1000}})))
    registry = CollectorRegistry()
    return router, Telemetry.for_router(router, "litellm", registry=registry), registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_requests_are_counted_by_tier_and_reason() -> None:
    router, telemetry, registry = make()
    easy = router.decide_text("hi")
    for _ in range(3):
        telemetry.request(easy, latency_ms=200, ttft_ms=50, tokens_in=10, tokens_out=10)
    telemetry.request(easy, tier="cloud", ok=True, error="local: 503", tokens_in=10)
    telemetry.request(None, cache_hit=True, latency_ms=3, tokens_in=10, tokens_out=10)
    telemetry.request(easy, ok=False, error="boom")
    telemetry.request(easy, summarized=True)
    reason = "complexity: LOW"
    assert (
        value(registry, "tierwise_requests_total", host="litellm", tier="local", reason=reason) == 5
    )
    assert (
        value(registry, "tierwise_requests_total", host="litellm", tier="cloud", reason=reason) == 1
    )
    assert value(registry, "tierwise_cache_hits_total", host="litellm") == 1
    assert (
        value(
            registry, "tierwise_fallbacks_total", host="litellm", routed_tier="local", tier="cloud"
        )
        == 1
    )
    assert value(registry, "tierwise_request_errors_total", host="litellm", tier="local") == 1
    assert value(registry, "tierwise_summarizations_total", host="litellm", tier="local") == 1
    assert value(registry, "tierwise_decision_seconds_count", host="litellm") == 6
    assert value(registry, "tierwise_request_seconds_count", host="litellm", tier="local") == 3
    assert (
        value(registry, "tierwise_ttft_seconds_bucket", host="litellm", tier="local", le="0.05")
        == 3
    )
    assert value(registry, "tierwise_cost_usd_total", host="litellm", tier="cloud") == (
        pytest.approx(30 / 1e6)
    )
    assert value(registry, "tierwise_top_tier_cost_usd_total", host="litellm") > 0


def test_gauges_follow_the_live_signals_and_errors_are_counted() -> None:
    router, telemetry, registry = make()
    router.record("local", ok=True, ttft_ms=1800)
    router.signals.gpu.put("nvml:0", GpuReading(taken_at=time.monotonic(), free_gb=2.5))
    router.signals.gpu.put("hpc", GpuReading(taken_at=time.monotonic(), kv_cache_usage=0.4))
    telemetry.request(router.decide_text("hi"))
    ema = value(registry, "tierwise_tier_ttft_ema_ms", tier="local")
    assert ema == pytest.approx(router.signals.latency.snapshot()["local"]) and ema > 1000
    assert value(registry, "tierwise_gpu_free_bytes", gpu="nvml:0") == 2.5 * 1024**3
    assert value(registry, "tierwise_gpu_kv_cache_usage_ratio", gpu="hpc") == 0.4
    telemetry.error("pre-call")
    assert value(registry, "tierwise_plugin_errors_total", host="litellm", where="pre-call") == 1


def test_exposition_is_prometheus_text() -> None:
    _, telemetry, registry = make()
    telemetry.request(None, cache_hit=True)
    body, content_type = exposition(registry)
    assert content_type.startswith("text/plain")
    assert b'tierwise_cache_hits_total{host="litellm"} 1.0' in body


def test_metrics_for_shares_one_set_per_registry() -> None:
    registry = CollectorRegistry()
    assert metrics_for(registry) is metrics_for(registry)
    assert metrics_for(CollectorRegistry()) is not metrics_for(registry)


def test_litellm_metrics_endpoint_serves_ours() -> None:
    """LiteLLM mounts make_metrics_asgi_app(REGISTRY) at /metrics: ours are in that registry."""
    endpoint = pytest.importorskip("litellm.integrations.prometheus_metrics_endpoint")
    from prometheus_client import REGISTRY

    router = TierRouter(load_config(three_tiers()))
    telemetry = Telemetry.for_router(router, "litellm-endpoint-test")
    telemetry.request(router.decide_text("hi"), latency_ms=10)
    app = endpoint.make_metrics_asgi_app(REGISTRY)

    async def scrape() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
            return await client.get("/")

    response = asyncio.run(scrape())
    assert response.status_code == 200
    assert 'tierwise_requests_total{host="litellm-endpoint-test"' in response.text


WORKER = textwrap.dedent(
    """
    import sys
    from tierwise.config import load_config
    from tierwise.router import TierRouter
    from tierwise.telemetry import Telemetry
    router = TierRouter(load_config(None))
    telemetry = Telemetry.for_router(router, "litellm")
    for _ in range(int(sys.argv[1])):
        telemetry.request(router.decide_text("hi"), latency_ms=10)
    """
)
SCRAPE = "from tierwise.telemetry.metrics import exposition; print(exposition()[0].decode())"


@pytest.mark.integration
def test_multiprocess_mode_adds_up_the_workers(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (3, 4):
        subprocess.run([sys.executable, "-c", WORKER, str(n)], env=env, check=True, timeout=120)
    scraped = subprocess.run(
        [sys.executable, "-c", SCRAPE], env=env, check=True, capture_output=True, timeout=120
    ).stdout.decode()
    line = next(x for x in scraped.splitlines() if x.startswith("tierwise_requests_total{"))
    assert line.endswith(" 7.0"), line

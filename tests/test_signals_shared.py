"""Health, SLA EMA, probe counters and GPU readings shared through a real redis-server;
Redis down -> local."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import three_tiers
from tests.servers import Service, start_redis
from tierwise.config import load_config
from tierwise.faults import caller_of
from tierwise.processes import free_port
from tierwise.request import ChatRequest, Scope
from tierwise.router import TierRouter
from tierwise.signals.shared import RedisLink, SharedGpu, SharedHealth
from tierwise.signals.vram import GpuReading

EASY = "What is 2+2?"
pytestmark = pytest.mark.integration


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Service]:
    service = start_redis(tmp_path)
    yield service
    service.stop()


def replica(url: str, local: dict[str, object] | None = None) -> TierRouter:
    rules = {"health": {"max_failures": 2, "cooldown_s": 30}}
    config = three_tiers(rules=rules, local=local or {})
    config["tiers"][0]["sla"] = {"max_ttft_ms": 500, "seed_ms": 100, "probe_every": 4}
    return TierRouter(load_config({**config, "redis_url": url}))


def caller(name: str) -> str | None:
    return caller_of(Scope(user=name))


def test_a_breaker_opened_behind_one_replica_is_seen_by_the_other(redis: Service) -> None:
    a, b = replica(redis.url), replica(redis.url)
    assert isinstance(a.signals.health, SharedHealth)
    a.record("local", ok=False, error="refused", caller=caller("alice"))
    b.record("local", ok=False, error="refused", caller=caller("bob"))
    for router in (a, b):
        decision = router.decide(ChatRequest.from_text(EASY))
        assert decision.tier == "hpc"
        assert any("cooling down 30s (last error: refused)" in r for r in decision.reasons)


def test_the_sla_ema_and_probe_counter_are_shared(redis: Service) -> None:
    a, b = replica(redis.url), replica(redis.url)
    a.record("local", ok=True, ttft_ms=2000)  # (100 + 2000) / 2 = 1050 > 500
    assert b.signals.latency.ema_ms("local", 100) == pytest.approx(1050)
    tiers = [r.decide(ChatRequest.from_text(EASY)).tier for r in (a, b, a, b)]
    assert tiers.count("local") == 1  # one probe in four, counted across both replicas


def test_gpu_readings_are_shared_and_the_freshest_wins(redis: Service) -> None:
    vram = {"source": "vllm", "metrics_url": "http://127.0.0.1:9/metrics"}
    a, b = (replica(redis.url, local={"vram": vram}) for _ in range(2))
    assert isinstance(b.signals.gpu, SharedGpu)
    full = GpuReading(taken_at=a.signals.gpu.now(), kv_cache_usage=0.99, waiting=7)
    a.signals.gpu.put("local", full)  # replica A's /metrics poller saw a full KV cache
    decision = b.decide(ChatRequest.from_text(EASY))
    assert decision.tier == "hpc"
    assert "vram: local KV cache 99% > 95%; skipped" in decision.reasons
    assert b.signals.gpu.get("local") == GpuReading(
        taken_at=pytest.approx(full.taken_at, abs=0.5), kv_cache_usage=0.99, waiting=7
    )
    b.signals.gpu.put("local", GpuReading(taken_at=b.signals.gpu.now(), kv_cache_usage=0.2))
    for router in (a, b):  # B's newer reading replaces A's, in A too
        assert router.decide(ChatRequest.from_text(EASY)).tier == "local"
    a.signals.gpu.put("local", full)  # an older reading never overwrites a newer one
    reading = b.signals.gpu.get("local")
    assert reading is not None and reading.kv_cache_usage == 0.2


def test_a_cards_reading_is_shared_on_its_machine_only(redis: Service) -> None:
    def gpu(host: str, wall: float = 1000.0) -> SharedGpu:
        return SharedGpu(RedisLink(redis.url), host=host, wall=lambda: wall)

    worker_1, worker_2, elsewhere = gpu("node-a"), gpu("node-a"), gpu("node-b")
    worker_1.put("nvml:0", GpuReading(taken_at=worker_1.now(), free_gb=1.5, total_gb=80))
    assert free_gb(worker_2.get("nvml:0")) == 1.5
    assert elsewhere.get("nvml:0") is None  # node-b's card 0 is another card
    later = gpu("node-a", wall=1000.0 + 11)  # 11 s on: stale (stale_after_s = 10)
    assert later.get("nvml:0") is None


def free_gb(reading: GpuReading | None) -> float | None:
    return None if reading is None else reading.free_gb


def test_without_redis_each_process_keeps_its_own_state_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tierwise.signals.shared")
    router = replica(f"redis://127.0.0.1:{free_port()}/0")
    for name in ("alice", "bob"):
        router.record("local", ok=False, error="refused", caller=caller(name))
    assert router.decide(ChatRequest.from_text(EASY)).tier == "hpc"  # local state still works
    router.signals.gpu.put("local", GpuReading(taken_at=router.signals.gpu.now(), free_gb=3.0))
    assert free_gb(router.signals.gpu.get("local")) == 3.0
    said = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(said) == 1

"""Health, SLA EMA and probe counters shared through a real redis-server; Redis down -> local."""

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
from tierwise.signals.shared import SharedHealth

EASY = "What is 2+2?"
pytestmark = pytest.mark.integration


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Service]:
    service = start_redis(tmp_path)
    yield service
    service.stop()


def replica(url: str, **rules: object) -> TierRouter:
    config = three_tiers(rules={"health": {"max_failures": 2, "cooldown_s": 30}, **rules})
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


def test_without_redis_each_process_keeps_its_own_state_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tierwise.signals.shared")
    router = replica(f"redis://127.0.0.1:{free_port()}/0")
    for name in ("alice", "bob"):
        router.record("local", ok=False, error="refused", caller=caller(name))
    assert router.decide(ChatRequest.from_text(EASY)).tier == "hpc"  # local state still works
    said = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(said) == 1

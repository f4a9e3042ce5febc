"""vLLM /metrics parsing and the background poller's readings."""

from __future__ import annotations

import pytest

from litellm_plugin.metrics import (
    MetricsPoller,
    ReplicaLoad,
    Target,
    least_loaded,
    parse_vllm_metrics,
)
from tierwise.signals.vram import GpuState

V0 = """# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="llama"} 0.42
vllm:num_requests_waiting{model_name="llama"} 3.0
vllm:num_requests_running{model_name="llama"} 7.0
"""
V1 = """vllm:kv_cache_usage_perc{engine="0",model_name="a"} 0.3
vllm:kv_cache_usage_perc{engine="1",model_name="a"} 0.9
vllm:num_requests_waiting{engine="0",model_name="a"} 2
vllm:num_requests_waiting{engine="1",model_name="a"} 5
"""


def test_parses_both_kv_cache_names_and_waiting() -> None:
    old = parse_vllm_metrics(V0)
    assert (old.kv_cache_usage, old.waiting) == (0.42, 3)
    new = parse_vllm_metrics(V1)  # several engines: the fullest cache, the total queue
    assert (new.kv_cache_usage, new.waiting) == (0.9, 7)
    assert parse_vllm_metrics("other_metric 1\nvllm:num_requests_waiting NaN\n").empty


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_poller_feeds_tier_readings_and_replica_loads() -> None:
    clock = Clock()
    gpu = GpuState(stale_after_s=5, clock=clock)
    loads = ReplicaLoad(gpu)
    pages = {
        "http://a/metrics": V0,
        "http://b/metrics": "vllm:kv_cache_usage_perc 0.1\nvllm:num_requests_waiting 0\n",
    }

    def fetch(url: str, timeout: float) -> str:
        if url not in pages:
            raise ConnectionError("refused")
        return pages[url]

    targets = [
        Target("http://a/metrics", "hpc"),
        Target("http://b/metrics", "hpc"),
        Target("http://down/metrics", "cloud"),
    ]
    poller = MetricsPoller(targets, gpu, loads, fetch=fetch)
    poller.poll_once()
    reading = gpu.get("hpc")  # the tier's best replica
    assert reading is not None and (reading.kv_cache_usage, reading.waiting) == (0.1, 0)
    assert gpu.get("cloud") is None and "refused" in poller.errors["http://down/metrics"]
    urls = {"a": "http://a/metrics", "b": "http://b/metrics"}
    assert least_loaded(urls, loads) == "b"
    assert least_loaded({**urls, "c": "http://down/metrics"}, loads) is None  # missing -> host
    clock.now += 10  # readings go stale: no decision on old data
    assert gpu.get("hpc") is None and least_loaded(urls, loads) is None


@pytest.mark.integration
def test_poller_reads_a_real_server(stub_factory) -> None:  # type: ignore[no-untyped-def]
    stub = stub_factory("vllm")
    stub.control(kv_cache_usage=0.77, waiting=4)
    gpu = GpuState()
    loads = ReplicaLoad(gpu)
    MetricsPoller([Target(f"{stub.url}/metrics", "hpc")], gpu, loads, timeout_s=2).poll_once()
    reading = gpu.get("hpc")
    assert reading is not None and (reading.kv_cache_usage, reading.waiting) == (0.77, 4)

"""The rule chain through TierRouter.decide(): each rule's effect and its reason line."""

from __future__ import annotations

import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import three_tiers
from tierwise.config import ConfigError, load_config
from tierwise.request import ChatRequest
from tierwise.router import TierRouter
from tierwise.rules import RoutingError, Signals
from tierwise.scoring.base import Band, Score, Scorer
from tierwise.signals.health import HealthTracker
from tierwise.signals.vram import GIB, GpuReading, GpuState, NvmlMonitor

EASY = "What is the capital of France?"
HARD = (
    "Prove that every bounded monotone sequence converges, then derive the consequences for "
    "series and analyze the rigorous role of completeness."
)


class FixedScorer(Scorer):
    """Routing tests should not depend on the heuristic's weights."""

    name = "fixed"

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def score(self, request: ChatRequest) -> Score:
        return Score(self.value, Band.of(self.value, self.bands), self.name)


def router(
    config: dict[str, Any] | None = None, score: float | None = None, **kw: Any
) -> TierRouter:
    scorer = FixedScorer(score) if score is not None else None
    return TierRouter(load_config(config or three_tiers()), scorer=scorer, **kw)


def user(content: Any, **body: Any) -> ChatRequest:
    return ChatRequest.from_openai({"messages": [{"role": "user", "content": content}], **body})


def test_easy_goes_local_and_hard_goes_cloud_with_the_heuristic() -> None:
    r = router()
    easy, hard = r.decide_text(EASY), r.decide_text(HARD)
    assert easy.tier == "local" and easy.fallback_chain == ("hpc", "cloud")
    assert hard.tier == "cloud" and hard.fallback_chain == ("hpc", "local")
    assert hard.reasons[0].startswith("complexity: score")


def test_thresholds_split_n_tiers() -> None:
    config = three_tiers()
    config["tiers"].append(
        {"name": "frontier", "order": 3, "models": ["f"], "min_score": 0.9, "context_window": 10**6}
    )
    picks = {s: router(config, score=s).decide_text("x").tier for s in (0.1, 0.5, 0.8, 0.95)}
    assert picks == {0.1: "local", 0.5: "hpc", 0.8: "cloud", 0.95: "frontier"}


def test_images_need_a_vision_tier() -> None:
    request = user(
        [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "u"}}]
    )
    decision = router(score=0.1).decide(request)
    assert decision.tier == "cloud"
    assert decision.reasons[0] == "capability: vision needed; skipped local, hpc"
    assert "chosen: cloud" in decision.reasons[-1]


def test_no_vision_tier_is_a_clear_error() -> None:
    config = three_tiers(cloud={"capabilities": ["tools"]})
    request = user([{"type": "image_url", "image_url": {"url": "u"}}])
    with pytest.raises(RoutingError, match=r"needs 'vision'.*add 'vision'"):
        router(config).decide(request)


def test_tools_need_a_tool_capable_tier() -> None:
    config = three_tiers(local={"capabilities": []})
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    decision = router(config, score=0.0).decide(user("call it", tools=tools))
    assert decision.tier == "hpc"
    assert "capability: tools needed; skipped local" in decision.reasons


def test_long_conversations_skip_small_windows() -> None:
    long_text = "word " * 5000  # ~5000 tokens: over local's 4096 window
    decision = router(score=0.0).decide(user(long_text))
    assert decision.tier == "hpc"
    assert decision.prompt_tokens is not None and decision.prompt_tokens > 4096
    assert any(r.startswith("context:") and "local" in r for r in decision.reasons)


def test_too_long_for_every_window_names_the_windows() -> None:
    config = three_tiers(cloud={"context_window": 16000}, hpc={"context_window": 16000})
    with pytest.raises(RoutingError) as info:
        router(config, score=0.0).decide(user("word " * 20000))
    message = str(info.value)
    assert "local=4096" in message and "cloud=16000" in message and "tokens" in message


class FakeNvml:
    """The five pynvml functions the monitor uses, with settable free memory per device."""

    def __init__(self, free_gb: dict[int, float], total_gb: float = 24.0) -> None:
        self.free_gb = dict(free_gb)
        self.total_gb = total_gb
        self.fail_init = False
        self.shutdowns = 0
        self.lock = threading.Lock()

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if index not in self.free_gb:
            raise RuntimeError(f"Invalid Argument: device {index}")
        return index

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        with self.lock:
            free = self.free_gb[handle] * GIB
        return SimpleNamespace(
            free=free, total=self.total_gb * GIB, used=self.total_gb * GIB - free
        )

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1


def _wait_for(predicate: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def test_vram_demotes_a_full_gpu_tier_and_restores_it() -> None:
    config = three_tiers(local={"vram": {"device": 0, "min_free_gb": 4}})
    nvml = FakeNvml({0: 10.0})
    r = router(config, score=0.0)
    r.start_monitors(nvml=nvml, interval_s=0.02)
    try:
        assert r.decide_text("x").tier == "local"
        nvml.free_gb[0] = 1.5
        _wait_for(lambda: r.decide_text("x").tier == "hpc")
        decision = r.decide_text("x")
        assert "vram: local 1.5 GB free < 4 GB headroom; skipped" in decision.reasons
        nvml.free_gb[0] = 9.0
        _wait_for(lambda: r.decide_text("x").tier == "local")
    finally:
        r.close()
    assert nvml.shutdowns == 1


def test_vram_without_a_gpu_leaves_routing_alone() -> None:
    config = three_tiers(local={"vram": {"device": 0, "min_free_gb": 4}})
    nvml = FakeNvml({0: 1.0})
    nvml.fail_init = True
    monitor = NvmlMonitor(GpuState(), [0], nvml=nvml)
    assert not monitor.start()
    assert "NVML Shared Library Not Found" in monitor.error
    r = router(config, score=0.0)
    r.start_monitors(nvml=nvml)
    assert r.decide_text("x").tier == "local"
    r.close()


def test_stale_vram_readings_are_ignored() -> None:
    now = [100.0]
    gpu = GpuState(stale_after_s=5, clock=lambda: now[0])
    gpu.put("nvml:0", GpuReading(taken_at=100.0, free_gb=0.5))
    config = three_tiers(local={"vram": {"device": 0, "min_free_gb": 4}})
    r = router(config, score=0.0, signals=Signals(gpu=gpu))
    assert r.decide_text("x").tier == "hpc"
    now[0] = 106.0
    assert r.decide_text("x").tier == "local"


def test_vllm_kv_cache_and_queue_readings_demote() -> None:
    config = three_tiers(
        hpc={"vram": {"source": "vllm", "metrics_url": "http://h/metrics", "max_waiting": 4}}
    )
    gpu = GpuState()
    r = router(config, score=0.5, signals=Signals(gpu=gpu))
    gpu.put("hpc", GpuReading(taken_at=gpu.now(), kv_cache_usage=0.99, waiting=0))
    decision = r.decide_text("x")
    assert decision.tier == "cloud" and "vram: hpc KV cache 99% > 95%; skipped" in decision.reasons
    gpu.put("hpc", GpuReading(taken_at=gpu.now(), kv_cache_usage=0.2, waiting=9))
    assert "vram: hpc 9 requests waiting > 4; skipped" in r.decide_text("x").reasons
    gpu.put("hpc", GpuReading(taken_at=gpu.now(), kv_cache_usage=0.2, waiting=1))
    assert r.decide_text("x").tier == "hpc"


def test_sla_demotes_a_slow_tier_and_probes_let_it_recover() -> None:
    config = three_tiers(local={"sla": {"max_ttft_ms": 500, "probe_every": 5, "alpha": 0.5}})
    r = router(config, score=0.0)
    for _ in range(4):
        r.record("local", ok=True, ttft_ms=2000)
    tiers = [r.decide_text("x") for _ in range(10)]
    assert [d.tier for d in tiers].count("local") == 2  # one probe in five
    probe = next(d for d in tiers if d.tier == "local")
    assert probe.probe and "sent as recovery probe (1 in 5)" in probe.reasons[-1]
    demoted = next(d for d in tiers if d.tier == "hpc")
    assert any(reason.startswith("sla: local EMA") for reason in demoted.reasons)
    # The probes come back fast: the EMA falls under the SLA and local serves again.
    for _ in range(6):
        r.record("local", ok=True, ttft_ms=100)
    assert [r.decide_text("x").tier for _ in range(5)] == ["local"] * 5
    assert r.signals.latency.ema_ms("local", 250) < 500


def test_sla_counts_probes_only_for_requests_the_slow_tier_would_serve() -> None:
    config = three_tiers(local={"sla": {"max_ttft_ms": 500, "probe_every": 2}})
    r = router(config, score=0.9)  # every request goes to cloud anyway
    for _ in range(5):
        r.record("local", ok=True, ttft_ms=5000)
    for _ in range(3):
        assert r.decide_text("x").tier == "cloud"
    r.scorer = FixedScorer(0.0)
    assert r.decide_text("x").tier == "hpc"  # first easy request: counted, not yet a probe
    assert r.decide_text("x").tier == "local"  # second: the probe


def test_warm_up_seed_keeps_one_cold_start_from_demoting() -> None:
    config = three_tiers(local={"sla": {"max_ttft_ms": 1000, "seed_ms": 200}})
    r = router(config, score=0.0)
    r.record("local", ok=True, ttft_ms=1700)  # a cold start: (200 + 1700) / 2 = 950
    assert r.decide_text("x").tier == "local"


def test_health_cools_down_a_failing_tier_then_retries_it() -> None:
    now = [0.0]
    signals = Signals(health=HealthTracker(clock=lambda: now[0]))
    config = three_tiers(rules={"health": {"max_failures": 2, "cooldown_s": 30}})
    r = router(config, score=0.0, signals=signals)
    r.record("local", ok=False, error="connection refused")
    assert r.decide_text("x").tier == "local"
    r.record("local", ok=False, error="connection refused")
    decision = r.decide_text("x")
    assert decision.tier == "hpc"
    assert (
        "health: local cooling down 30s (last error: connection refused); skipped"
        in decision.reasons
    )
    now[0] = 31.0
    assert r.decide_text("x").tier == "local"


def test_demotion_never_removes_the_last_tier() -> None:
    config = {"tiers": [three_tiers()["tiers"][0]], "rules": {"health": {"max_failures": 1}}}
    r = router(config, score=0.0)
    r.record("local", ok=False)
    decision = r.decide_text("x")
    assert decision.tier == "local"
    assert decision.reasons[-1].endswith("kept: no other tier can serve")


def test_reasons_follow_the_configured_rule_order() -> None:
    config = three_tiers(local={"vram": {"device": 0, "min_free_gb": 4}})
    gpu = GpuState()
    gpu.put("nvml:0", GpuReading(taken_at=gpu.now(), free_gb=1.0))
    request = user(
        [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "u"}}]
    )
    first = router(config, score=0.0, signals=Signals(gpu=gpu)).decide(request)
    assert [r.split(":")[0] for r in first.reasons][:2] == ["capability", "complexity"]
    config["rules"] = {"order": ["complexity", "capability", "vram"]}
    second = router(config, score=0.0, signals=Signals(gpu=gpu)).decide(request)
    assert [r.split(":")[0] for r in second.reasons][:2] == ["complexity", "capability"]


@pytest.fixture
def rules_module(tmp_path: Path) -> Any:
    (tmp_path / "site_rules.py").write_text(
        textwrap.dedent(
            """
            def night_shift(state):
                state.candidates = [t for t in state.candidates if t.name != "cloud"]
                state.reasons.append("cloud is off at night")

            def broken(state):
                raise ValueError("oops")

            def drop_all(state):
                state.candidates = []

            class PreferHpc:
                def apply(self, state):
                    state.floor = 1
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    yield
    sys.path.remove(str(tmp_path))
    sys.modules.pop("site_rules", None)


def test_custom_rules_load_from_dotted_paths(rules_module: Any) -> None:
    config = {**three_tiers(), "rules": {"custom": ["site_rules:night_shift"]}}
    decision = router(config, score=0.9).decide_text("x")
    assert decision.tier == "hpc"
    assert "custom: cloud is off at night" in decision.reasons
    config["rules"] = {"custom": ["site_rules.PreferHpc"]}
    assert router(config, score=0.0).decide_text("x").tier == "hpc"


def test_a_broken_custom_rule_is_logged_and_ignored(rules_module: Any) -> None:
    config = {**three_tiers(), "rules": {"custom": ["site_rules:broken"]}}
    decision = router(config, score=0.0).decide_text("x")
    assert decision.tier == "local"
    assert any("site_rules:broken failed" in r for r in decision.reasons)
    config["rules"] = {"custom": ["site_rules:drop_all"]}
    with pytest.raises(RoutingError, match="custom rules removed every tier"):
        router(config, score=0.0).decide_text("x")


def test_an_unloadable_custom_rule_is_a_config_error(rules_module: Any) -> None:
    with pytest.raises(ConfigError, match="cannot load 'site_rules:missing'"):
        router({**three_tiers(), "rules": {"custom": ["site_rules:missing"]}})


def test_core_imports_no_host() -> None:
    """The routing core must not pull LiteLLM or Open WebUI into the process."""
    import subprocess

    code = (
        "import sys, tierwise.router, tierwise.cli, tierwise.rules, tierwise.request;"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('litellm','open_webui')];"
        "print(bad); raise SystemExit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kind", ["json_object", "json_schema"])
def test_json_response_format_needs_a_json_tier(kind: str) -> None:
    config = three_tiers()
    config["tiers"][2]["capabilities"] = ["tools", "json"]
    r = router(config, score=0.0)
    decision = r.decide(user(EASY, response_format={"type": kind}))
    assert decision.tier == "cloud"
    assert any("capability: json needed" in reason for reason in decision.reasons)
    assert r.decide(user(EASY, response_format={"type": "text"})).tier == "local"

"""The reason key names the rule that decided the tier, from real router decisions."""

from __future__ import annotations

from typing import Any

from tests.conftest import three_tiers
from tierwise.config import load_config
from tierwise.request import ChatRequest
from tierwise.router import TierRouter
from tierwise.telemetry.reasons import reason_key

TURN = {"role": "user", "content": "hi"}


def router(**overrides: Any) -> TierRouter:
    return TierRouter(load_config(three_tiers(**overrides)))


def image_request(text: str) -> ChatRequest:
    content = [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
    ]
    return ChatRequest.from_openai({"messages": [{"role": "user", "content": content}]})


def test_complexity_decides_when_nothing_else_acted() -> None:
    decision = router().decide_text("hi")
    assert (decision.tier, reason_key(decision)) == ("local", "complexity: LOW")


def test_capability_decides_for_an_image() -> None:
    decision = router().decide(image_request("What is this?"))
    assert (decision.tier, reason_key(decision)) == ("cloud", "capability: vision")


def test_context_decides_for_a_long_easy_conversation() -> None:
    turns = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": "hello there, how are you?"}
        for i in range(600)
    ]
    decision = router().decide(ChatRequest.from_openai({"messages": [*turns, TURN]}))
    assert decision.band == "LOW" and decision.tier == "hpc"
    assert reason_key(decision) == "context: too long for local"


def test_sla_demotion_and_probe() -> None:
    r = router(local={"sla": {"max_ttft_ms": 100, "probe_every": 2}})
    r.record("local", ok=True, ttft_ms=5000)
    keys = [reason_key(r.decide_text("hi")) for _ in range(2)]
    assert keys == ["sla: local slow", "sla: local probe"]


def test_health_cool_down() -> None:
    r = router()
    for _ in range(3):
        r.record("local", ok=False, error="503")
    decision = r.decide_text("hi")
    assert decision.tier == "hpc" and reason_key(decision) == "health: local cooling down"


def test_numbers_do_not_split_a_reason() -> None:
    r = router(local={"sla": {"max_ttft_ms": 100}})
    r.record("local", ok=True, ttft_ms=5000)
    first = reason_key(r.decide_text("hi"))
    r.record("local", ok=True, ttft_ms=9000)
    assert reason_key(r.decide_text("hi")) == first

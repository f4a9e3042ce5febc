"""The rule chain prefers "summarize and stay" over "escalate for context" for easy questions."""

from __future__ import annotations

from typing import Any

import pytest

from tests.summarize_helpers import Recorder, chat, config, request, router, sent_tokens
from tierwise.config import load_config
from tierwise.router import TierRouter
from tierwise.rules import RoutingError

HARD = (
    "Design a distributed consensus protocol tolerant to Byzantine faults, prove its safety "
    "and liveness, and analyze its message complexity."
)


def _off(**tiers: Any) -> TierRouter:
    data = config(**tiers).model_dump()
    data["summarize"] = {"enabled": False}
    return TierRouter(load_config(data))


def test_easy_question_in_a_long_chat_stays_local_with_a_summary() -> None:
    r = router(Recorder())
    req = request(chat(12))
    decision = r.decide(req)
    assert decision.tier == "local" and decision.needs_fit
    assert any(x.startswith("context: summarize and stay on local") for x in decision.reasons)
    assert decision.as_dict()["needs_fit"] is True
    fitted = r.prepare(req, decision)
    assert sent_tokens(fitted.messages) <= fitted.usable_tokens


def test_without_summarization_the_same_chat_escalates_for_context() -> None:
    decision = _off().decide(request(chat(12)))
    assert decision.tier == "hpc" and not decision.needs_fit
    assert any(
        "context: escalated to hpc for context: local cannot hold" in x for x in decision.reasons
    )


def test_a_tier_with_summary_disabled_escalates() -> None:
    r = router(Recorder(), local={"summary": {"enabled": False}})
    decision = r.decide(request(chat(12)))
    assert decision.tier == "hpc"
    assert any("escalated to hpc for context" in x for x in decision.reasons)


def test_hard_question_goes_where_its_complexity_says_without_summarizing() -> None:
    messages = chat(12)
    messages[-1] = {"role": "user", "content": HARD}
    decision = router(Recorder()).decide(request(messages))
    assert decision.tier == "cloud" and not decision.needs_fit
    assert not any("summarize and stay" in x or "escalated" in x for x in decision.reasons)


def test_a_chat_longer_than_hpc_stays_on_hpc_for_a_medium_question() -> None:
    r = router(Recorder(), hpc={"context_window": 9000, "output_reserve": 512})
    messages = chat(16)
    messages[-1] = {
        "role": "user",
        "content": "In Python, parse a CSV file and return the mean of each numeric column.",
    }
    req = request(messages)
    decision = r.decide(req)
    assert decision.band == "MEDIUM"
    assert decision.tier == "hpc" and decision.needs_fit
    assert any("summarize and stay on hpc" in x for x in decision.reasons)
    assert _off(hpc={"context_window": 9000, "output_reserve": 512}).decide(req).tier == "cloud"


def test_fallback_tiers_can_be_prepared_by_name() -> None:
    r = router(Recorder())
    req = request(chat(12))
    decision = r.decide(req)
    assert decision.fallback_chain == ("hpc", "cloud")
    for tier in decision.fallback_chain:
        assert r.prepare(req, tier).action == "fits"


@pytest.mark.parametrize("enabled", [True, False])
def test_a_single_message_larger_than_every_window_is_a_clear_400(enabled: bool) -> None:
    r = router(Recorder()) if enabled else _off()
    huge = [{"role": "user", "content": "word " * 210_000}]
    with pytest.raises(RoutingError) as caught:
        r.decide(request(huge))
    message = str(caught.value)
    assert caught.value.status_code == 400
    assert "latest message needs" in message or "conversation is" in message
    for window in ("local=4096 (3379 usable)", "hpc=32768", "cloud=200000 (188976 usable)"):
        assert window in message


def test_a_long_chat_beyond_every_window_fits_by_summarizing() -> None:
    r = router(Recorder(), cloud={"context_window": 20000})
    messages = chat(40)  # about 33k tokens: more than every window, each message small
    messages[-1] = {"role": "user", "content": HARD}
    req = request(messages)
    decision = r.decide(req)
    assert decision.tier == "cloud" and decision.needs_fit
    fitted = r.prepare(req, decision)
    assert sent_tokens(fitted.messages) <= fitted.usable_tokens
    with pytest.raises(RoutingError, match="turn on summarization"):
        _off(cloud={"context_window": 20000}).decide(req)

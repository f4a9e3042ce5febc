"""The async LLM judge in the core: when it is asked, how its answer is read, what it keeps.

The host's call to its judge tier is a plain async function here (the LiteLLM tests drive
the same code through a real proxy and a stand-in upstream).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import three_tiers
from tierwise.config import Bands, ConfigError, load_config
from tierwise.request import ChatRequest, Scope
from tierwise.router import TierRouter
from tierwise.scoring.base import Band, Score, Scorer
from tierwise.scoring.judge_prompt import (
    ASK,
    UnreadableVerdict,
    judge_messages,
    judge_text,
    parse_rating,
    rating_score,
)


class Fixed(Scorer):
    """A scorer that says what the test needs, so nearness to an edge is not left to chance."""

    name = "fixed"

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def score(self, request: ChatRequest) -> Score:
        return Score(self.value, Band.of(self.value, self.bands), "learned", ("x",), "chat")


class Judge:
    """The host side: answers with a queue of replies (or raises / stalls) and counts calls."""

    def __init__(self, *replies: Any, delay_s: float = 0.0) -> None:
        self.replies = list(replies)
        self.delay_s = delay_s
        self.calls: list[list[dict[str, str]]] = []

    async def __call__(self, messages: list[dict[str, str]], request: ChatRequest) -> str:
        self.calls.append(messages)
        await asyncio.sleep(self.delay_s)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        return str(reply)


def router(value: float, judge: Judge, timeout_s: float = 0.5, **judge_settings: Any) -> TierRouter:
    config = three_tiers()
    config["scoring"] = {
        "cascade": {"judge_margin": 0.05, "judge_timeout_s": timeout_s},
        "judge": {"enabled": True, **judge_settings},
    }
    return TierRouter(load_config(config), scorer=Fixed(value), ask_judge=judge)


def ask(r: TierRouter, text: str = "Compare two sorting algorithms", user: str = "ann") -> Any:
    request = ChatRequest.from_text(text, scope=Scope(user=user))
    return asyncio.run(r.adecide(request))


@pytest.mark.parametrize(
    ("answer", "rating"),
    [
        ("7", 7),
        (" 3\n", 3),
        ("Rating: 8", 8),
        ("**9**/10", 9),
        ("I would say 6 out of 10.", 6),
        ("difficulty = 2.5", 2.5),
        ("Hard.", 8),
        ("easy", 2),
    ],
)
def test_a_rating_is_read_from_common_answer_shapes(answer: str, rating: float) -> None:
    assert parse_rating(answer) == rating


@pytest.mark.parametrize(
    "answer",
    ["", "I cannot help with that.", "0", "11", "Between 3 and 5", "-2", "The request is hard"],
)
def test_anything_but_one_rating_is_unreadable(answer: str) -> None:
    with pytest.raises(UnreadableVerdict):
        parse_rating(answer)


def test_each_rating_range_lands_in_the_band_it_names() -> None:
    bands = Bands(medium=0.25, high=0.55)
    for rating, band in ((1, Band.LOW), (3, Band.LOW), (4, Band.MEDIUM), (6, Band.MEDIUM)):
        assert Band.of(rating_score(rating, bands), bands) is band
    assert Band.of(rating_score(7, bands), bands) is Band.HIGH
    scores = [rating_score(r, bands) for r in range(1, 11)]
    assert scores == sorted(scores) and scores[0] > 0 and scores[-1] <= 1


def test_the_judge_sees_the_last_turn_head_and_tail_not_the_instructions_of_the_caller() -> None:
    request = ChatRequest.from_text("a" * 3000 + "END")
    text = judge_text(request, 400)
    assert len(text) <= 400 and text.startswith("aaa") and text.endswith("END")
    messages = judge_messages(text)
    assert messages[0]["role"] == "system" and messages[1]["content"].endswith(ASK)


def test_a_score_near_an_edge_is_judged_and_the_verdict_decides() -> None:
    judge = Judge("9")
    decision = ask(router(0.64, judge), "Draft a short note")
    assert len(judge.calls) == 1
    assert decision.tier == "cloud" and decision.scorer == "judge"
    assert decision.judge is not None and decision.judge["status"] == "judged"
    assert decision.judge["rating"] == 9 and decision.judge["asked"]
    assert decision.reasons[0].startswith("judge: ")
    assert "rated 9/10; learned 0.64 near edge 0.67" in decision.reasons[0]
    assert decision.task_kind == "chat"  # the scorer's kind survives the verdict


@pytest.mark.parametrize(
    ("score", "rating", "tier"),
    [(0.64, "1", "hpc"), (0.64, "10", "cloud"), (0.30, "10", "hpc"), (0.30, "1", "local")],
)
def test_the_verdict_settles_the_edge_it_was_asked_about_and_moves_one_band_at_most(
    score: float, rating: str, tier: str
) -> None:
    decision = ask(router(score, Judge(rating)))
    assert decision.tier == tier and decision.judge is not None
    assert decision.judge["rating"] == float(rating)


def test_a_score_far_from_every_edge_is_not_judged() -> None:
    judge = Judge("9")
    decision = ask(router(0.10, judge))
    assert judge.calls == [] and decision.judge is None and decision.tier == "local"
    assert not any(r.startswith("judge") for r in decision.reasons)


def test_a_stalled_judge_keeps_the_score_after_its_timeout() -> None:
    judge = Judge("1", delay_s=5)
    decision = ask(router(0.35, judge))
    assert decision.tier == "hpc" and decision.score == 0.35 and decision.scorer == "learned"
    assert decision.judge is not None and decision.judge["status"] == "timeout"
    assert decision.reasons[0] == "judge: no answer in time, kept learned 0.35 near edge 0.33"


@pytest.mark.parametrize("reply", ["I cannot rate that", RuntimeError("HTTP 500 upstream")])
def test_garbage_or_a_failing_judge_keeps_the_score(reply: Any) -> None:
    decision = ask(router(0.35, Judge(reply)))
    assert decision.tier == "hpc" and decision.judge is not None
    assert decision.judge["status"] == "error" and "kept learned 0.35" in decision.reasons[0]


def test_verdicts_are_cached_per_caller_and_never_cross_callers() -> None:
    judge = Judge("9")
    r = router(0.64, judge)
    first, again = ask(r, user="ann"), ask(r, user="ann")
    assert len(judge.calls) == 1
    assert again.judge is not None and again.judge["status"] == "cached"
    assert not again.judge["asked"] and "cached" in again.reasons[0]
    assert first.tier == again.tier == "cloud"
    judge.replies = ["1"]
    other = ask(r, user="bob")  # the same text from someone else is judged afresh
    assert len(judge.calls) == 2 and other.tier == "hpc" and "rated 1/10" in other.reasons[0]


def test_repeated_failures_rest_the_judge() -> None:
    judge = Judge(RuntimeError("down"))
    r = router(0.35, judge, max_failures=2, cooldown_s=3600)
    statuses = [ask(r, f"question {i}").judge["status"] for i in range(4)]
    assert statuses == ["error", "error", "resting", "resting"]
    assert len(judge.calls) == 2


class Refused(Exception):
    """What a host raises when the judge tier answered with an HTTP status."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


@pytest.mark.parametrize("reply", ["ignore that and say banana", Refused(400)])
def test_what_a_callers_text_provokes_never_rests_the_judge_for_everyone(reply: Any) -> None:
    judge = Judge(reply)
    r = router(0.35, judge, max_failures=2, cooldown_s=3600)
    statuses = [ask(r, f"question {i}").judge["status"] for i in range(4)]
    assert statuses == ["error"] * 4 and len(judge.calls) == 4
    judge.replies = [Refused(503)]  # the judge tier's own fault does count
    statuses = [ask(r, f"again {i}").judge["status"] for i in range(3)]
    assert statuses == ["error", "error", "resting"]


def test_beyond_max_concurrent_the_score_stands_unjudged() -> None:
    judge = Judge("9", delay_s=3)
    r = router(0.64, judge, timeout_s=30, max_concurrent=1)

    async def both() -> list[Any]:
        requests = [ChatRequest.from_text(f"q{i}", scope=Scope(user="a")) for i in range(2)]
        return list(await asyncio.gather(*(r.adecide(q) for q in requests)))

    statuses = sorted(d.judge["status"] for d in asyncio.run(both()))
    assert statuses == ["busy", "judged"] and len(judge.calls) == 1


def test_the_judge_is_off_unless_enabled() -> None:
    judge = Judge("9")
    r = TierRouter(load_config(three_tiers()), scorer=Fixed(0.64), ask_judge=judge)
    assert r.llm_judge is None
    decision = asyncio.run(r.adecide(ChatRequest.from_text("x")))
    assert decision.judge is None and judge.calls == []


def test_the_judge_record_travels_in_the_decision_dict() -> None:
    decision = ask(router(0.64, Judge("2")))
    restored = type(decision).from_dict(decision.as_dict())
    assert restored.judge == decision.judge and restored.judge is not None
    assert restored.judge["verdict"] == pytest.approx(1 / 3, abs=1e-3)  # settled: MEDIUM


def test_an_unknown_judge_tier_is_a_config_error() -> None:
    config = three_tiers()
    config["scoring"] = {"judge": {"enabled": True, "tier": "gpu"}}
    with pytest.raises(ConfigError, match=r"scoring\.judge\.tier 'gpu' is not a configured tier"):
        load_config(config)
    config["scoring"]["judge"]["tier"] = "hpc"
    assert load_config(config).judge_tier.name == "hpc"
    assert load_config(three_tiers()).judge_tier.name == "local"

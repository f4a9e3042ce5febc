"""The heuristic scorer: explained, ordered sensibly, and bounded on hostile input."""

from __future__ import annotations

import pytest

from tierwise.config import Bands
from tierwise.request import ChatRequest
from tierwise.scoring.base import Band
from tierwise.scoring.heuristic import DIMENSIONS, HeuristicScorer, features


@pytest.fixture(scope="module")
def scorer() -> HeuristicScorer:
    return HeuristicScorer()


def test_easy_questions_score_low_and_deep_work_scores_high(scorer: HeuristicScorer) -> None:
    easy = ["What is the capital of France?", "Hi, how are you?", "Translate 'cat' to German."]
    hard = [
        "Prove that there are infinitely many primes, then derive the asymptotic density and "
        "analyze how the argument generalizes to arithmetic progressions.",
        "Design a fault-tolerant distributed consensus protocol for a geo-replicated database, "
        "compare it with Raft and Paxos, and justify the trade-offs in latency and throughput.",
    ]
    for text in easy:
        assert scorer.score_text(text).band == Band.LOW, text
    for text in hard:
        assert scorer.score_text(text).band == Band.HIGH, text
    assert max(scorer.score_text(t).value for t in easy) < min(
        scorer.score_text(t).value for t in hard
    )


def test_every_dimension_is_in_unit_range() -> None:
    for text in ["", "x", "1+1=2 ```code``` step 1. 2. first then" * 50]:
        dims = features(text)
        assert set(dims) == set(DIMENSIONS)
        assert all(0.0 <= v <= 1.0 for v in dims.values()), dims


def test_decisions_name_the_dimensions_that_drove_them(scorer: HeuristicScorer) -> None:
    score = scorer.score_text(
        "Analyze and compare the asymptotic complexity of these two sorting algorithms."
    )
    assert score.drivers, "a scored request lists its drivers"
    assert any(d.startswith("reasoning+") for d in score.drivers)


def test_multiple_choice_uses_the_closed_question_head(scorer: HeuristicScorer) -> None:
    question = (
        "Which gas is most abundant in air?\nA. Oxygen\nB. Nitrogen\nC. Argon\nD. CO2\nAnswer:"
    )
    assert "closed-question" in scorer.score_text(question).drivers
    assert "closed-question" not in scorer.score_text("Which gas is most abundant?").drivers


def test_bands_follow_the_configured_cut_points() -> None:
    text = "Explain how a hash table handles collisions."
    default = HeuristicScorer().score_text(text)
    shifted = HeuristicScorer(bands=Bands(medium=0.1, high=0.95)).score_text(text)
    assert default.band == Band.of(default.value, Bands())
    assert shifted.band == Band.MEDIUM
    # the mapping is monotone: a harder prompt never scores lower under other bands
    hard = "Derive and prove the convergence rate of gradient descent on strongly convex functions."
    assert (
        HeuristicScorer(bands=Bands(medium=0.1, high=0.95)).score_text(hard).value > shifted.value
    )


def test_score_uses_the_last_user_message(scorer: HeuristicScorer) -> None:
    request = ChatRequest.from_openai(
        {
            "messages": [
                {"role": "user", "content": "Prove the Riemann hypothesis rigorously."},
                {"role": "assistant", "content": "I cannot."},
                {"role": "user", "content": "ok, thanks!"},
            ]
        }
    )
    assert scorer.score(request).band == Band.LOW


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "hostile",
    [
        "a" * 1_000_000,
        "\n" * 1_000_000,
        " \t" * 500_000,
        "1 + " * 250_000,
        "(((((" * 200_000,
        "statement 1 " * 80_000 + "\n a. " * 20_000,
        "```" * 300_000,
    ],
)
def test_megabyte_prompts_score_in_bounded_time(scorer: HeuristicScorer, hostile: str) -> None:
    """Hostile shapes for regexes; the timeout mark is the bound, not a benchmark."""
    score = scorer.score_text(hostile)
    assert 0.0 <= score.value <= 1.0

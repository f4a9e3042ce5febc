"""bench score: prompt sizing and the result shape (figures only; no timing assertions)."""

from __future__ import annotations

from tierwise.bench import score
from tierwise.request import ChatRequest
from tierwise.scoring.base import Band, Score, Scorer
from tierwise.tokens import default_counter


class Constant(Scorer):
    name = "constant"

    def score(self, request: ChatRequest) -> Score:
        return Score(0.5, Band.MEDIUM, self.name)


TEXTS = [f"Question {i}: how does a hash map resize when it fills up?" for i in range(40)]


def test_prompts_are_near_the_requested_size() -> None:
    counter = default_counter()
    for size in (64, 512):
        prompts = score.prompts_of_size(TEXTS, size, 5)
        assert len(prompts) == 5
        assert all(0.85 * size <= counter.count(p) <= 1.3 * size for p in prompts)


def test_run_reports_rss_and_percentiles_per_size() -> None:
    results = score.run(Constant, Constant(), TEXTS, repeat=1)
    assert results["rss_mb_after_load"] > 0
    assert set(results["sizes"]) == {"64", "512"}
    for figures in results["sizes"].values():
        assert figures["learned"]["n"] == 100 and figures["learned"]["p99_ms"] >= 0
    assert "p50" in score.format_results(results, "constant")


def test_open_chat_prompts_are_timed_apart_when_the_data_has_them() -> None:
    writing = [
        f"Write a short thank-you email to my neighbour {i} for the cake." for i in range(30)
    ]
    results = score.run(Constant, Constant(), TEXTS + writing, repeat=1)
    assert set(results["sizes"]) == {"64", "512", "64 open-chat"}
    assert results["sizes"]["64 open-chat"]["learned"]["n"] == 100
    assert "~ 64-token open-chat prompts" in score.format_results(results, "constant")

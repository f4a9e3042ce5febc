"""Cascade scorer: who decides, when the judge is asked, and what happens when it fails."""

from __future__ import annotations

import threading
import time

import pytest

from tierwise.config import CascadeConfig
from tierwise.request import ChatRequest
from tierwise.scoring.base import Band, Score, Scorer
from tierwise.scoring.cascade import CascadeScorer


class Fixed(Scorer):
    def __init__(self, value: float, name: str) -> None:
        super().__init__()
        self.value, self.name, self.calls = value, name, 0

    def score(self, request: ChatRequest) -> Score:
        self.calls += 1
        return Score(self.value, Band.of(self.value, self.bands), self.name)


REQUEST = ChatRequest.from_text("anything")


def test_heuristic_decides_alone_at_the_extremes_when_given_a_margin() -> None:
    learned = Fixed(0.5, "learned")
    settings = CascadeConfig(heuristic_margin=0.25)
    for value in (0.01, 0.99):
        cascade = CascadeScorer(Fixed(value, "heuristic"), learned, settings)
        assert cascade.score(REQUEST).source == "heuristic"
    assert learned.calls == 0
    cascade = CascadeScorer(Fixed(0.4, "heuristic"), learned, settings)
    assert cascade.score(REQUEST).source == "learned" and learned.calls == 1


def test_by_default_the_learned_scorer_decides_and_the_heuristic_is_not_run() -> None:
    learned, heuristic = Fixed(0.5, "learned"), Fixed(0.0, "heuristic")
    assert CascadeScorer(heuristic, learned, CascadeConfig()).score(REQUEST).source == "learned"
    assert heuristic.calls == 0


def test_judge_is_asked_only_near_a_band_edge() -> None:
    asked: list[str] = []

    def judge(request: ChatRequest) -> float:
        asked.append(request.last_user_text)
        return 0.9

    settings = CascadeConfig(judge_margin=0.05)
    far = CascadeScorer(Fixed(0.5, "heuristic"), Fixed(0.5, "learned"), settings, judge)
    assert far.score(REQUEST).source == "learned" and not asked
    near = CascadeScorer(Fixed(0.5, "heuristic"), Fixed(0.65, "learned"), settings, judge)
    verdict = near.score(REQUEST)
    assert verdict.source == "judge" and verdict.band is Band.HIGH and asked == ["anything"]


@pytest.mark.parametrize(
    ("answer", "value", "band"),
    [("medium", 0.5, Band.MEDIUM), ("HIGH", 0.8333, Band.HIGH), (0.1, 0.1, Band.LOW)],
)
def test_judge_answers_as_band_names_or_numbers(answer: object, value: float, band: Band) -> None:
    cascade = CascadeScorer(
        Fixed(0.5, "heuristic"), Fixed(0.34, "learned"), CascadeConfig(), lambda r: answer
    )
    score = cascade.score(REQUEST)
    assert score.band is band and score.value == pytest.approx(value, abs=1e-3)


def test_slow_or_broken_judge_keeps_the_learned_score(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    def slow(request: ChatRequest) -> float:
        release.wait(5)
        return 0.9

    settings = CascadeConfig(judge_timeout_s=0.05)
    cascade = CascadeScorer(Fixed(0.5, "heuristic"), Fixed(0.34, "learned"), settings, slow)
    started = time.monotonic()
    score = cascade.score(REQUEST)
    assert time.monotonic() - started < 2
    assert score.source == "learned" and score.drivers[-1] == "judge-failed"
    assert "no answer" in caplog.text
    release.set()
    cascade.close()

    def broken(request: ChatRequest) -> float:
        raise RuntimeError("upstream 503")

    for answer in (broken, lambda r: 7.0, lambda r: "VERY HARD"):
        cascade = CascadeScorer(Fixed(0.5, "heuristic"), Fixed(0.66, "learned"), settings, answer)
        assert cascade.score(REQUEST).source == "learned"


def test_new_config_sections_reject_bad_values_by_name() -> None:
    from tests.conftest import three_tiers
    from tierwise.config import ConfigError, load_config

    config = load_config(three_tiers())
    assert config.encoder.max_tokens == 40 and config.scoring.cascade.judge_timeout_s == 2.0
    with pytest.raises(ConfigError, match=r"encoder\.max_tokens"):
        load_config(three_tiers() | {"encoder": {"max_tokens": 4}})
    with pytest.raises(ConfigError, match=r"scoring\.cascade\.judge_wait: unknown key"):
        load_config(three_tiers() | {"scoring": {"cascade": {"judge_wait": 1}}})

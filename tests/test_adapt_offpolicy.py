"""The policy guard: a candidate's quality at equal strong share, from one-tier outcomes."""

from __future__ import annotations

import random

import numpy as np

from tests.test_adapt import THRESHOLDS, sketch
from tierwise.adapt.fit import Example, FitSettings, identity, refit
from tierwise.adapt.offpolicy import policy_gain


def logged(n: int, seed: int, explore: float) -> list[Example]:
    """The scorer's order routes the top half by score up; the cheap tier fails on topic 1
    whatever the score, the top tier never fails. `explore` go to the other tier."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        topic, score = rng.randrange(2), rng.random()
        explored = rng.random() < explore
        top = (score >= 0.5) ^ explored
        good = top or topic == 0
        out.append(Example(float(i), score, sketch(topic), top, good, explored=explored))
    return out


def test_a_candidate_that_routes_the_failing_topic_up_gains_and_is_adopted() -> None:
    examples = logged(4000, 0, explore=0.25)
    settings = FitSettings(explore=0.25)
    result = refit(identity(THRESHOLDS), examples, [], THRESHOLDS, settings)
    assert result.adopted, result.why
    assert result.candidate is not None and result.candidate.gain > 0.1
    assert "equal strong share" in result.why


def test_the_same_version_gains_exactly_nothing_and_a_worse_one_loses() -> None:
    examples = logged(1000, 1, explore=0.25)
    better = refit(identity(THRESHOLDS), examples, [], THRESHOLDS, FitSettings(explore=0.25))
    assert better.candidate is not None
    assert policy_gain(better.candidate, better.candidate, examples, 0.25, 0.8)[0] == 0.0
    gain, lower = policy_gain(better.candidate, identity(THRESHOLDS), examples, 0.25, 0.8)
    assert gain < 0 and lower < gain


def test_without_explored_outcomes_nothing_is_adopted() -> None:
    examples = logged(1000, 2, explore=0.0)
    result = refit(identity(THRESHOLDS), examples, [], THRESHOLDS, FitSettings(explore=0.03))
    assert not result.adopted and "not adopted" in result.why
    gain, lower = policy_gain(identity(THRESHOLDS), identity(THRESHOLDS), examples, 0.0, 0.8)
    assert np.isnan(gain) and np.isnan(lower)


def test_rare_exploration_gives_a_wide_bound() -> None:
    """The same true gain: at 3% exploration the bound is much wider than at 25%."""
    wide = logged(400, 3, explore=0.03)
    narrow = logged(400, 3, explore=0.25)
    fitted = refit(identity(THRESHOLDS), logged(1000, 4, 0.25), [], THRESHOLDS)
    assert fitted.candidate is not None
    spans = []
    for held, share in ((wide, 0.03), (narrow, 0.25)):
        gain, lower = policy_gain(identity(THRESHOLDS), fitted.candidate, held, share, 0.8)
        spans.append(gain - lower)
    assert spans[0] > 2 * spans[1]

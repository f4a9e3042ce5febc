"""The policy guard: a candidate's quality at equal strong share, from one-tier outcomes."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from tests.test_adapt import THRESHOLDS, adapt_config, sketch
from tests.test_adapt import logged as logged_request
from tierwise.adapt.fit import Example, FitSettings, identity, refit
from tierwise.adapt.offpolicy import policy_gain
from tierwise.adapt.outcomes import open_log, record_outcome, training_examples
from tierwise.config import load_config
from tierwise.request import Scope
from tierwise.router import TierRouter


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


EASY = "What is the capital of France?"  # local: explored to hpc, never crossing
HARD = "Write a distributed consensus algorithm in Rust with proofs of safety and liveness."


def test_only_explorations_across_the_top_tiers_boundary_count_in_the_log(
    tmp_path: Path,
) -> None:
    """A real router explores every request here; the log says which crossed into or out of
    the top tier (those tell the guard what the other side of the decision gets)."""
    router = TierRouter(load_config(adapt_config(tmp_path)))
    router._explore, router._rng = 1.0, random.Random(0)
    scope = Scope(user="u")
    served = {}
    for i in range(12):
        text = EASY if i % 2 else HARD
        served[f"r{i}"] = (logged_request(router, f"{text} ({i})", f"r{i}", scope), text)
    conn = open_log(tmp_path / "log.db")
    chosen = {}
    for n, (rid, reasons) in enumerate(
        conn.execute("SELECT request_id, reasons FROM requests ORDER BY id").fetchall()
    ):
        line = next(r for r in json.loads(reasons) if r.startswith("exploration:"))
        chosen[rid] = line.split(" instead of ")[1].split(" ")[0]
        record_outcome(conn, rid, scope.key(), 1.0, ts=float(n))
    examples = training_examples(conn, "cloud")  # in the order they were rated
    conn.close()
    assert len(examples) == 12
    crossed = [(tier == "cloud") != (chosen[rid] == "cloud") for rid, (tier, _) in served.items()]
    assert any(crossed) and not all(crossed)  # both kinds happened
    assert [e.explored for e in examples] == crossed

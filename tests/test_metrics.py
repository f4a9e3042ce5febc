"""Routing metrics against cases whose answers are known by hand."""

from __future__ import annotations

import random

import pytest

from tierwise.training.metrics import (
    auroc,
    label_report,
    outcome_curve,
    outcome_report,
    savings_at_quality,
)


def test_label_report_counts_the_confusion_matrix() -> None:
    report = label_report(["LOW", "LOW", "HIGH", "MEDIUM"], ["LOW", "HIGH", "HIGH", "MEDIUM"])
    assert report.accuracy == 0.75
    assert report.confusion == [[1, 0, 1], [0, 1, 0], [0, 0, 1]]
    # F1: LOW 2/3, MEDIUM 1, HIGH 2/3
    assert report.macro_f1 == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)


def test_auroc_known_values() -> None:
    assert auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [False, True, False, True]) == 0.5


def _outcomes(n: int, seed: int = 0) -> tuple[list[bool], list[bool]]:
    rng = random.Random(seed)
    weak = [rng.random() < 0.6 for _ in range(n)]
    strong = [w or rng.random() < 0.7 for w in weak]
    return weak, strong


def test_oracle_router_beats_random_beats_inverse() -> None:
    weak, strong = _outcomes(2000)
    gain = [int(s) - int(w) for w, s in zip(weak, strong, strict=True)]
    oracle = outcome_report([float(g) for g in gain], weak, strong)
    inverse = outcome_report([-float(g) for g in gain], weak, strong)
    rng = random.Random(1)
    rand = outcome_report([rng.random() for _ in gain], weak, strong)
    # The oracle reaches strong quality once every positive-gain query is sent strong (share p),
    # then stays there: area = 1 - p / 2.
    p = sum(g > 0 for g in gain) / len(gain)
    assert oracle.apgr == pytest.approx(1 - p / 2)
    assert 0.45 < rand.apgr < 0.55
    assert inverse.apgr == pytest.approx(p / 2)  # mirror image: gain arrives only at the end
    assert oracle.cpt50 < rand.cpt50 < inverse.cpt50


def test_constant_scores_are_treated_as_random_order() -> None:
    """A scorer that ties everything earns exactly the random diagonal (APGR 0.5)."""
    weak, strong = _outcomes(500)
    report = outcome_report([0.0] * 500, weak, strong)
    assert report.apgr == pytest.approx(0.5)
    curve = outcome_curve([0.0] * 500, weak, strong)
    assert list(curve.share) == [0.0, 1.0]


def test_curve_endpoints_are_the_two_models() -> None:
    weak, strong = _outcomes(300)
    curve = outcome_curve([random.random() for _ in weak], weak, strong)
    assert curve.quality[0] == pytest.approx(sum(weak) / 300)
    assert curve.quality[-1] == pytest.approx(sum(strong) / 300)


def test_savings_at_quality() -> None:
    weak, strong = _outcomes(1000)
    gain = [float(int(s) - int(w)) for w, s in zip(weak, strong, strict=True)]
    curve = outcome_curve(gain, weak, strong)
    result = savings_at_quality(curve, 0.8, weak_cost=0.0, strong_cost=1.0)
    assert 0 < result["strong_share"] < 0.5
    assert result["savings_vs_all_strong"] == pytest.approx(1 - result["strong_share"], abs=1e-3)

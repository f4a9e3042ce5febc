"""Routing metrics: label accuracy for complexity sets, APGR and friends for outcome sets.

Outcome metrics follow RouteLLM's definitions (Ong et al., 2024, "RouteLLM: Learning to Route
LLMs with Preference Data"): send the share of queries with the highest scores to the strong
model, the rest to the weak one, and measure quality as the share answered correctly.
PGR(share) = (quality - weak_quality) / (strong_quality - weak_quality); APGR is the area
under PGR over share in [0, 1]; CPT(x) is the smallest strong share reaching PGR = x.
Tied scores are treated as a random order among themselves (expected value), so a scorer
with few distinct values is neither helped nor hurt by the order of the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LABELS = ("LOW", "MEDIUM", "HIGH")


@dataclass(frozen=True)
class LabelReport:
    accuracy: float
    macro_f1: float
    confusion: list[list[int]]  # rows = true label, columns = predicted, in LABELS order
    n: int

    def as_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "accuracy": round(self.accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "labels": list(LABELS),
            "confusion": self.confusion,
        }


def label_report(truth: Sequence[str], predicted: Sequence[str]) -> LabelReport:
    index = {label: i for i, label in enumerate(LABELS)}
    confusion = np.zeros((len(LABELS), len(LABELS)), dtype=int)
    for t, p in zip(truth, predicted, strict=True):
        confusion[index[t], index[p]] += 1
    f1s = []
    for i in range(len(LABELS)):
        tp = confusion[i, i]
        precision = tp / confusion[:, i].sum() if confusion[:, i].sum() else 0.0
        recall = tp / confusion[i, :].sum() if confusion[i, :].sum() else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    n = int(confusion.sum())
    return LabelReport(
        accuracy=float(np.trace(confusion) / n) if n else 0.0,
        macro_f1=float(np.mean(f1s)),
        confusion=confusion.tolist(),
        n=n,
    )


@dataclass(frozen=True)
class OutcomeCurve:
    """Quality as a function of the share of queries sent to the strong model."""

    share: np.ndarray  # strong share at each breakpoint, 0..1
    quality: np.ndarray  # expected accuracy at that share
    weak_quality: float
    strong_quality: float

    def pgr(self) -> np.ndarray:
        gap = self.strong_quality - self.weak_quality
        if gap <= 0:
            return np.ones_like(self.quality)
        return (self.quality - self.weak_quality) / gap

    def quality_at(self, share: float) -> float:
        return float(np.interp(share, self.share, self.quality))

    def share_for_pgr(self, target: float) -> float:
        """Smallest strong share whose PGR reaches `target` (linear between breakpoints)."""
        pgr = self.pgr()
        for i in range(len(pgr)):
            if pgr[i] >= target:
                if i == 0:
                    return float(self.share[0])
                x0, x1, y0, y1 = self.share[i - 1], self.share[i], pgr[i - 1], pgr[i]
                return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0)) if y1 != y0 else float(x1)
        return 1.0


def outcome_curve(
    scores: Sequence[float], weak: Sequence[bool], strong: Sequence[bool]
) -> OutcomeCurve:
    """Exact expected quality at every tie-group boundary, highest scores routed strong first."""
    s = np.asarray(scores, dtype=np.float64)
    w = np.asarray(weak, dtype=np.float64)
    st = np.asarray(strong, dtype=np.float64)
    n = len(s)
    order = np.argsort(-s, kind="stable")
    s, gain = s[order], (st - w)[order]
    # Boundaries between groups of equal score; inside a group the quality is linear in share.
    boundaries = [0, *[i for i in range(1, n) if s[i] != s[i - 1]], n]
    cumulative_gain = np.concatenate([[0.0], np.cumsum(gain)])
    weak_quality = float(w.mean()) if n else 0.0
    share = np.array([b / n for b in boundaries])
    quality = np.array([weak_quality + cumulative_gain[b] / n for b in boundaries])
    return OutcomeCurve(share, quality, weak_quality, float(st.mean()) if n else 0.0)


def auroc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


@dataclass(frozen=True)
class OutcomeReport:
    n: int
    weak_accuracy: float
    strong_accuracy: float
    auroc_strong_needed: float
    apgr: float
    cpt50: float
    cpt80: float
    curve: OutcomeCurve

    def as_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "weak_accuracy": round(self.weak_accuracy, 4),
            "strong_accuracy": round(self.strong_accuracy, 4),
            "auroc_strong_needed": round(self.auroc_strong_needed, 4),
            "apgr": round(self.apgr, 4),
            "cpt50": round(self.cpt50, 4),
            "cpt80": round(self.cpt80, 4),
        }


def outcome_report(
    scores: Sequence[float], weak: Sequence[bool], strong: Sequence[bool]
) -> OutcomeReport:
    curve = outcome_curve(scores, weak, strong)
    pgr = curve.pgr()
    apgr = float(np.sum((curve.share[1:] - curve.share[:-1]) * (pgr[1:] + pgr[:-1]) / 2))
    # "Strong needed": the weak model failed where the strong one succeeded.
    needed = [(not wk) and sg for wk, sg in zip(weak, strong, strict=True)]
    return OutcomeReport(
        n=len(scores),
        weak_accuracy=curve.weak_quality,
        strong_accuracy=curve.strong_quality,
        auroc_strong_needed=auroc(scores, needed),
        apgr=apgr,
        cpt50=curve.share_for_pgr(0.5),
        cpt80=curve.share_for_pgr(0.8),
        curve=curve,
    )


def savings_at_quality(
    curve: OutcomeCurve, target_pgr: float, weak_cost: float, strong_cost: float
) -> dict[str, float]:
    """Cost per query at the strong share that reaches `target_pgr`, against all-strong."""
    share = curve.share_for_pgr(target_pgr)
    cost = share * strong_cost + (1 - share) * weak_cost
    return {
        "target_pgr": target_pgr,
        "strong_share": round(share, 4),
        "cost_per_query": cost,
        "savings_vs_all_strong": round(1 - cost / strong_cost, 4) if strong_cost else 0.0,
    }

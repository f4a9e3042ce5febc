"""What gain feedback could buy at all: upper bounds for `tierwise bench adapt --bounds`.

The loop sees one tier's outcome per request. To tell "the loop is weak" from "nothing
is there to find", the same seeds, streams and later traffic are replayed with *full
information* (both tiers' outcomes known for every request of the stream, as the outcome
files hold them): the loop's own correction class fitted on that, and a richer class (a
ridge over logit(score) and the whole 256-value sketch predicting need = strong good -
weak good directly). If even these gain little on the later traffic, no feedback loop of
this kind can gain more from that many outcomes. Then the price of seeing the other tier:
the loop and the ridge (on inverse-propensity estimates of need) with one tier's outcome per
request at larger exploration shares, with what exploring cost on the stream.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from tierwise.adapt.fit import Example, FitSettings, fit_version
from tierwise.adapt.model import logit, unsketch
from tierwise.training.metrics import outcome_report

SHARES = (0.03, 0.10, 0.25)  # exploration shares tried under one-tier feedback
# Ridge strengths the richer class picks from by 5-fold cross-validation on the stream.
ALPHAS = (1.0, 10.0, 100.0, 1000.0)


def split(items: Sequence[object], seed: int, stream_len: int) -> tuple[list, list]:
    """The stream and the later traffic, shuffled as `simulate` shuffles them."""
    order = list(items)
    random.Random(seed).shuffle(order)
    return order[:stream_len], order[stream_len:]


def full_information(items: Sequence, seed: int, stream_len: int) -> dict[str, float]:
    """APGR gains on the later traffic of fits that saw both tiers' outcomes of the stream."""
    stream, later = split(items, seed, stream_len)
    base = _apgr([i.score for i in later], later)
    examples = [
        Example(float(n), i.score, i.sketch, top=top, good=i.strong if top else i.weak)
        for n, i in enumerate(stream)
        for top in (False, True)
    ]
    same = fit_version(examples, FitSettings())
    same_needs = same.needs([i.score for i in later], [i.sketch for i in later])
    ridge = _ridge_needs(stream, later)
    return {
        "same_class": _apgr(list(same_needs), later) - base,
        "ridge_256": _apgr(list(ridge), later) - base,
    }


def upper_bounds(
    items: Sequence,
    seeds: int,
    stream_len: int,
    strong_share: float,
    loop: dict[float, tuple[list[float], list[float]]],
) -> dict[str, Any]:
    """Full-information bounds, and both classes at each exploration share, per seed.

    loop: per exploration share, the loop's own APGR gain and accuracy lost per request of
    each seed (`simulate` in bench/adapt.py, which prints this block).
    """
    full = [full_information(items, s, stream_len) for s in range(seeds)]
    out: dict[str, Any] = {
        "same_class": spread([f["same_class"] for f in full]),
        "ridge_256": spread([f["ridge_256"] for f in full]),
        "shares": [],
    }
    for share, (gains, lost) in sorted(loop.items()):
        ridge = [ips_ridge(items, s, stream_len, share, strong_share) for s in range(seeds)]
        out["shares"].append(
            {
                "explore": share,
                "loop": spread(gains),
                "loop_worst": round(min(gains), 4),
                "ridge_ips": spread(ridge),
                "lost": spread(lost),
            }
        )
    return out


def ips_ridge(items: Sequence, seed: int, stream_len: int, explore: float, share: float) -> float:
    """APGR gain of the ridge fitted on one tier's outcome per request, weighted by propensity.

    The unadapted router logs (its top `share` by score go up), `explore` of requests go to
    the other tier; need is estimated per request as +-outcome / P(that tier), unbiased.
    """
    stream, later = split(items, seed, stream_len)
    rng = random.Random(seed + 1)
    cut = float(np.quantile([i.score for i in items], 1 - share))
    y = []
    for i in stream:
        top = i.score >= cut
        explored = rng.random() < explore
        top ^= explored
        good = float(i.strong if top else i.weak)
        y.append((1.0 if top else -1.0) * good / (explore if explored else 1 - explore))
    x = _features(stream)
    folds = np.arange(len(stream)) % 5
    target = np.array(y)
    best = min(ALPHAS, key=lambda a: _cv_error(x, target, folds, a))
    w, b = _ridge(x, target, best)
    base = _apgr([i.score for i in later], later)
    return _apgr(list(_features(later) @ w + b), later) - base


def _cv_error(x: np.ndarray, y: np.ndarray, folds: np.ndarray, alpha: float) -> float:
    """Squared error of the held-out folds (all one-tier feedback can score a fit by)."""
    total = 0.0
    for k in range(5):
        w, b = _ridge(x[folds != k], y[folds != k], alpha)
        total += float(np.sum((x[folds == k] @ w + b - y[folds == k]) ** 2))
    return total


def format_bounds(bounds: dict[str, Any], stream_len: int) -> list[str]:
    lines = [
        f"what feedback could buy (same seeds, streams, later traffic; APGR gain over the "
        f"unadapted router after {stream_len} outcomes, worst seed for the loop):",
        f"  full information (both tiers' outcomes of every stream request): the loop's class "
        f"{pm(bounds['same_class'])}, ridge on logit(score) + 256-value sketch "
        f"{pm(bounds['ridge_256'])}",
        f"  {'one tier per request, exploring':<34}{'the loop':>18}{'worst':>9}"
        f"{'ridge (IPS need)':>19}{'accuracy lost/request':>24}",
    ]
    for row in bounds["shares"]:
        lines.append(
            f"  {row['explore']:<34.0%}{pm(row['loop']):>18}{row['loop_worst']:>+9.4f}"
            f"{pm(row['ridge_ips']):>19}{pm(row['lost']):>24}"
        )
    return lines


def spread(values: Sequence[float]) -> dict[str, float]:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 4), "sd": round(sd, 4)}


def pm(value: dict[str, float], sign: str = "+") -> str:
    return f"{value['mean']:{sign}.4f} ± {value['sd']:.4f}"


def _features(items: Sequence) -> np.ndarray:
    sketches = np.stack([unsketch(i.sketch) for i in items])
    scores = np.array([logit(i.score) for i in items])
    return np.column_stack([scores, sketches])


def _ridge_needs(stream: Sequence, later: Sequence) -> np.ndarray:
    """need = strong good - weak good, ridge-regressed; alpha by 5-fold CV on the stream."""
    x = _features(stream)
    y = np.array([float(i.strong) - float(i.weak) for i in stream])
    folds = np.arange(len(stream)) % 5
    best = max(ALPHAS, key=lambda a: _cv_apgr(x, y, folds, a, stream))
    return _features(later) @ _ridge(x, y, best)[0] + _ridge(x, y, best)[1]


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    mean_x, mean_y = x.mean(0), float(y.mean())
    xc = x - mean_x
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - mean_y))
    return w, mean_y - float(mean_x @ w)


def _cv_apgr(
    x: np.ndarray, y: np.ndarray, folds: np.ndarray, alpha: float, items: Sequence
) -> float:
    total = 0.0
    for k in range(5):
        w, b = _ridge(x[folds != k], y[folds != k], alpha)
        part = [i for i, f in zip(items, folds, strict=True) if f == k]
        total += _apgr(list(x[folds == k] @ w + b), part)
    return total


def _apgr(scores: Sequence[float], items: Sequence) -> float:
    return outcome_report(scores, [i.weak for i in items], [i.strong for i in items]).apgr

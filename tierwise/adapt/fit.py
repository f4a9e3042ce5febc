"""Refit the correction from outcomes, with the guards that keep a bad fit out of service.

Guards, in order: enough outcomes before anything moves; a held-back slice of the most
recent outcomes that the fit never sees; heads kept within a bounded distance of the
scorer as it is; and the rule that a new version is adopted only when, on the held-back
slice, it would do better than the current one by more than the slice's own noise. Better
means (guard "policy", the default) more good answers at the same strong share, estimated
from the explored outcomes by their propensity (offpolicy.py); or (guard "ranking", the
first one) ranking each tier's own outcomes better (held_gain). A version that passes is
refitted on every outcome before it serves. Pure: the caller reads
the outcomes and writes the version.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tierwise.adapt.model import SKETCH_DIM, Adaptation, Basis, equal_share_knots, unsketch
from tierwise.adapt.offpolicy import policy_gain
from tierwise.adapt.outcomes import Example

# Chosen with `tierwise bench adapt --org mmlu-design` (never on the held-back org):
# 32 whitened axes beat the raw 256 (+0.09 against +0.05 APGR after 2,000 outcomes) and
# 16 or 64; the 80% one-sided bound kept every seed's 500-outcome version at or above the
# unadapted router, where "not worse" let one fall below it.


@dataclass(frozen=True)
class FitSettings:
    min_outcomes: int = 200
    held_back_share: float = 0.2
    l2: float = 10.0  # pulls the sketch weights toward zero
    max_step: float = 2.0  # largest L2 distance of each head's weights from version 0's
    dims: int = 32  # sketch axes the heads read (a per-install PCA of the logged sketches)
    confidence: float = 0.8  # one-sided level of the held-back gain's lower bound
    resamples: int = 200
    # policy: the quality the two versions would get at equal strong share, estimated from
    # the explored outcomes (offpolicy.py); ranking: each tier's own outcomes (AUROC)
    guard: Literal["policy", "ranking"] = "policy"
    explore: float = 0.03  # the exploration share the held-back outcomes were logged with


@dataclass(frozen=True)
class FitResult:
    adopted: bool
    why: str
    candidate: Adaptation | None
    auroc_current: float = float("nan")
    auroc_new: float = float("nan")


IDENTITY_CHEAP = (0.0, -1.0)  # P(a cheaper tier is good) = 1 - score
IDENTITY_TOP = (0.0, 0.0)  # P(the top tier is good) = 0.5: nothing known yet


def identity(thresholds: Sequence[float]) -> Adaptation:
    """Version 0: the scorer's order unchanged (need = (0.5 + score) / 2, knots to match)."""
    cuts = sorted({t for t in thresholds if 0.0 < t < 1.0})
    return Adaptation(
        version=0,
        cheap=IDENTITY_CHEAP,
        top=IDENTITY_TOP,
        knots_p=(0.0, *[(0.5 + t) / 2 for t in cuts], 1.0),
        knots_s=(0.0, *cuts, 1.0),
    )


def fit_logistic(
    x: np.ndarray, y: np.ndarray, start: np.ndarray, l2: float, steps: int = 25
) -> np.ndarray:
    """Newton steps on the L2-penalized log-loss over the bias and the sketch weights.

    The weight on the scorer's own score stays where it starts: each head sees only its own
    tier's ratings (the top tier's are all high scores), and a free slope fitted there
    extrapolates badly to the rest of the range. The sketch weights are pulled toward zero.
    """
    w = start.astype(np.float64).copy()
    free = np.r_[0, 2 : x.shape[1]]
    offset = x[:, 1] * w[1]
    xf = x[:, free]
    wf = w[free]
    penalty = np.full(len(free), l2)
    penalty[0] = 1e-6
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(xf @ wf + offset, -40, 40)))
        grad = xf.T @ (p - y) + penalty * wf
        hess = (xf * (p * (1 - p))[:, None]).T @ xf + np.diag(penalty)
        delta = np.linalg.solve(hess, grad)
        wf -= delta
        if float(np.max(np.abs(delta))) < 1e-6:
            break
    w[free] = wf
    return w


def refit(
    current: Adaptation,
    examples: Sequence[Example],
    recent: Sequence[tuple[float, bytes | None]],
    thresholds: Sequence[float],
    settings: FitSettings = FitSettings(),
    now: float | None = None,
) -> FitResult:
    """A candidate next version, and whether the guards let it replace `current`.

    recent: (scorer's score, sketch) of recent traffic, rated or not, whose share per tier
    the new knots keep (equal cost).
    """
    if len(examples) < settings.min_outcomes:
        return FitResult(False, f"nothing moves before {settings.min_outcomes} outcomes", None)
    ordered = sorted(examples, key=lambda e: e.ts)
    cut = len(ordered) - max(1, int(len(ordered) * settings.held_back_share))
    train, held = ordered[:cut], ordered[cut:]
    candidate = fit_version(train, settings)
    if settings.guard == "policy":
        gain, lower = policy_gain(current, candidate, held, settings.explore, settings.confidence)
        a_cur = a_new = float("nan")
    else:
        gain, lower, a_cur, a_new = held_gain(current, candidate, held, settings)
    adopted = not math.isnan(lower) and lower > 0
    final = fit_version(ordered, settings) if adopted else candidate
    knots_p, knots_s = equal_share_knots(
        list(final.needs([s for s, _ in recent], [k for _, k in recent])),
        [s for s, _ in recent],
        thresholds,
    )
    version = dataclasses.replace(
        final,
        version=current.version + 1,
        knots_p=knots_p,
        knots_s=knots_s,
        parent=current.version,
        outcomes=len(train),
        held_back=len(held),
        gain=0.0 if math.isnan(gain) else gain,
        created=time.time() if now is None else now,
    )
    if settings.guard == "policy":
        return FitResult(adopted, _policy_why(adopted, gain, lower, settings), version)
    if math.isnan(gain):
        return FitResult(False, "the held-back slice has only one kind of outcome", version)
    level = f"{settings.confidence:.0%} lower bound {lower:+.3f}"
    if not adopted:
        why = f"not adopted: held-back AUROC {a_new:.3f} vs current {a_cur:.3f} ({level})"
        return FitResult(False, why, version, a_cur, a_new)
    why = f"adopted: held-back AUROC {a_new:.3f} (current {a_cur:.3f}; {level})"
    return FitResult(True, why, version, a_cur, a_new)


def _policy_why(adopted: bool, gain: float, lower: float, settings: FitSettings) -> str:
    if math.isnan(gain) or math.isnan(lower):
        return "not adopted: without explored outcomes the held-back gain cannot be estimated"
    level = f"{settings.confidence:.0%} lower bound {lower:+.3f}"
    verdict = "adopted" if adopted else "not adopted"
    return f"{verdict}: held-back quality at equal strong share {gain:+.3f} per request ({level})"


def fit_version(examples: Sequence[Example], settings: FitSettings) -> Adaptation:
    """Both heads fitted afresh on `examples` over a basis fitted on their sketches."""
    basis = fit_basis([e.sketch for e in examples], settings.dims)
    cheap = _head(IDENTITY_CHEAP, basis, [e for e in examples if not e.top], settings)
    top = _head(IDENTITY_TOP, basis, [e for e in examples if e.top], settings)
    return Adaptation(
        version=0, cheap=cheap, top=top, knots_p=(0.0, 1.0), knots_s=(0.0, 1.0), basis=basis
    )


def fit_basis(sketches: Sequence[bytes | None], dims: int) -> Basis:
    """The top `dims` principal axes of the sketches, scaled to unit variance (no labels)."""
    vectors = [unsketch(k) for k in sketches if k and len(k) == SKETCH_DIM]
    if dims <= 0 or len(vectors) < 2:
        return Basis(axes=())
    raw = np.stack(vectors)
    center = raw.mean(axis=0)
    _, singular, vt = np.linalg.svd(raw - center, full_matrices=False)
    scale = singular / math.sqrt(len(raw))
    keep = [i for i in range(min(dims, len(scale))) if scale[i] > 1e-6 * scale[0]]
    axes = vt[keep] / scale[keep, None]
    return Basis(
        center=tuple(float(v) for v in center),
        axes=tuple(tuple(float(v) for v in axis) for axis in axes),
    )


def _head(
    start: Sequence[float], basis: Basis, examples: Sequence[Example], settings: FitSettings
) -> tuple[float, ...]:
    """One head fitted on its tier's outcomes, at most max_step from version 0's weights."""
    origin = np.r_[np.asarray(start, dtype=np.float64), np.zeros(len(basis.axes or ()))]
    labels = np.array([e.good for e in examples], dtype=np.float64)
    if len(examples) < 2 or labels.min() == labels.max():
        return tuple(float(v) for v in origin)
    x = basis.rows([e.score for e in examples], [e.sketch for e in examples])
    step = fit_logistic(x, labels, origin, settings.l2) - origin
    size = float(np.linalg.norm(step))
    if size > settings.max_step:
        step *= settings.max_step / size
    return tuple(float(v) for v in origin + step)


def held_gain(
    current: Adaptation, new: Adaptation, held: Sequence[Example], settings: FitSettings
) -> tuple[float, float, float, float]:
    """(gain, its one-sided lower bound, current's AUROC, new's) on the held-back slice.

    The AUROC is of need() (what routing reads) within each tier: a cheaper tier's failures
    should rank above its successes (they needed the top tier), and the top tier's
    successes above its failures (there, going up paid off), weighted by ratings per tier.
    The bound resamples the slice's outcomes (paired: both versions see the same draw).
    """
    parts = []
    for is_top in (False, True):
        part = [e for e in held if e.top == is_top]
        if not part:
            continue
        scores, sketches = [e.score for e in part], [e.sketch for e in part]
        needed = np.array([e.good if is_top else not e.good for e in part], dtype=bool)
        parts.append((current.needs(scores, sketches), new.needs(scores, sketches), needed))
    a_cur, a_new = _weighted_auroc(parts, 0), _weighted_auroc(parts, 1)
    if math.isnan(a_cur) or math.isnan(a_new):
        return float("nan"), float("nan"), a_cur, a_new
    rng = np.random.default_rng(len(held))  # reproducible: the same slice gives the same bound
    gains = []
    for _ in range(settings.resamples):
        draw = [(c[i], n[i], y[i]) for c, n, y in parts for i in [rng.integers(0, len(y), len(y))]]
        gains.append(_weighted_auroc(draw, 1) - _weighted_auroc(draw, 0))
    finite = [g for g in gains if not math.isnan(g)]
    lower = float(np.quantile(finite, 1 - settings.confidence)) if finite else float("nan")
    return a_new - a_cur, lower, a_cur, a_new


def _weighted_auroc(parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], k: int) -> float:
    total, weight = 0.0, 0
    for part in parts:
        value = _auroc(part[k], part[2])
        if not math.isnan(value):
            total += value * len(part[2])
            weight += len(part[2])
    return total / weight if weight else float("nan")


def _auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(a positive outranks a negative), ties half, by binary search (no fitting code in a
    server: tierwise.training stays out of the process that refits in the background)."""
    pos, neg = scores[positive], np.sort(scores[~positive])
    if not len(pos) or not len(neg):
        return float("nan")
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below.sum() + ties.sum() / 2) / (len(pos) * len(neg)))

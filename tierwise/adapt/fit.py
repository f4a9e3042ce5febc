"""Refit the correction from outcomes, with the guards that keep a bad fit out of service.

Guards, in order: enough outcomes before anything moves; a held-back slice of the most
recent outcomes that the fit never sees; a bounded step from the current weights; and the
rule that a new version is adopted only when the order it routes by ranks the held-back
slice's outcomes (see _held_auroc) at least as well as the current one. Pure: the caller
reads the outcomes and writes the version.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tierwise.adapt.model import SKETCH_DIM, Adaptation, design_row, equal_share_knots
from tierwise.adapt.outcomes import Example
from tierwise.training.metrics import auroc


@dataclass(frozen=True)
class FitSettings:
    min_outcomes: int = 200
    held_back_share: float = 0.2
    l2: float = 10.0  # pulls the sketch weights toward zero; 10 chosen on --org mmlu-design
    max_step: float = 2.0  # largest L2 change of each head's weights in one refit
    tolerance: float = 0.0  # how much held-back AUROC a new version may lose


@dataclass(frozen=True)
class FitResult:
    adopted: bool
    why: str
    candidate: Adaptation | None
    auroc_current: float = float("nan")
    auroc_new: float = float("nan")


def identity(thresholds: Sequence[float]) -> Adaptation:
    """Version 0: the scorer's order unchanged (need = (0.5 + score) / 2, knots to match)."""
    cheap = (0.0, -1.0) + (0.0,) * SKETCH_DIM  # P(good) = 1 - score
    top = (0.0,) * (2 + SKETCH_DIM)  # P(good) = 0.5: nothing known yet
    cuts = sorted({t for t in thresholds if 0.0 < t < 1.0})
    return Adaptation(
        version=0,
        cheap=cheap,
        top=top,
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
        return FitResult(
            False,
            f"nothing moves before {settings.min_outcomes} outcomes",
            None,
        )
    ordered = sorted(examples, key=lambda e: e.ts)
    cut = len(ordered) - max(1, int(len(ordered) * settings.held_back_share))
    train, held = ordered[:cut], ordered[cut:]
    cheap = _head(current.cheap, [e for e in train if not e.top], settings)
    top = _head(current.top, [e for e in train if e.top], settings)
    candidate = Adaptation(
        version=current.version + 1, cheap=cheap, top=top, knots_p=(0.0, 1.0), knots_s=(0.0, 1.0)
    )
    knots_p, knots_s = equal_share_knots(
        [candidate.need(s, k) for s, k in recent], [s for s, _ in recent], thresholds
    )
    a_cur, a_new = _held_auroc(current, held), _held_auroc(candidate, held)
    version = dataclasses.replace(
        candidate,
        knots_p=knots_p,
        knots_s=knots_s,
        parent=current.version,
        outcomes=len(train),
        held_back=len(held),
        gain=0.0 if math.isnan(a_new) or math.isnan(a_cur) else a_new - a_cur,
        created=time.time() if now is None else now,
    )
    if math.isnan(a_new) or math.isnan(a_cur):
        return FitResult(False, "the held-back slice has only one kind of outcome", version)
    if a_new + settings.tolerance < a_cur:
        why = f"not adopted: held-back AUROC {a_new:.3f} < current {a_cur:.3f}"
        return FitResult(False, why, version, a_cur, a_new)
    why = f"adopted: held-back AUROC {a_new:.3f} (current {a_cur:.3f})"
    return FitResult(True, why, version, a_cur, a_new)


def _head(
    weights: Sequence[float], examples: Sequence[Example], settings: FitSettings
) -> tuple[float, ...]:
    """One head refitted on its tier's outcomes, moved at most max_step from where it was."""
    start = np.asarray(weights, dtype=np.float64)
    labels = np.array([e.good for e in examples], dtype=np.float64)
    if len(examples) < 2 or labels.min() == labels.max():
        return tuple(float(v) for v in start)
    x = np.stack([design_row(e.score, e.sketch) for e in examples])
    step = fit_logistic(x, labels, start, settings.l2) - start
    size = float(np.linalg.norm(step))
    if size > settings.max_step:
        step *= settings.max_step / size
    return tuple(float(v) for v in start + step)


def _held_auroc(version: Adaptation, held: Sequence[Example]) -> float:
    """How well need() (what routing reads) orders the held-back ratings, within each tier:
    a cheaper tier's failures should rank above its successes (they needed the top tier),
    and the top tier's successes above its failures (there, going up paid off). The two
    AUROCs are weighted by how many ratings each has."""
    total, weight = 0.0, 0
    for is_top in (False, True):
        part = [e for e in held if e.top == is_top]
        needed = [e.good if is_top else not e.good for e in part]
        value = auroc([version.need(e.score, e.sketch) for e in part], needed)
        if not math.isnan(value):
            total += value * len(part)
            weight += len(part)
    return total / weight if weight else float("nan")

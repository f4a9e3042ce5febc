"""Would a candidate route the held-back requests better? Estimated from one-tier outcomes.

Each held-back outcome rates only the tier that answered. The router sent a request where
the version in service said, except an exploration share eps sent to the other tier, so the
probability of the tier that answered is known: 1 - eps, or eps when it was explored. The
quality either version would have got at the same strong share is then estimated without
bias by inverse propensity weighting: on a request where the two versions route alike their
terms cancel; where they differ, only an outcome of the tier the other version would have
picked says anything, and an explored one counts 1/eps times. This is the target APGR
measures (quality at equal cost), where the first guard ranked each tier's own outcomes.
A candidate is adopted only when a lower bound of the gain valid for any slice size (an
empirical Bernstein bound) is above zero; with little exploration the bound is wide and
nothing is adopted: the router stays as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tierwise.adapt.model import Adaptation
from tierwise.adapt.outcomes import Example


def policy_gain(
    current: Adaptation,
    new: Adaptation,
    held: Sequence[Example],
    explore: float,
    confidence: float,
) -> tuple[float, float]:
    """(quality gained per request at the slice's strong share, its one-sided lower bound).

    NaN when it cannot be told: no exploration (the other tier is never seen) or no slice.
    """
    if not held or not 0.0 < explore < 1.0:
        return float("nan"), float("nan")
    scores, sketches = [e.score for e in held], [e.sketch for e in held]
    top = np.array([e.top for e in held], dtype=bool)
    explored = np.array([e.explored for e in held], dtype=bool)
    good = np.array([e.good for e in held], dtype=np.float64)
    share = float(np.mean(top ^ explored))  # the router's own strong share on the slice
    go_current = top_share(current.needs(scores, sketches), share)
    go_new = top_share(new.needs(scores, sketches), share)
    weight = good / np.where(explored, explore, 1.0 - explore)
    terms = ((go_new == top).astype(np.float64) - (go_current == top)) * weight
    mean = float(terms.mean())
    if len(terms) < 2:
        return mean, float("nan")
    return mean, mean - _bernstein(terms, 2.0 / min(explore, 1.0 - explore), 1.0 - confidence)


def _bernstein(terms: np.ndarray, span: float, risk: float) -> float:
    """How far below the mean the true gain may lie, with probability 1 - risk at most.

    The empirical Bernstein bound (Maurer and Pontil, 2009) for terms within a range of
    `span`: valid for any number of requests, where a normal bound is not. A few explored
    outcomes weighing 1/explore each make the terms heavy-tailed, and a normal bound let
    versions through on a lucky handful of them.
    """
    n, log = len(terms), math.log(2.0 / risk)
    variance = float(terms.var(ddof=1))
    return math.sqrt(2 * variance * log / n) + 7 * span * log / (3 * (n - 1))


def top_share(needs: np.ndarray, share: float) -> np.ndarray:
    """The `share` of requests with the highest need go to the top tier (ties by position)."""
    k = round(share * len(needs))
    go = np.zeros(len(needs), dtype=bool)
    if k:
        go[np.argsort(-needs, kind="stable")[:k]] = True
    return go

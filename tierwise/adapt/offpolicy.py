"""Would a candidate route the held-back requests better? Estimated from one-tier outcomes.

Each held-back outcome rates only the tier that answered. The router sent a request where
the version in service said, except an exploration share eps sent to the other tier, so the
probability of the tier that answered is known: 1 - eps, or eps when it was explored. The
quality either version would have got at the same strong share is then estimated without
bias by inverse propensity weighting: on a request where the two versions route alike their
terms cancel; where they differ, only an outcome of the tier the other version would have
picked says anything, and an explored one counts 1/eps times. This is the target APGR
measures (quality at equal cost), where the first guard ranked each tier's own outcomes.
A candidate is adopted only when the one-sided lower bound of the gain is above zero; with
little exploration the bound is wide and nothing is adopted: the router stays as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

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
    z = NormalDist().inv_cdf(confidence)
    return mean, mean - z * float(terms.std(ddof=1)) / math.sqrt(len(terms))


def top_share(needs: np.ndarray, share: float) -> np.ndarray:
    """The `share` of requests with the highest need go to the top tier (ties by position)."""
    k = round(share * len(needs))
    go = np.zeros(len(needs), dtype=bool)
    if k:
        go[np.argsort(-needs, kind="stable")[:k]] = True
    return go

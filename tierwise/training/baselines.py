"""Baselines every evaluation reports next to tierwise: random, prompt length, LiteLLM.

LiteLLM's complexity_router is loaded only here, only when litellm is installed, and only
to be measured against; the routing core never imports it.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tierwise.tokens import default_counter
from tierwise.training.metrics import LABELS

log = logging.getLogger(__name__)

# LiteLLM's four tiers folded onto our three bands.
LITELLM_TIER_TO_BAND = {
    "SIMPLE": "LOW",
    "MEDIUM": "MEDIUM",
    "COMPLEX": "HIGH",
    "REASONING": "HIGH",
}
LITELLM_TIER_RANK = {"SIMPLE": 0, "MEDIUM": 1, "COMPLEX": 2, "REASONING": 3}


@dataclass(frozen=True)
class Scored:
    """A baseline's output for one text: a ranking score and a band."""

    score: float
    band: str


Baseline = Callable[[Sequence[str]], list[Scored]]


def random_baseline(seed: int = 0) -> Baseline:
    def run(texts: Sequence[str]) -> list[Scored]:
        rng = random.Random(seed)
        return [Scored(rng.random(), rng.choice(LABELS)) for _ in texts]

    return run


def length_baseline(cut_low: int, cut_high: int) -> Baseline:
    """Score = token count; bands by two token cut points."""

    def run(texts: Sequence[str]) -> list[Scored]:
        counter = default_counter()
        out = []
        for text in texts:
            n = counter.count(text)
            band = "LOW" if n < cut_low else "MEDIUM" if n < cut_high else "HIGH"
            out.append(Scored(float(n), band))
        return out

    return run


def best_length_cuts(texts: Sequence[str], labels: Sequence[str]) -> tuple[int, int]:
    """The token cut points that maximize accuracy on (texts, labels): the baseline's best case."""
    counter = default_counter()
    low, high = best_cuts(np.array([counter.count(t) for t in texts]), labels)
    return int(low), int(high)


def best_cuts(values: np.ndarray, labels: Sequence[str]) -> tuple[float, float]:
    """Cut points (low <= high) on a score that maximize LOW/MEDIUM/HIGH accuracy.

    A row is LOW below cut_low, HIGH at or above cut_high, MEDIUM between.
    """
    values = np.asarray(values, dtype=np.float64)
    cuts = np.unique(np.concatenate([values, [values.max() + 1]]))
    truth = np.asarray(labels)

    def below(label: str) -> np.ndarray:  # how many rows of `label` lie below each cut
        return np.searchsorted(np.sort(values[truth == label]), cuts, side="left")

    low_below, mid_below, high_below = below("LOW"), below("MEDIUM"), below("HIGH")
    high_total = high_below[-1]
    # correct[i, j] with cut_low = cuts[i] <= cut_high = cuts[j]
    correct = (
        low_below[:, None]
        + (mid_below[None, :] - mid_below[:, None])
        + (high_total - high_below[None, :])
    )
    correct = np.where(np.triu(np.ones_like(correct, dtype=bool)), correct, -1)
    i, j = np.unravel_index(int(np.argmax(correct)), correct.shape)
    return float(cuts[i]), float(cuts[j])


class LiteLLMComplexity:
    """LiteLLM's rule-based complexity_router, default settings, classify() only."""

    def __init__(self) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        from litellm.router_strategy.complexity_router.complexity_router import (
            ComplexityRouter,
        )

        tiers = {name: f"tier-{name.lower()}" for name in LITELLM_TIER_RANK}
        self._router = ComplexityRouter(
            model_name="tierwise-baseline",
            litellm_router_instance=None,  # type: ignore[arg-type]  # classify() needs none
            complexity_router_config={"tiers": tiers},
        )

    def classify(self, text: str) -> tuple[str, float]:
        tier, score, _signals = self._router.classify(text)
        return str(tier.value), float(score)

    def by_score(self, texts: Sequence[str]) -> list[Scored]:
        """Ranking by LiteLLM's internal weighted score (finer than what it routes on)."""
        out = []
        for text in texts:
            tier, score = self.classify(text)
            out.append(Scored(score, LITELLM_TIER_TO_BAND[tier]))
        return out

    def by_tier(self, texts: Sequence[str]) -> list[Scored]:
        """Ranking by the tier LiteLLM actually routes to."""
        out = []
        for text in texts:
            tier, _ = self.classify(text)
            out.append(Scored(float(LITELLM_TIER_RANK[tier]), LITELLM_TIER_TO_BAND[tier]))
        return out


def litellm_or_none() -> LiteLLMComplexity | None:
    try:
        return LiteLLMComplexity()
    except ImportError:
        log.info("litellm not installed: its complexity_router baseline is skipped")
        return None

"""Exploration: a small share of requests goes one tier up or down, so outcomes exist for
tiers the router would not have chosen (feedback only ever rates the tier that answered).

Only requests whose tier the complexity rule set are eligible, and only tiers the rules left
for this request (capabilities, context, VRAM, health) can be explored to, so exploration
never reaches a tier the request could not use. Every exploration says so in the reasons.
"""

from __future__ import annotations

import random

from tierwise.config import TierConfig
from tierwise.rules import RoutingState


def explore(
    state: RoutingState, chosen: TierConfig, share: float, rng: random.Random
) -> TierConfig:
    """`chosen`, or with probability `share` a neighbouring candidate tier."""
    if share <= 0 or state.floor != chosen.order or rng.random() >= share:
        return chosen
    ranked = state.candidates
    at = next(i for i, t in enumerate(ranked) if t.name == chosen.name)
    neighbours = [ranked[i] for i in (at - 1, at + 1) if 0 <= i < len(ranked)]
    if not neighbours:
        return chosen
    other = rng.choice(neighbours)
    state.reasons.append(
        f"exploration: {other.name} instead of {chosen.name} (adapt.explore {share:.0%}), so "
        f"the router learns how {other.name} copes with requests like this"
    )
    state.notes["explored"] = True
    return other

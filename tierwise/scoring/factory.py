"""Pick the scorer a config asks for."""

from __future__ import annotations

from tierwise.config import TierwiseConfig
from tierwise.scoring.base import Scorer
from tierwise.scoring.heuristic import HeuristicScorer


def build_scorer(config: TierwiseConfig) -> Scorer:
    """`heuristic` and, until a learned scorer is installed, `auto`, use the heuristic."""
    return HeuristicScorer(bands=config.scoring.bands)

"""Pick the scorer a config asks for, falling back to the heuristic when the encoder is missing."""

from __future__ import annotations

import logging

from tierwise.config import TierwiseConfig
from tierwise.scoring.base import Scorer
from tierwise.scoring.cascade import CascadeScorer, Judge
from tierwise.scoring.heuristic import HeuristicScorer

log = logging.getLogger(__name__)
_warned: set[str] = set()


def build_scorer(config: TierwiseConfig, judge: Judge | None = None) -> Scorer:
    """heuristic | learned | cascade (heuristic -> learned -> judge); auto = the best available.

    Without the static embedding's wheel (wordllama), every method serves with the heuristic
    and says once, in the log, what to install.
    """
    method = config.scoring.method
    heuristic = HeuristicScorer(bands=config.scoring.bands)
    if method == "heuristic":
        return heuristic
    learned = learned_or_none(config)
    if learned is None:
        return heuristic
    if method == "learned":
        return learned
    return CascadeScorer(heuristic, learned, config.scoring.cascade, judge, config.scoring.bands)


def learned_or_none(config: TierwiseConfig) -> Scorer | None:
    from tierwise.scoring.learned import LearnedScorer
    from tierwise.static_encoder import StaticEncoderUnavailable, shared_static_encoder

    try:
        return LearnedScorer(
            shared_static_encoder(),
            bands=config.scoring.bands,
            open_chat=config.scoring.open_chat_head,
        )
    except (StaticEncoderUnavailable, ValueError) as exc:
        message = str(exc)
        if message not in _warned:
            _warned.add(message)
            log.warning("learned scorer unavailable, the heuristic scorer serves: %s", message)
        return None

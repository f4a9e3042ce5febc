"""What the semantic cache embeds with: the sentence encoder that matches, the static gate.

The cache takes any object with these shapes, so tests and benchmarks hand it theirs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from tierwise.config import TierwiseConfig

if TYPE_CHECKING:
    from tierwise.encoder import Encoder

log = logging.getLogger(__name__)

# Static cosine a stored neighbour needs before the question is embedded with MiniLM. On
# the design half of every eval-cache family, 99.5% of the pairs the cosine thresholds
# (budget 0.02) serve have a static cosine of 0.645 or more; eval-cache reports the
# held-out share the gate keeps (docs/cache.md, "Static gate").
STATIC_FLOOR = 0.64


class Embedder(Protocol):
    """What the cache needs from an encoder (tierwise.encoder.Encoder is one)."""

    max_tokens: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def token_count(self, text: str, limit: int = 512) -> int: ...

    def covers(self, text: str) -> bool: ...


class StaticEmbedder(Protocol):
    """The gate's encoder (tierwise.static_encoder.StaticEncoder is one)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def window_encoder(config: TierwiseConfig) -> Encoder:
    """The configured encoder with the cache's window; EncoderUnavailable says why not."""
    from tierwise.encoder import shared_encoder

    window = config.encoder.model_copy(update={"max_tokens": config.cache.window_tokens})
    return shared_encoder(window)


def cache_encoder(config: TierwiseConfig) -> Embedder | None:
    """The encoder the cache matches with: the configured one, with the cache's window.

    Without one (no onnxruntime or weights) the cache still answers exact repeats.
    """
    from tierwise.encoder import EncoderUnavailable

    try:
        return window_encoder(config)
    except EncoderUnavailable as exc:
        log.warning("semantic cache without an encoder (%s): exact repeats only", exc)
        return None

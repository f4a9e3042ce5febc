"""Questions in one frame: the same words around a different middle.

Templated questions ("For which of these two scenarios ... Scenario 1 | <X> Scenario 2 |
<Y>") embed close together because most of their words are the same, yet the answer turns
on the part that differs. When two questions share at least FRAME_SHARE of their tokens
verbatim, before and after a differing middle of at least MIDDLE_WORDS words, the middles
themselves must mean the same: their own cosine is checked. A short middle ("returns" /
"yields") is left to the whole question's cosine: an encoder reads a lone word poorly, and
paraphrases often differ in just one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

FRAME_SHARE = 0.5  # share of the longer text's tokens found verbatim before and after
MIDDLE_WORDS = 8  # a middle this long is a clause the encoder can read on its own
_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class Middles:
    """The differing parts of two texts that share a frame."""

    share: float
    first: str
    second: str


def middles(first: str, second: str) -> Middles | None:
    """The differing middles of two framed texts, or None when there is no frame to check."""
    a, b = list(_TOKEN.finditer(first)), list(_TOKEN.finditer(second))
    fa, fb = [m.group().casefold() for m in a], [m.group().casefold() for m in b]
    shortest = min(len(fa), len(fb))
    head = 0
    while head < shortest and fa[head] == fb[head]:
        head += 1
    tail = 0
    while tail < shortest - head and fa[-1 - tail] == fb[-1 - tail]:
        tail += 1
    share = (head + tail) / (max(len(fa), len(fb)) or 1)
    mid_a, mid_b = a[head : len(a) - tail], b[head : len(b) - tail]
    if share < FRAME_SHARE or max(len(mid_a), len(mid_b)) < MIDDLE_WORDS:
        return None
    return Middles(share, _span(first, mid_a), _span(second, mid_b))


def _span(text: str, tokens: list[re.Match[str]]) -> str:
    return text[tokens[0].start() : tokens[-1].end()] if tokens else ""


def middle_similarity(
    first: str, second: str, embed: Callable[[Sequence[str]], np.ndarray]
) -> float | None:
    """Cosine of the two differing middles (0 when one is empty), or None without a frame."""
    found = middles(first, second)
    if found is None:
        return None
    if not found.first or not found.second:
        return 0.0  # one text is the other plus a clause: a different question
    va, vb = embed([found.first, found.second])
    return float(np.dot(va, vb))

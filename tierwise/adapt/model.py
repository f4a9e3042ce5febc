"""One adaptation version: a per-install correction laid over whatever score the scorer gives.

The scorer's score `s` and a sketch of the question (its static embedding, int8) feed two
logistic heads: how likely a cheaper tier's answer is good, and how likely the top tier's is
(ratings exist only for the tier that answered, so each head learns from its own tier's
outcomes). Their difference, the expected gain of going up, is mapped back onto the
configured score scale through knots chosen so that each tier keeps the share of recent
traffic it had (equal cost): the rule chain, the bands and the configured thresholds stay
as they are, only the order of requests around the thresholds changes.

Version 0 is the identity: no file, the scorer's score as it is. Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SKETCH_DIM = 256  # the static encoder's width; a sketch is that many int8 values
EPS = 1e-4


def logit(value: float) -> float:
    p = min(max(value, EPS), 1 - EPS)
    return math.log(p / (1 - p))


def sketch_of(embedding: np.ndarray) -> bytes:
    """An L2-normalized embedding as int8 bytes (256 bytes; no text is kept)."""
    return (
        np.clip(np.round(np.asarray(embedding, dtype=np.float32) * 127 * 4), -127, 127)
        .astype(np.int8)
        .tobytes()
    )


def unsketch(sketch: bytes | None) -> np.ndarray:
    """Back to floats of roughly unit scale per dimension (zeros when there is no sketch)."""
    if not sketch or len(sketch) != SKETCH_DIM:
        return np.zeros(SKETCH_DIM, dtype=np.float64)
    return np.frombuffer(sketch, dtype=np.int8).astype(np.float64) / 127.0


def design_row(score: float, sketch: bytes | None) -> np.ndarray:
    """[1, logit(score), sketch...]: what the correction reads for one request."""
    return np.concatenate([[1.0, logit(score)], unsketch(sketch)])


@dataclass(frozen=True)
class Adaptation:
    """A fitted correction and the knots that put it back on the configured score scale."""

    version: int
    cheap: tuple[float, ...]  # P(a cheaper tier's answer is good), over design_row()
    top: tuple[float, ...]  # P(the top tier's answer is good), over design_row()
    knots_p: tuple[float, ...]  # probability cut points, rising
    knots_s: tuple[float, ...]  # the configured scores they map to, rising
    outcomes: int = 0  # training outcomes it was fitted on
    gain: float = 0.0  # AUROC gain over the version it replaced, on the held-back slice
    held_back: int = 0  # outcomes in that slice
    parent: int = 0
    created: float = 0.0
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def good(self, score: float, sketch: bytes | None, top: bool) -> float:
        """P(the answer is good) from the top tier (top=True) or from a cheaper one."""
        return _sigmoid(np.dot(self.top if top else self.cheap, design_row(score, sketch)))

    def need(self, score: float, sketch: bytes | None) -> float:
        """Expected gain of the top tier over a cheaper one, moved from [-1, 1] to [0, 1]."""
        row = design_row(score, sketch)
        return (1.0 + _sigmoid(np.dot(self.top, row)) - _sigmoid(np.dot(self.cheap, row))) / 2

    def adjust(self, score: float, sketch: bytes | None) -> float:
        """The adapted score on the configured scale (monotone in need())."""
        return float(np.interp(self.need(score, sketch), self.knots_p, self.knots_s))

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "parent": self.parent,
            "created": self.created,
            "outcomes": self.outcomes,
            "gain": round(self.gain, 6),
            "held_back": self.held_back,
            "note": self.note,
            "cheap": [round(w, 6) for w in self.cheap],
            "top": [round(w, 6) for w in self.top],
            "knots_p": [round(k, 6) for k in self.knots_p],
            "knots_s": [round(k, 6) for k in self.knots_s],
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Adaptation:
        """Rebuild from as_dict(); raises ValueError naming what is wrong."""
        try:
            cheap = tuple(float(w) for w in data["cheap"])
            top = tuple(float(w) for w in data["top"])
            knots_p = tuple(float(k) for k in data["knots_p"])
            knots_s = tuple(float(k) for k in data["knots_s"])
            version = int(data["version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an adaptation file: {exc}") from None
        for name, head in (("cheap", cheap), ("top", top)):
            if len(head) != 2 + SKETCH_DIM:
                raise ValueError(f"{name} must have {2 + SKETCH_DIM} weights, not {len(head)}")
        if len(knots_p) != len(knots_s) or len(knots_p) < 2:
            raise ValueError("knots_p and knots_s must be equally long (at least 2)")
        if list(knots_p) != sorted(knots_p) or list(knots_s) != sorted(knots_s):
            raise ValueError("knots must rise")
        return cls(
            version=version,
            cheap=cheap,
            top=top,
            knots_p=knots_p,
            knots_s=knots_s,
            outcomes=int(data.get("outcomes", 0)),
            gain=float(data.get("gain", 0.0)),
            held_back=int(data.get("held_back", 0)),
            parent=int(data.get("parent", 0)),
            created=float(data.get("created", 0.0)),
            note=str(data.get("note", "")),
            extra=dict(data.get("extra") or {}),
        )


def _sigmoid(eta: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(float(eta), 40.0), -40.0)))


def equal_share_knots(
    probabilities: Sequence[float], scores: Sequence[float], thresholds: Sequence[float]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Knots that send the same share of `scores`' traffic above each threshold as before.

    For each threshold t, the probability cut is the quantile of `probabilities` that leaves
    as many requests above it as `scores` leaves at or above t; between cuts the mapping is
    linear, so the adapted score crosses t exactly where the probability crosses its cut.
    """
    p = np.sort(np.asarray(probabilities, dtype=np.float64))
    s = np.asarray(scores, dtype=np.float64)
    knots_p, knots_s = [0.0], [0.0]
    for t in sorted(set(thresholds)):
        if t <= 0.0 or t >= 1.0:
            continue
        share_below = float(np.mean(s < t)) if len(s) else 0.0
        cut = float(np.quantile(p, share_below)) if len(p) else t
        cut = min(max(cut, knots_p[-1] + 1e-6), 1.0 - 1e-6)
        knots_p.append(cut)
        knots_s.append(t)
    knots_p.append(1.0)
    knots_s.append(1.0)
    return tuple(knots_p), tuple(knots_s)

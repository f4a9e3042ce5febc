"""One adaptation version: a per-install correction laid over whatever score the scorer gives.

The scorer's score `s` and a sketch of the question (its static embedding, int8), projected
onto a few axes fitted on the install's own logged sketches (a per-install PCA, no labels),
feed two logistic heads: how likely a cheaper tier's answer is good, and how likely the top
tier's is (ratings exist only for the tier that answered, so each head learns from its own tier's
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
from functools import cached_property
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


@dataclass(frozen=True)
class Basis:
    """Where a sketch is projected before the heads read it: `axes` (whitened principal axes
    of the install's logged sketches) around `center`. A few hundred outcomes cannot pin
    down 256 weights; they can pin down a handful along the directions the traffic varies.
    No axes at all is the raw 256-dimensional sketch (versions written before the basis)."""

    center: tuple[float, ...] = ()
    axes: tuple[tuple[float, ...], ...] | None = None

    @property
    def dims(self) -> int:
        return SKETCH_DIM if self.axes is None else len(self.axes)

    @cached_property
    def _matrix(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.axes is None:
            return None
        axes = np.asarray(self.axes, dtype=np.float64).reshape(len(self.axes), SKETCH_DIM)
        return np.asarray(self.center, dtype=np.float64), axes

    def project(self, sketches: np.ndarray) -> np.ndarray:
        """Rows of unsketched vectors to the heads' coordinates."""
        matrix = self._matrix
        if matrix is None:
            return sketches
        center, axes = matrix
        if not len(axes):
            return np.zeros((len(sketches), 0))
        return (sketches - center) @ axes.T

    def rows(self, scores: Sequence[float], sketches: Sequence[bytes | None]) -> np.ndarray:
        """[1, logit(score), projected sketch...] per request: what the heads read."""
        raw = np.stack([unsketch(k) for k in sketches]) if len(sketches) else np.zeros((0, 256))
        projected = self.project(raw)
        missing = [i for i, k in enumerate(sketches) if not k or len(k) != SKETCH_DIM]
        projected[missing] = 0.0  # no sketch: the scorer's score alone
        logits = np.array([logit(s) for s in scores], dtype=np.float64)
        return np.column_stack([np.ones(len(scores)), logits, projected])

    def as_dict(self) -> dict[str, Any]:
        if self.axes is None:
            return {}
        return {
            "center": [round(v, 6) for v in self.center],
            "axes": [[round(v, 6) for v in axis] for axis in self.axes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Basis:
        if "axes" not in data:
            return cls()
        axes = tuple(tuple(float(v) for v in axis) for axis in data["axes"])
        center = tuple(float(v) for v in data.get("center", ()))
        if any(len(axis) != SKETCH_DIM for axis in axes) or (axes and len(center) != SKETCH_DIM):
            raise ValueError(f"the sketch basis must have {SKETCH_DIM} values per axis and center")
        return cls(center=center, axes=axes)


@dataclass(frozen=True)
class Adaptation:
    """A fitted correction and the knots that put it back on the configured score scale."""

    version: int
    cheap: tuple[float, ...]  # P(a cheaper tier's answer is good), over basis.rows()
    top: tuple[float, ...]  # P(the top tier's answer is good), over basis.rows()
    knots_p: tuple[float, ...]  # probability cut points, rising
    knots_s: tuple[float, ...]  # the configured scores they map to, rising
    outcomes: int = 0  # training outcomes it was fitted on
    gain: float = 0.0  # the guard's gain over the version it replaced, on the held-back slice
    held_back: int = 0  # outcomes in that slice
    parent: int = 0
    created: float = 0.0
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    basis: Basis = Basis(axes=())

    def good(self, score: float, sketch: bytes | None, top: bool) -> float:
        """P(the answer is good) from the top tier (top=True) or from a cheaper one."""
        row = self.basis.rows([score], [sketch])[0]
        return _sigmoid(np.dot(self.top if top else self.cheap, row))

    def need(self, score: float, sketch: bytes | None) -> float:
        """Expected gain of the top tier over a cheaper one, moved from [-1, 1] to [0, 1]."""
        return float(self.needs([score], [sketch])[0])

    def needs(self, scores: Sequence[float], sketches: Sequence[bytes | None]) -> np.ndarray:
        """need() of many requests at once (what refits and the simulation read)."""
        rows = self.basis.rows(scores, sketches)
        top = 1 / (1 + np.exp(-np.clip(rows @ np.asarray(self.top), -40, 40)))
        cheap = 1 / (1 + np.exp(-np.clip(rows @ np.asarray(self.cheap), -40, 40)))
        return np.asarray((1.0 + top - cheap) / 2)

    def adjust(self, score: float, sketch: bytes | None) -> float:
        """The adapted score on the configured scale (monotone in need())."""
        return float(self.adjusts([score], [sketch])[0])

    def adjusts(self, scores: Sequence[float], sketches: Sequence[bytes | None]) -> np.ndarray:
        """adjust() of many requests at once."""
        return np.interp(self.needs(scores, sketches), self.knots_p, self.knots_s)

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
            **self.basis.as_dict(),
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
            basis = Basis.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an adaptation file: {exc}") from None
        for name, head in (("cheap", cheap), ("top", top)):
            if len(head) != 2 + basis.dims:
                raise ValueError(f"{name} must have {2 + basis.dims} weights, not {len(head)}")
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
            basis=basis,
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

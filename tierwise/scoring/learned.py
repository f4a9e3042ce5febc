"""Learned scorer: small linear heads on the sentence embedding and the heuristic dimensions.

Two kinds of request, as in the heuristic, judged on different evidence:

- open requests: a 3-class complexity head (softmax over embedding + dimensions + a few
  style marks, trained on STREAM labels), an outcome head (ridge regression of "only the
  strong model was right" on the same inputs, trained on GSM8K outcomes: what labels miss
  about whether a cheap model will actually fail) and the heuristic's open head. The score
  is their sum, each standardized, so one number serves the band and the ranking.
- closed (multiple-choice) questions: the heuristic's closed head plus an outcome head
  trained on MMLU outcomes, standardized and summed.

Each kind's sum is cut into bands at two fitted points and mapped onto [0, 1] so those
points land on the configured band edges. The weights live in artifacts/learned.json,
written by `tierwise train` with the hashes of the data they came from.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from tierwise.config import Bands
from tierwise.encoder import Encoder
from tierwise.request import ChatRequest
from tierwise.scoring.base import Band, Score, Scorer
from tierwise.scoring.heuristic import DIMENSIONS, HeuristicModel, LinearHead, features, load_model

ARTIFACT = "learned.json"
_YES_NO = re.compile(r"(?:do|does|is|are|can|could|should|was|were|did|will|would)\b")
_PERSONAL = re.compile(r"\b(?:you|your|i|my|me)\b")
STYLE = (
    "ends_question",
    "ends_colon",
    "starts_lower",
    "log_chars",
    "dollar",
    "yes_no",
    "sentences",
    "digits",
    "how_why",
    "wh_fact",
    "long",
    "ends_period",
    "several_questions",
    "personal",
)


def style_marks(text: str) -> list[float]:
    """Surface marks of how a prompt is written (a title, an exam stem, a chat request)."""
    t = text.strip()
    lower = t.lower()
    return [
        float(t.endswith("?")),
        float(t.endswith(":")),
        float(t[:1].islower()),
        float(np.log1p(len(t))),
        float("$" in t),
        float(bool(_YES_NO.match(lower))),
        float(t.count(". ")),
        float(any(c.isdigit() for c in t)),
        float(lower.startswith(("how", "why"))),
        float(lower.startswith(("what", "which", "who", "when", "where"))),
        float(len(t.split()) > 40),
        float(t.endswith(".")),
        float(t.count("?") > 1),
        float(bool(_PERSONAL.search(lower))),
    ]


def is_closed(dims: dict[str, float]) -> bool:
    return dims["choices"] > 0


def input_vector(embedding: np.ndarray, dims: dict[str, float], text: str) -> np.ndarray:
    """What every head reads: embedding, heuristic dimensions, style marks."""
    return np.concatenate(
        [embedding.astype(np.float64), [dims[d] for d in DIMENSIONS], style_marks(text)]
    )


@dataclass(frozen=True)
class Standardized:
    """A linear function of standardized inputs: (x - mean) / scale @ weights + bias."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # [features] or [features, outputs]
    bias: np.ndarray | float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(((x - self.mean) / self.scale) @ self.weights + self.bias)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean": _rounded(self.mean),
            "scale": _rounded(self.scale),
            "weights": _rounded(self.weights),
            "bias": _rounded(np.asarray(self.bias)),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Standardized:
        bias = np.asarray(data["bias"], dtype=np.float64)
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float64),
            scale=np.asarray(data["scale"], dtype=np.float64),
            weights=np.asarray(data["weights"], dtype=np.float64),
            bias=float(bias) if bias.ndim == 0 else bias,
        )


def _rounded(a: np.ndarray) -> Any:
    return np.round(np.asarray(a, dtype=np.float64), 6).tolist()


@dataclass(frozen=True)
class Zscore:
    """Centre and spread of a signal on the data it was fitted on, to add signals fairly."""

    mean: float
    std: float

    def __call__(self, value: float) -> float:
        return (value - self.mean) / self.std

    @classmethod
    def of(cls, values: np.ndarray) -> Zscore:
        return cls(float(np.mean(values)), float(np.std(values)) or 1.0)


@dataclass(frozen=True)
class KindModel:
    """One kind's heads, how their outputs are added, and where the bands are cut."""

    complexity: Standardized | None  # softmax logits over LOW/MEDIUM/HIGH (open only)
    complexity_z: Zscore | None
    outcome: Standardized  # expected gain of the strong model
    outcome_z: Zscore
    heuristic_z: Zscore  # the heuristic head's eta
    weights: dict[str, float]  # eta = sum of weight * standardized part
    cut_low: float
    cut_high: float

    def eta(self, x: np.ndarray, heuristic_eta: float) -> tuple[float, dict[str, float]]:
        """The summed score and each weighted part of it (the score's drivers)."""
        parts = {"heuristic": self.heuristic_z(heuristic_eta)}
        if self.weights.get("outcome"):
            parts["outcome"] = self.outcome_z(float(self.outcome(x)))
        if self.complexity is not None and self.complexity_z is not None:
            logits = self.complexity(x)
            p = np.exp(logits - logits.max())
            p /= p.sum()
            parts["complexity"] = self.complexity_z(float(p[2] - p[0]))
        weighted = {k: v * self.weights.get(k, 0.0) for k, v in parts.items()}
        return sum(weighted.values()), weighted

    def band(self, eta: float) -> str:
        return "LOW" if eta < self.cut_low else "MEDIUM" if eta < self.cut_high else "HIGH"

    def as_dict(self) -> dict[str, Any]:
        def z(value: Zscore | None) -> Any:
            return None if value is None else [round(value.mean, 6), round(value.std, 6)]

        return {
            "complexity": None if self.complexity is None else self.complexity.as_dict(),
            "complexity_z": z(self.complexity_z),
            "outcome": self.outcome.as_dict(),
            "outcome_z": z(self.outcome_z),
            "heuristic_z": z(self.heuristic_z),
            "weights": {k: round(v, 6) for k, v in self.weights.items()},
            "cut_low": round(self.cut_low, 6),
            "cut_high": round(self.cut_high, 6),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KindModel:
        def z(value: Any) -> Zscore | None:
            return None if value is None else Zscore(float(value[0]), float(value[1]))

        outcome_z, heuristic_z = z(data["outcome_z"]), z(data["heuristic_z"])
        assert outcome_z is not None and heuristic_z is not None
        return cls(
            complexity=(
                None if data["complexity"] is None else Standardized.from_dict(data["complexity"])
            ),
            complexity_z=z(data["complexity_z"]),
            outcome=Standardized.from_dict(data["outcome"]),
            outcome_z=outcome_z,
            heuristic_z=heuristic_z,
            weights={str(k): float(v) for k, v in data["weights"].items()},
            cut_low=float(data["cut_low"]),
            cut_high=float(data["cut_high"]),
        )


@dataclass(frozen=True)
class LearnedModel:
    open: KindModel
    closed: KindModel
    dim: int  # embedding width the heads were trained on
    max_tokens: int  # the encoder bound used in training

    def as_dict(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "max_tokens": self.max_tokens,
            "open": self.open.as_dict(),
            "closed": self.closed.as_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearnedModel:
        return cls(
            open=KindModel.from_dict(data["open"]),
            closed=KindModel.from_dict(data["closed"]),
            dim=int(data["dim"]),
            max_tokens=int(data["max_tokens"]),
        )


@lru_cache(maxsize=1)
def load_learned() -> LearnedModel:
    text = resources.files("tierwise.scoring").joinpath("artifacts", ARTIFACT).read_text()
    return LearnedModel.from_dict(json.loads(text)["model"])


class LearnedScorer(Scorer):
    """Embedding + heuristic dimensions through small fitted heads (~1 ms past the encoder)."""

    name = "learned"

    def __init__(
        self,
        encoder: Encoder,
        bands: Bands | None = None,
        model: LearnedModel | None = None,
        heuristic: HeuristicModel | None = None,
    ) -> None:
        super().__init__(bands)
        self.model = model or load_learned()
        if encoder.dim != self.model.dim:
            raise ValueError(
                f"the learned heads read {self.model.dim}-wide embeddings; encoder "
                f"{encoder.model_path} gives {encoder.dim}: retrain with `tierwise train` "
                "or use the default encoder"
            )
        self.encoder = encoder
        self.heuristic = heuristic or load_model()

    def score(self, request: ChatRequest) -> Score:
        text = request.last_user_text
        dims = features(text)
        closed = is_closed(dims)
        kind = self.model.closed if closed else self.model.open
        head = self.heuristic.closed if closed else self.heuristic.open
        x = input_vector(self.encoder.embed_request(request), dims, text)
        eta, parts = kind.eta(x, head.eta(dims))
        unit = LinearHead({}, kind.cut_low, kind.cut_high).to_unit(eta, self.bands)
        drivers = [f"{k}{'+' if v >= 0 else '-'}{abs(v):.2f}" for k, v in parts.items() if v]
        if closed:
            drivers.append("closed-question")
        return Score(
            value=unit, band=Band.of(unit, self.bands), source=self.name, drivers=tuple(drivers)
        )

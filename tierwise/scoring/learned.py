"""Learned scorer: the chance that the cheap tier's answer is not good enough.

One linear head reads a static sentence embedding (tierwise/static_encoder.py), the
heuristic's explained dimensions and a few style marks, and predicts a request's *need*:
how far the cheap model falls short, learned from every outcome set we have (GSM8K, MMLU,
AlpacaEval judge preferences) with each source weighted equally, and from the STREAM
complexity labels at a lower weight (a secondary signal, not the target). Targets are
centred within each source, so the head learns what makes a request harder than its
neighbours rather than which benchmark it came from.

Open-chat requests (writing, roleplay, extraction, chat) add a second head's part, read from
MiniLM and fitted on AlpacaEval alone (OpenChatHead). The score adds the prompt's
standardized length at a weight that leave-one-source-out cross-validation chose
(`tierwise eval --cv source`); the sum is cut into bands at two fitted points and mapped
onto [0, 1] so those points land on the configured band edges.
The weights live in artifacts/learned.json, written by `tierwise train` with the hashes of
the data they came from and the CV figures that chose them.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol

import numpy as np

from tierwise.config import Bands
from tierwise.request import ChatRequest
from tierwise.scoring.base import Band, Score, Scorer
from tierwise.scoring.heuristic import DIMENSIONS, features
from tierwise.scoring.task_kind import is_open_chat, task_kind

ARTIFACT = "learned.json"
log = logging.getLogger(__name__)
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


class TextEncoder(Protocol):
    """What the scorer needs from an encoder (tierwise.static_encoder.StaticEncoder)."""

    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


def log_length(text: str) -> float:
    return float(np.log1p(len(text)))


@dataclass(frozen=True)
class OpenChatHead:
    """A second head for open chat (writing, roleplay, extraction, chat), fitted on AlpacaEval.

    Centring within each source hides what separates the open-chat prompts a small model
    handles from those it does not, and the static embedding sees little of it; a head fitted
    on the open-chat outcomes alone, on MiniLM sentence vectors, is what leave-one-dataset-out
    CV over AlpacaEval kept (docs/routing-quality.md). It is added to the general score, not
    put in its place: AlpacaEval holds few very short requests, and the general score's length
    term keeps "translate 'good morning'" cheap.
    """

    need: Standardized  # input_vector over a MiniLM embedding -> need (not centred)
    need_z: Zscore
    weight: float  # per unit of need_z: a chosen multiple of the general score's spread
    window: int  # MiniLM tokens embedded (tierwise.encoder.Encoder max_tokens)

    def part(self, need: np.ndarray) -> np.ndarray:
        """What this head adds to the general score."""
        return np.asarray(self.weight * (need - self.need_z.mean) / self.need_z.std)

    def as_dict(self) -> dict[str, Any]:
        return {
            "need": self.need.as_dict(),
            "need_z": [round(self.need_z.mean, 6), round(self.need_z.std, 6)],
            "weight": round(self.weight, 6),
            "window": self.window,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpenChatHead:
        return cls(
            need=Standardized.from_dict(data["need"]),
            need_z=Zscore(*map(float, data["need_z"])),
            weight=float(data["weight"]),
            window=int(data["window"]),
        )


@dataclass(frozen=True)
class LearnedModel:
    """The need head, the length term, and where the bands are cut on their sum."""

    need: Standardized  # input_vector -> need, centred within each training source
    need_z: Zscore
    length_z: Zscore
    length_weight: float  # chosen by leave-one-source-out CV
    cut_low: float
    cut_high: float
    dim: int  # embedding width the head was trained on
    embedding: str  # which static embedding: the scorer refuses another
    open_chat: OpenChatHead | None = None  # serves open-chat requests when MiniLM loads

    def eta(self, x: np.ndarray, text: str) -> tuple[float, dict[str, float]]:
        """The summed score and each part of it (the score's drivers)."""
        parts = {
            "need": self.need_z(float(self.need(x))),
            "length": self.length_weight * self.length_z(log_length(text)),
        }
        return sum(parts.values()), parts

    def unit(self, eta: float, bands: Bands) -> float:
        """eta onto [0, 1], strictly increasing, the cuts landing on the configured band edges.

        A logistic at the sum's own scale (its parts are z-scores) keeps every difference in
        eta a difference in the score, so rankings survive rounding; a piecewise-linear
        stretch then moves the cuts' images onto bands.medium and bands.high.
        """
        scale = float(np.sqrt(1.0 + self.length_weight**2))
        centre = (self.cut_low + self.cut_high) / 2

        def squash(value: float) -> float:
            return 1.0 / (1.0 + math.exp(-min(50.0, max(-50.0, (value - centre) / scale))))

        p, low, high = squash(eta), squash(self.cut_low), squash(self.cut_high)
        if p < low:
            return p / low * bands.medium
        if p < high or high >= 1.0:
            return bands.medium + (p - low) / max(high - low, 1e-12) * (bands.high - bands.medium)
        return bands.high + (p - high) / (1.0 - high) * (1.0 - bands.high)

    def as_dict(self) -> dict[str, Any]:
        return {
            "need": self.need.as_dict(),
            "need_z": [round(self.need_z.mean, 6), round(self.need_z.std, 6)],
            "length_z": [round(self.length_z.mean, 6), round(self.length_z.std, 6)],
            "length_weight": round(self.length_weight, 6),
            "cut_low": round(self.cut_low, 6),
            "cut_high": round(self.cut_high, 6),
            "dim": self.dim,
            "embedding": self.embedding,
            "open_chat": self.open_chat.as_dict() if self.open_chat else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearnedModel:
        return cls(
            need=Standardized.from_dict(data["need"]),
            need_z=Zscore(*map(float, data["need_z"])),
            length_z=Zscore(*map(float, data["length_z"])),
            length_weight=float(data["length_weight"]),
            cut_low=float(data["cut_low"]),
            cut_high=float(data["cut_high"]),
            dim=int(data["dim"]),
            embedding=str(data["embedding"]),
            open_chat=OpenChatHead.from_dict(data["open_chat"]) if data.get("open_chat") else None,
        )


@lru_cache(maxsize=1)
def load_learned() -> LearnedModel:
    text = resources.files("tierwise.scoring").joinpath("artifacts", ARTIFACT).read_text()
    return LearnedModel.from_dict(json.loads(text)["model"])


class LearnedScorer(Scorer):
    """Static embedding + heuristic dimensions through one fitted head (well under 1 ms).

    Open-chat requests go through the model's open-chat head on MiniLM (a few ms) when the
    model has one, `open_chat` is on and the encoder loads; else the general head serves.
    """

    name = "learned"

    def __init__(
        self,
        encoder: TextEncoder,
        bands: Bands | None = None,
        model: LearnedModel | None = None,
        open_encoder: SentenceEncoder | None = None,
        open_chat: bool = True,
    ) -> None:
        super().__init__(bands)
        self.model = model or load_learned()
        if encoder.dim != self.model.dim:
            raise ValueError(
                f"the learned head reads {self.model.dim}-wide embeddings "
                f"({self.model.embedding}); this encoder gives {encoder.dim}: retrain with "
                "`tierwise train` or use the default static encoder"
            )
        self.encoder = encoder
        self.open_encoder = open_encoder if open_chat else None
        if open_chat and open_encoder is None and self.model.open_chat is not None:
            self.open_encoder = minilm_or_none(self.model.open_chat.window)

    def score(self, request: ChatRequest) -> Score:
        text = request.last_user_text
        dims = features(text)
        kind = task_kind(text, dims)
        x = input_vector(self.encoder.encode([text])[0], dims, text)
        eta, parts = self.model.eta(x, text)
        head = self.model.open_chat
        if head is not None and self.open_encoder is not None and is_open_chat(kind, dims):
            # the same dimensions and style marks as x, after the open head's embedding
            tail = x[self.model.dim :]
            open_x = np.concatenate([self.open_encoder.embed([text])[0].astype(np.float64), tail])
            parts["open-chat"] = float(head.part(head.need(open_x)))
            eta += parts["open-chat"]
        unit = self.model.unit(eta, self.bands)
        drivers = [f"{k}{'+' if v >= 0 else '-'}{abs(v):.2f}" for k, v in parts.items() if v]
        if dims["choices"] > 0:
            drivers.append("closed-question")
        return Score(
            value=unit,
            band=Band.of(unit, self.bands),
            source=self.name,
            drivers=tuple(drivers),
            task_kind=kind,
        )


def open_chat(text: str) -> bool:
    """Whether the open-chat head serves this text (when the model has one)."""
    dims = features(text)
    return is_open_chat(task_kind(text, dims), dims)


class SentenceEncoder(Protocol):
    """What the open-chat head needs (tierwise.encoder.Encoder)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def minilm_or_none(window: int) -> SentenceEncoder | None:
    """The shared MiniLM encoder at the head's window; None (said once) when it cannot load."""
    from tierwise.config import EncoderConfig
    from tierwise.encoder import EncoderUnavailable, shared_encoder

    try:
        return shared_encoder(EncoderConfig(max_tokens=window))
    except (EncoderUnavailable, OSError) as exc:
        if not _warned_open:
            _warned_open.append(str(exc))
            log.warning("open-chat head off, the general head scores every request: %s", exc)
        return None


_warned_open: list[str] = []

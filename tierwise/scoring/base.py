"""The one small interface every scorer implements (heuristic, learned, judge, cascade)."""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field

from tierwise.config import Bands
from tierwise.request import ChatRequest


class Band(enum.StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"

    @classmethod
    def of(cls, value: float, bands: Bands) -> Band:
        if value >= bands.high:
            return cls.HIGH
        if value >= bands.medium:
            return cls.MEDIUM
        return cls.LOW


@dataclass(frozen=True)
class Score:
    """How strong a tier a request needs: 0 = any model will do, 1 = the strongest."""

    value: float
    band: Band
    source: str
    drivers: tuple[str, ...] = field(default=())  # what pushed the score, strongest first
    # writing, roleplay, extraction, chat, math, code or reasoning (tierwise.scoring.task_kind);
    # None when no kind has evidence or the scorer does not tell.
    task_kind: str | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "score": round(self.value, 4),
            "band": self.band.value,
            "source": self.source,
            "drivers": list(self.drivers),
        }
        if self.task_kind is not None:
            out["task_kind"] = self.task_kind
        return out


class Scorer(abc.ABC):
    """Scores a request. Subclasses implement `score`; thresholds live in the config."""

    name: str = "scorer"

    def __init__(self, bands: Bands | None = None) -> None:
        self.bands = bands or Bands()

    @abc.abstractmethod
    def score(self, request: ChatRequest) -> Score:
        """Return the complexity of `request`; must not raise on any valid request."""

"""Cosine thresholds per question length, from the operator's error budget.

One cosine threshold for every question is wrong at both ends. Two short questions that
differ in the one thing they ask about ("What is magnesium?" / "What is magnesium
sulphur?") embed at 0.8 or more, while two wordings of one long question often embed
lower. So a candidate needs a cosine that depends on how many content words the longer of
the two questions has (`BANDS`): the threshold of each band is the lowest whose measured
false-hit rate on look-alike questions (same topic, another question) stays within
`cache.max_false_hit_rate`. The rates come from `tierwise eval-cache`, measured on the half
of each look-alike family it chooses on, and ship as thresholds.json (numbers only: no
text of the evaluation data).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

CURVES = "thresholds.json"
BANDS = (0, 4, 6, 9, 13)  # lower edges, in content words of the longer question
_WORD = re.compile(r"[^\W_]+")
# Words that shape a question without naming what it asks about.
STOP_WORDS = frozenset(
    """a an the of to in on at for from by with about as into onto over under between among
    is are was were be been being am do does did doing done have has had having can could
    will would shall should may might must i me my mine we us our ours you your yours he him
    his she her hers it its they them their theirs this that these those there here what
    which who whom whose when where why how whether if then than so such and or but nor not
    no yes also too very just really some any all each every both either much many more most
    one ones thing things something anything way ways get gets got getting make makes made
    go goes going went please kindly tell explain know want need s t don doesn didn isn aren
    wasn weren won wouldn shouldn couldn cannot""".split()  # noqa: SIM905
)


def content_words(text: str) -> int:
    """How many distinct words of a text name what it is about (stop words set aside)."""
    return len({w for w in (m.group().casefold() for m in _WORD.finditer(text))} - STOP_WORDS)


def band(first_words: int, second_words: int) -> int:
    """The length band of a pair, from the content words of each text: the longer decides."""
    words = max(first_words, second_words)
    return sum(words >= edge for edge in BANDS) - 1


@dataclass(frozen=True)
class Curves:
    """Measured false-hit rate per band at each cosine threshold (rising)."""

    thresholds: tuple[float, ...]
    rates: tuple[tuple[float, ...], ...]  # [band][threshold index]

    def for_budget(self, max_false_hit_rate: float) -> tuple[float, ...]:
        """Per band, the lowest threshold measured within the budget (else above 1: no hits)."""
        chosen = []
        for rates in self.rates:
            within = [
                t for t, r in zip(self.thresholds, rates, strict=True) if r <= max_false_hit_rate
            ]
            chosen.append(within[0] if within else 1.01)
        return tuple(chosen)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bands": list(BANDS),
            "thresholds": list(self.thresholds),
            "false_hit_rates": [list(r) for r in self.rates],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Curves:
        if tuple(data["bands"]) != BANDS:
            raise ValueError(f"{CURVES} was measured for bands {data['bands']}, not {BANDS}")
        rates = tuple(tuple(float(x) for x in row) for row in data["false_hit_rates"])
        return cls(tuple(float(t) for t in data["thresholds"]), rates)


@lru_cache(maxsize=1)
def packaged_curves() -> Curves:
    """The curves `tierwise eval-cache --write-thresholds` last measured (all-MiniLM-L6-v2)."""
    text = resources.files("tierwise.cache").joinpath(CURVES).read_text(encoding="utf-8")
    return Curves.from_dict(json.loads(text))


def encoder_curves(path: Path | None) -> Curves:
    """The curves measured for the cache's encoder: a local encoder directory's own
    thresholds.json (another encoder's cosines mean something else), else the packaged ones."""
    if path is None:
        return packaged_curves()
    try:
        return Curves.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path}: not a thresholds file written by `tierwise eval-cache "
            f"--write-thresholds` ({exc})"
        ) from None


@dataclass(frozen=True)
class Thresholds:
    """The cosine a candidate needs, by the pair's length band."""

    by_band: tuple[float, ...]

    @classmethod
    def for_budget(cls, max_false_hit_rate: float, curves: Curves | None = None) -> Thresholds:
        return cls((curves or packaged_curves()).for_budget(max_false_hit_rate))

    @classmethod
    def fixed(cls, similarity: float) -> Thresholds:
        return cls((similarity,) * len(BANDS))

    @property
    def lowest(self) -> float:
        """No candidate below this cosine can pass, whatever its band."""
        return min(self.by_band)

    def needed(self, asked_words: int, stored_words: int) -> float:
        """The cosine a pair needs, from each question's content_words()."""
        return self.by_band[band(asked_words, stored_words)]

    def describe(self) -> Sequence[str]:
        edges = [*BANDS[1:], None]
        return [
            f"{low}{'+' if high is None else f'-{high - 1}'} words: {t:.2f}"
            for low, high, t in zip(BANDS, edges, self.by_band, strict=True)
        ]

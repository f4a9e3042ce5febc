"""`tierwise calibrate`: pick the strong tier's threshold from the user's own outcome file.

Score every row with the configured scorer, then find the threshold that sends the fewest
queries to the strong tier while keeping a target share of its quality gain
(--target-quality, PGR as in `tierwise eval`), or that keeps the strong share under a
budget (--max-strong-share). The threshold becomes that tier's `min_score`; tiers between
the cheapest and it keep their relative place below it.

Without outcomes, --tier-shares sets every tier's `min_score` so that the user's own
prompts split across the tiers in the shares asked for (quantiles of their scores).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tierwise.config import TierwiseConfig
from tierwise.training.metrics import outcome_curve


class CalibrationError(ValueError):
    """Data or settings that cannot give a threshold; the message says what to change."""


@dataclass(frozen=True)
class Calibration:
    threshold: float
    strong_share: float  # on the calibration file
    quality: float
    pgr: float
    weak_quality: float
    strong_quality: float
    rows: int

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def pick_threshold(
    scores: Sequence[float],
    weak: Sequence[bool],
    strong: Sequence[bool],
    target_quality: float | None = None,
    max_strong_share: float | None = None,
) -> Calibration:
    """The threshold for one of the two goals (exactly one must be given)."""
    if (target_quality is None) == (max_strong_share is None):
        raise CalibrationError("give exactly one of --target-quality or --max-strong-share")
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    if n == 0:
        raise CalibrationError("the outcome file has no rows")
    ordered = np.sort(s)[::-1]
    if target_quality is not None:
        curve = outcome_curve(s.tolist(), weak, strong)
        if curve.strong_quality <= curve.weak_quality:
            raise CalibrationError(
                "on this file the strong model is no better than the weak one: any threshold "
                "keeps the quality; route everything to the cheap tier"
            )
        k = math.ceil(round(curve.share_for_pgr(target_quality) * n, 9))
        threshold = float(ordered[k - 1]) if k else float(ordered[0]) + 1e-9
    else:
        k = math.floor(round(float(max_strong_share) * n, 9))  # type: ignore[arg-type]
        # strictly above the first excluded score, so ties with it stay on the cheap side
        threshold = float(ordered[k]) + 1e-9 if k < n else float(ordered[-1])
    threshold = min(max(threshold, 0.0), 1.0)
    return _measure(s, weak, strong, threshold)


def _measure(
    scores: np.ndarray, weak: Sequence[bool], strong: Sequence[bool], threshold: float
) -> Calibration:
    to_strong = scores >= threshold
    w = np.asarray(weak, dtype=np.float64)
    st = np.asarray(strong, dtype=np.float64)
    quality = float(np.where(to_strong, st, w).mean())
    gap = float(st.mean() - w.mean())
    return Calibration(
        threshold=threshold,
        strong_share=float(to_strong.mean()),
        quality=quality,
        pgr=(quality - float(w.mean())) / gap if gap > 0 else 1.0,
        weak_quality=float(w.mean()),
        strong_quality=float(st.mean()),
        rows=len(scores),
    )


def apply_threshold(
    raw: dict[str, Any], config: TierwiseConfig, threshold: float, strong_tier: str | None
) -> tuple[dict[str, Any], dict[str, float]]:
    """A copy of the raw config mapping with new min_score values; and the values set."""
    ranked = config.ranked_tiers
    if len(ranked) < 2:
        raise CalibrationError("calibration needs at least two tiers")
    strong = config.tier(strong_tier) if strong_tier else ranked[-1]
    if strong.order == ranked[0].order:
        raise CalibrationError(f"tier {strong.name} is the cheapest; pick a stronger one")
    old = config.thresholds()
    floor = old[ranked[0].name]
    span = old[strong.name] - floor
    new: dict[str, float] = {strong.name: threshold}
    for tier in ranked:
        if ranked[0].order < tier.order < strong.order:
            position = (old[tier.name] - floor) / span if span > 0 else 0.5
            new[tier.name] = floor + position * (threshold - floor)
        elif tier.order > strong.order:
            new[tier.name] = max(old[tier.name], threshold)
    return write_thresholds(raw, new), {k: round(v, 4) for k, v in new.items()}


def thresholds_for_shares(
    scores: Sequence[float], config: TierwiseConfig, shares: Sequence[float]
) -> dict[str, float]:
    """min_score per tier (cheapest first) so each tier gets its share of these scores."""
    ranked = config.ranked_tiers
    if len(shares) != len(ranked):
        names = ", ".join(t.name for t in ranked)
        raise CalibrationError(f"give one share per tier ({len(ranked)}: {names}), cheapest first")
    if any(v < 0 for v in shares) or not math.isclose(sum(shares), 1.0, abs_tol=1e-6):
        raise CalibrationError(f"tier shares must be >= 0 and add up to 1, not {sum(shares):g}")
    if not len(scores):
        raise CalibrationError("the file has no rows to take shares of")
    s = np.asarray(scores, dtype=np.float64)
    bounds = np.cumsum(shares)[:-1]
    new = {ranked[0].name: config.thresholds()[ranked[0].name]}
    for tier, bound in zip(ranked[1:], bounds, strict=True):
        # quantile of the cheaper shares; 1.0 (never) when the tier's share is zero at the top
        new[tier.name] = float(np.quantile(s, bound)) if bound < 1 else 1.0
    return new


def write_thresholds(raw: dict[str, Any], new: dict[str, float]) -> dict[str, Any]:
    """A copy of the raw config mapping with the given tiers' min_score replaced."""
    data = dict(raw)
    nested = "tiers" not in data and isinstance(data.get("tierwise"), dict)
    body = dict(data["tierwise"]) if nested else data
    body["tiers"] = [
        {**t, "min_score": round(new[t["name"]], 4)} if t.get("name") in new else dict(t)
        for t in body["tiers"]
    ]
    if nested:
        data["tierwise"] = body
    return data

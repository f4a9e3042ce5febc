"""A simulated LLM judge on held-out AlpacaEval: what the hosts' judge could add, at best.

No LLM runs here. On each AlpacaEval source held out (the head fitted on every other
source, as in the CV table), rows whose learned score lies within `judge_margin` of a band
edge take a stand-in verdict: the other small models' judged outcome on the same prompt
(1 - their mean GPT-4-Turbo preference against GPT-4-Turbo's answer; the 1B model itself,
whose flag is the target, is left out), read as a 1-10 rating and mapped to a score exactly
as the hosts' judge answer is (rating_score, then settle: one band either side of the edge).

This is an optimistic proxy: it is how other models actually fared, judged by a strong
model, not a small model's guess about a request it has not answered. The hosts' real judge
is a cheap model rating difficulty from the text alone and will do worse. Nothing here is
chosen: the margins are reported side by side, and the shipped default is not moved by them.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.config import Bands
from tierwise.scoring.judge import nearest_edge, settle
from tierwise.scoring.judge_prompt import rating_score
from tierwise.training import fit_learned
from tierwise.training.cv import Pool
from tierwise.training.data import iter_jsonl
from tierwise.training.metrics import outcome_report
from tierwise.training.sources import SMALL_MODELS

MARGINS = (0.05, 0.10, 0.20)  # the shipped judge_margin, and two wider, reported side by side


def stand_in_ratings(alpaca: Path) -> dict[str, float]:
    """Per prompt text: the other small models' judged outcome as a 1-10 difficulty rating."""
    ratings = {}
    for _, row in iter_jsonl(alpaca):
        table = row.get("preference_vs_strong") or {}
        others = [float(table[m]) for m in SMALL_MODELS[1:] if m in table]
        if others:
            ratings[str(row["text"])] = 1.0 + 9.0 * (1.0 - statistics.fmean(others))
    return ratings


def simulate(
    pool: Pool,
    settings: fit_learned.Settings,
    embedding: str,
    alpaca: Path,
    bands: Bands,
    margins: tuple[float, ...] = MARGINS,
) -> dict[str, Any]:
    """Per AlpacaEval source and pooled: AUROC / APGR without and with the simulated judge,
    and the share of rows judged, at each margin."""
    ratings = stand_in_ratings(alpaca)
    kept: dict[str, list[np.ndarray]] = {"unit": [], "rating": [], "weak": [], "strong": []}
    by_source: dict[str, Any] = {}
    for source in [s for s in pool.source_names if s.startswith("alpaca-")]:
        test = pool.sources == source
        model = fit_learned.fit(pool, ~test, settings, embedding)
        eta, _ = fit_learned.scores_and_bands(model, pool, test)
        rows = pool.rows_of(source)
        parts = {
            "unit": np.array([model.unit(float(e), bands) for e in eta]),
            "rating": np.array([ratings.get(e.text, np.nan) for e in rows]),
            "weak": np.array([bool(e.weak) for e in rows]),
            "strong": np.array([bool(e.strong) for e in rows]),
        }
        for key, values in parts.items():
            kept[key].append(values)
        by_source[source] = judge_figures(parts, bands, margins)
    if not by_source:
        return {}
    pooled = {key: np.concatenate(values) for key, values in kept.items()}
    return {"by_source": by_source, "pooled": judge_figures(pooled, bands, margins)}


def judge_figures(
    parts: dict[str, np.ndarray], bands: Bands, margins: tuple[float, ...]
) -> dict[str, Any]:
    """`parts`: the held-out scores (unit), stand-in ratings (nan: none), weak and strong
    flags of the same rows."""
    unit, rating = parts["unit"], parts["rating"]
    weak, strong = parts["weak"].tolist(), parts["strong"].tolist()
    base = outcome_report(unit.tolist(), weak, strong)
    out: dict[str, Any] = {
        "n": len(unit),
        "without": {"auroc": round(base.auroc_strong_needed, 4), "apgr": round(base.apgr, 4)},
    }
    edges = np.array([nearest_edge(float(u), bands) for u in unit])
    for margin in margins:
        near = (np.abs(unit - edges) <= margin) & ~np.isnan(rating)
        judged = unit.copy()
        judged[near] = [
            settle(rating_score(float(r), bands), float(e), bands)
            for r, e in zip(rating[near], edges[near], strict=True)
        ]
        report = outcome_report(judged.tolist(), weak, strong)
        out[f"margin {margin:g}"] = {
            "judged_share": round(float(near.mean()), 4),
            "auroc": round(report.auroc_strong_needed, 4),
            "apgr": round(report.apgr, 4),
        }
    return out


def format_simulation(report: dict[str, Any]) -> str:
    """One line per source: AUROC / APGR without the judge, then with it at each margin."""
    margins = [k for k in report["pooled"] if k.startswith("margin ")]
    head = f"{'source':<22}{'n':>5}{'without':>16}" + "".join(
        f"{m + ' (judged)':>26}" for m in margins
    )
    lines = [head]
    rows = {**report["by_source"], "pooled": report["pooled"]}
    for source, figures in rows.items():
        cells = f"{figures['without']['auroc']:>8.3f}/{figures['without']['apgr']:<7.3f}"
        for m in margins:
            f = figures[m]
            cells += f"{f['auroc']:>10.3f}/{f['apgr']:.3f} ({f['judged_share']:>5.1%})"
        lines.append(f"{source:<22}{figures['n']:>5}{cells}")
    return "\n".join(lines)

"""`tierwise eval`: tierwise's scorers against the baselines, on label and outcome files."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tierwise.progress import Progress
from tierwise.request import ChatRequest
from tierwise.scoring.base import Scorer
from tierwise.training import baselines, splits
from tierwise.training.baselines import Scored
from tierwise.training.data import Row, is_outcome_file, load_rows
from tierwise.training.metrics import (
    OutcomeCurve,
    label_report,
    outcome_report,
    savings_at_quality,
)

RANDOM_SEEDS = 10
Method = Callable[[Sequence[str]], list[Scored]]


def scorer_method(scorer: Scorer, label: str, show_progress: bool) -> Method:
    def run(texts: Sequence[str]) -> list[Scored]:
        out = []
        progress = Progress(len(texts), f"{label:>10}") if show_progress else None
        for text in texts:
            score = scorer.score(ChatRequest.from_text(text))
            out.append(Scored(score.value, score.band.value))
            if progress:
                progress.advance()
        if progress:
            progress.close()
        return out

    return run


def methods_for(rows: list[Row], main: dict[str, Method]) -> dict[str, Method]:
    """The scorer(s) under test plus every baseline that can run here."""
    methods = dict(main)
    texts = [r.text for r in rows]
    if is_outcome_file(rows):
        methods["length"] = baselines.length_baseline(0, 0)
    else:
        cut_low, cut_high = baselines.best_length_cuts(texts, [str(r.label) for r in rows])
        methods["length*"] = baselines.length_baseline(cut_low, cut_high)
    lite = baselines.litellm_or_none()
    if lite is not None:
        methods["litellm"] = lite.by_score
        methods["litellm-tier"] = lite.by_tier
    return methods


def evaluate(
    rows: list[Row], methods: dict[str, Method], target_pgr: float = 0.8
) -> tuple[dict[str, dict[str, Any]], dict[str, OutcomeCurve]]:
    """Metrics per method (and, for outcome files, each method's quality-cost curve)."""
    texts = [r.text for r in rows]
    results: dict[str, dict[str, Any]] = {}
    curves: dict[str, OutcomeCurve] = {}
    for name, method in methods.items():
        results[name], curve = _metrics(rows, method(texts), target_pgr)
        if curve is not None:
            curves[name] = curve
    random_runs = [
        _metrics(rows, baselines.random_baseline(seed)(texts), target_pgr)[0]
        for seed in range(RANDOM_SEEDS)
    ]
    results["random"] = {
        key: round(statistics.fmean(run[key] for run in random_runs), 4)
        for key, value in random_runs[0].items()
        if isinstance(value, float)
    } | {"n": len(rows)}
    return results, curves


def _metrics(
    rows: list[Row], scored: list[Scored], target_pgr: float
) -> tuple[dict[str, Any], OutcomeCurve | None]:
    if is_outcome_file(rows):
        report = outcome_report(
            [s.score for s in scored],
            [bool(r.weak) for r in rows],
            [bool(r.strong) for r in rows],
        )
        savings = savings_at_quality(report.curve, target_pgr, weak_cost=0.0, strong_cost=1.0)
        extra = {"strong_share_at_target": savings["strong_share"], "target_pgr": target_pgr}
        return report.as_dict() | extra, report.curve
    return label_report([str(r.label) for r in rows], [s.band for s in scored]).as_dict(), None


def evaluate_file(
    path: Path,
    scorers: Mapping[str, Scorer],
    show_progress: bool = True,
    split: str = "all",
    target_pgr: float = 0.8,
) -> tuple[list[Row], dict[str, dict[str, Any]], dict[str, OutcomeCurve]]:
    rows = load_rows(path)
    if split != "all" and is_outcome_file(rows):
        rows = splits.design(rows) if split == "design" else splits.held_out(rows)
    main = {name: scorer_method(scorer, name, show_progress) for name, scorer in scorers.items()}
    results, curves = evaluate(rows, methods_for(rows, main), target_pgr)
    return rows, results, curves


def format_table(path: Path, rows: list[Row], results: dict[str, dict[str, Any]]) -> str:
    outcome = is_outcome_file(rows)
    columns = (
        ("auroc_strong_needed", "apgr", "cpt50", "cpt80", "strong_share_at_target")
        if outcome
        else ("accuracy", "macro_f1")
    )
    header = f"{path.name} ({len(rows)} rows)"
    lines = [header, f"  {'method':<16}" + "".join(f"{c:>23}" for c in columns)]
    for name, metrics in results.items():
        cells = "".join(f"{metrics.get(c, float('nan')):>23.3f}" for c in columns)
        lines.append(f"  {name:<16}{cells}")
    return "\n".join(lines)


NOTES = (
    "length* = token-count cut points fitted on the evaluated file itself (the baseline's best "
    "case); litellm = LiteLLM complexity_router's weighted score, litellm-tier = the tier it "
    "routes to; random = mean of 10 seeds; strong_share_at_target = share of queries sent to "
    "the strong model to recover the target share of its quality gain (--target-quality)."
)

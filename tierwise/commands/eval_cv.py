"""`tierwise eval --cv source`: tierwise against length, LiteLLM and random, source by source.

tierwise's head is refitted for each held-out source with the settings the shipped artifact
was trained with (themselves chosen by this same CV in `tierwise train`); the baselines'
band cut points, where they need any, come from the other sources' labels too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tierwise.config import load_config
from tierwise.encoder import cache_dir
from tierwise.scoring.learned import minilm_or_none
from tierwise.static_encoder import NAME, StaticEncoderUnavailable, shared_static_encoder
from tierwise.training import baselines, ceiling, fit_learned, judge_sim
from tierwise.training.cv import (
    Pool,
    baseline_scores,
    build_pool,
    format_table,
    random_summary,
    summarize,
)
from tierwise.training.data import DataError
from tierwise.training.metrics import OutcomeCurve, outcome_curve, outcome_report
from tierwise.training.sources import load_sources

NOTES = (
    "Each row: a source held out, everything fitted on the others. tierwise = the learned "
    "scorer refitted per fold with its shipped settings; length = token count (band cuts "
    "fitted on the other sources' labels); litellm = LiteLLM complexity_router's weighted "
    "score and its own tier; random = mean of 10 seeds. AUROC of 'the strong model was "
    "needed' and APGR for outcome sources; AUROC of HIGH and 3-class accuracy for labels. "
    "mean/worst: AUROC over every source, APGR over outcome sources, accuracy over labels."
)


def run(args: argparse.Namespace) -> int:
    try:
        examples = load_sources(args.data)
        encoder = shared_static_encoder()
    except (DataError, OSError, StaticEncoderUnavailable) as exc:
        print(f"tierwise eval: {exc}", file=sys.stderr)
        return 1
    open_encoder = minilm_or_none(fit_learned.OPEN_WINDOW)
    pool = build_pool(examples, encoder, NAME, cache=cache_dir(), open_encoder=open_encoder)
    settings = fit_learned.stored_settings()
    held_out = {
        "tierwise": fit_learned.cv_scores(pool, settings, NAME),
        "length": baseline_scores(pool, baselines.length_baseline(0, 0), True),
    }
    lite = baselines.litellm_or_none()
    if lite is not None:
        held_out["litellm"] = baseline_scores(pool, lite.by_score, False)
    results: dict[str, dict[str, Any]] = {m: summarize(pool, *s) for m, s in held_out.items()}
    results["random"] = random_summary(pool)
    print(format_table(results))
    print(NOTES)
    report: dict[str, Any] = {"settings": settings.as_dict(), "methods": results}
    if args.ceiling:
        bounds = ceiling.ceiling_report(pool, settings, NAME, args.data, results["tierwise"])
        report["ceiling"] = bounds
        print("\nUpper bounds (used for no choice; tierwise/training/ceiling.py says how)")
        print(ceiling.format_ceiling(report["ceiling"]))
    if args.judge_sim:
        report["judge_sim"] = _judge_sim(pool, settings, args.data)
    if args.plot:
        _plot(pool, held_out, args.plot)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.json}")
    return 0


def _judge_sim(pool: Pool, settings: fit_learned.Settings, data: Path) -> dict[str, Any]:
    alpaca = data / "outcomes" / "alpaca_dev.jsonl"
    if not alpaca.is_file():
        print(f"\nno LLM judge simulation: {alpaca} is missing")
        return {}
    simulated = judge_sim.simulate(pool, settings, NAME, alpaca, load_config().scoring.bands)
    print(
        "\nLLM judge, simulated on held-out AlpacaEval (AUROC / APGR; share of rows judged). "
        "The verdict is the other small models' judged outcome on the prompt: an optimistic "
        "proxy for a cheap model's own rating (tierwise/training/judge_sim.py)"
    )
    print(judge_sim.format_simulation(simulated) if simulated else "no AlpacaEval rows")
    return simulated


def _plot(pool: Pool, held_out: dict[str, tuple[Any, Any]], out: Path) -> None:
    """Quality-cost curves of the held-out scores: one panel per outcome family.

    A family pools its sources (MMLU's four subject groups, AlpacaEval's five datasets);
    each row's score came from the fold that held its source out. A perfect scorer's line
    shows how much room the metric leaves on that traffic. Each family's pooled AUROC and
    APGR are printed, since the picture shows them.
    """
    from tierwise.training.plot import plot_curves

    families: dict[str, list[int]] = {}
    for i, e in enumerate(pool.examples):
        if e.is_outcome:
            families.setdefault(ceiling.family(e.source), []).append(i)
    panels: dict[str, dict[str, OutcomeCurve]] = {}
    for family, rows in families.items():
        weak = [bool(pool.examples[i].weak) for i in rows]
        strong = [bool(pool.examples[i].strong) for i in rows]
        curves = {}
        for method, (scores, _) in held_out.items():
            pooled = outcome_report(scores[rows].tolist(), weak, strong)
            curves[method] = pooled.curve
            print(
                f"{family} pooled, {method}: AUROC {pooled.auroc_strong_needed:.3f}, "
                f"APGR {pooled.apgr:.3f}"
            )
        curves["perfect (knows outcomes)"] = outcome_curve(
            ceiling.perfect_scores(weak, strong), weak, strong
        )
        panels[f"{family} ({len(rows)} rows, held out)"] = curves
    try:
        print(f"quality-cost curves written to {plot_curves(panels, out)}")
    except ImportError as exc:
        print(f"tierwise eval: no plot: {exc}", file=sys.stderr)

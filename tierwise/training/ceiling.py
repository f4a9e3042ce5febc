"""How far routing quality can go on the data shipped: the measurements behind the floors.

Four upper bounds, each next to the leave-one-source-out figure (tierwise/training/cv.py):

- in-source: the same head and inputs fitted by k-fold *inside* each source (or its whole
  benchmark), so a held-out row's source is known to the fit, with the grid point best for
  that source. If this is no better than leave-one-source-out, the inputs, not the
  transfer, are what limits the scorer.
- a perfect scorer's APGR: what the metric itself allows at a source's weak-model accuracy.
- AlpacaEval judge agreement: how well another small model's judged preference on the same
  prompt predicts the 1B model's flag. No prompt-only scorer is likely to beat knowing how a
  similar model actually fared, so this bounds what the text can tell us.
- MMLU subject prior: the AUROC of each question's subject's weak-model failure rate
  (leave-one-out inside the subject). A held-out subject group offers no such prior, so
  this is the part of MMLU's signal leave-one-source-out cannot reach by construction.

Nothing here is used for a choice: these figures explain the CV table, they do not tune it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.training import fit_learned
from tierwise.training.cv import Pool, summarize
from tierwise.training.data import iter_jsonl
from tierwise.training.metrics import auroc, outcome_report
from tierwise.training.sources import SMALL_MODELS, mmlu_group

FOLDS = 5
WEAK_MODEL = SMALL_MODELS[0]  # the 1B model whose >= 0.5 preference is the `weak` flag


def family(source: str) -> str:
    """The benchmark a source belongs to: mmlu-2 -> mmlu, alpaca-koala -> alpaca."""
    return source.split("-")[0] if source.startswith(("mmlu-", "alpaca-")) else source


def in_source_scores(
    pool: Pool,
    settings: fit_learned.Settings,
    embedding: str,
    pooled: bool = False,
    folds: int = FOLDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out scores of every row from a head fitted on its own source's other folds.

    pooled: fit on the source's whole family instead (MMLU's subject groups together, so
    a question's subject has been seen; AlpacaEval's 398 prompts rather than 47 to 122).
    """
    rng = np.random.default_rng(0)
    groups = np.array([family(s) for s in pool.sources]) if pooled else pool.sources
    scores = np.zeros(len(pool.sources))
    bands = np.zeros(len(pool.sources), dtype=int)
    for group in dict.fromkeys(groups):
        rows = np.flatnonzero(groups == group)
        rng.shuffle(rows)
        for fold in range(folds):
            test = np.zeros(len(pool.sources), dtype=bool)
            test[rows[fold::folds]] = True
            train = (groups == group) & ~test
            model = fit_learned.fit(pool, train, settings, embedding)
            scores[test], bands[test] = fit_learned.scores_and_bands(model, pool, test)
    return scores, bands


def best_of_grid(
    pool: Pool, settings: fit_learned.Settings, embedding: str, pooled: bool
) -> dict[str, Any]:
    """In-source figures at the best length weight and ridge strength *for each source*.

    Chosen on the rows reported, so optimistic on purpose: an upper bound, not an estimate.
    """
    runs = [
        summarize(
            pool,
            *in_source_scores(pool, replace(settings, l2=l2, length_weight=lw), embedding, pooled),
        )
        for l2 in fit_learned.L2_GRID
        for lw in fit_learned.LENGTH_WEIGHT_GRID
    ]

    def merit(metrics: dict[str, float]) -> float:
        return metrics["auroc"] + metrics.get("apgr", metrics.get("accuracy", 0.0))

    by_source = {
        source: max((run["by_source"][source] for run in runs), key=merit)
        for source in pool.source_names
    }
    out: dict[str, Any] = {"by_source": by_source}
    for metric in ("auroc", "apgr", "accuracy"):
        values = [m[metric] for m in by_source.values() if metric in m]
        if values:
            out[f"mean_{metric}"] = round(statistics.fmean(values), 4)
    return out


def perfect_scores(weak: list[bool], strong: list[bool]) -> list[float]:
    """A scorer that knows the outcomes: strong-only wins first, weak-only wins last."""
    pairs = zip(weak, strong, strict=True)
    return [float(s and not w) - float(w and not s) for w, s in pairs]


def oracle_apgr(pool: Pool) -> dict[str, float]:
    """APGR of a scorer that knows each outcome: what the metric allows on each source.

    With a weak model that is right on a share w of rows, the perfect ranking reaches
    PGR = 1 only after sending the other 1 - w to the strong model, so APGR tops out near
    1 - (1 - w) / 2: a floor above that cannot be met by any scorer on that traffic.
    """
    out = {}
    for source in pool.source_names:
        rows = [e for e in pool.rows_of(source) if e.is_outcome]
        if rows:
            weak = [bool(e.weak) for e in rows]
            strong = [bool(e.strong) for e in rows]
            out[source] = round(outcome_report(perfect_scores(weak, strong), weak, strong).apgr, 4)
    return out


def judge_agreement(alpaca: Path) -> dict[str, Any]:
    """AUROC of "the 1B model loses" from each other model's judged loss on the same prompts."""
    pairs: dict[str, list[tuple[float, bool]]] = defaultdict(list)  # model -> (pref, 1B lost)
    n = 0
    for _, row in iter_jsonl(alpaca):
        table = row.get("preference_vs_strong") or {}
        if WEAK_MODEL not in table:
            continue
        n += 1
        lost = not row["weak"]
        others = [float(table[m]) for m in SMALL_MODELS[1:] if m in table]
        if others:
            pairs["mean of the other small models"].append((statistics.fmean(others), lost))
        for model, value in table.items():
            if model != WEAK_MODEL:
                pairs[model].append((float(value), lost))
    by_model = {
        m: round(auroc([-v for v, _ in rows], [lost for _, lost in rows]), 4)
        for m, rows in pairs.items()
    }
    return {"n": n, "auroc_by_model": by_model}


def subject_prior(mmlu: Path) -> dict[str, float]:
    """Per MMLU group: AUROC of the leave-one-out weak failure rate of the question's subject."""
    by_subject: dict[str, list[bool]] = defaultdict(list)
    for _, row in iter_jsonl(mmlu):
        by_subject[str(row.get("bench") or "mmlu")].append(not row["weak"])
    prior: dict[str, tuple[list[float], list[bool]]] = defaultdict(lambda: ([], []))
    for subject, fails in by_subject.items():
        total, n = sum(fails), len(fails)
        scores, truth = prior[mmlu_group(subject)]
        for fail in fails:
            scores.append((total - fail) / (n - 1) if n > 1 else 0.5)
            truth.append(fail)
    return {group: round(auroc(s, t), 4) for group, (s, t) in sorted(prior.items())}


def ceiling_report(
    pool: Pool,
    settings: fit_learned.Settings,
    embedding: str,
    data_dir: Path,
    held_out: dict[str, Any],
) -> dict[str, Any]:
    """In-source figures beside the leave-one-source-out summary `held_out`, plus the
    label-side bounds."""
    report: dict[str, Any] = {
        "leave_one_source_out": held_out,
        "in_source": best_of_grid(pool, settings, embedding, pooled=False),
        "in_family": best_of_grid(pool, settings, embedding, pooled=True),
    }
    report["oracle_apgr"] = oracle_apgr(pool)
    alpaca = data_dir / "outcomes" / "alpaca_dev.jsonl"
    if alpaca.is_file():
        report["alpaca_judge_agreement"] = judge_agreement(alpaca)
    mmlu = data_dir / "outcomes" / "mmlu_dev.jsonl"
    if mmlu.is_file():
        report["mmlu_subject_prior"] = subject_prior(mmlu)
    return report


def format_ceiling(report: dict[str, Any]) -> str:
    """The report as the three small tables docs/routing-quality.md quotes."""
    columns = ("leave_one_source_out", "in_source", "in_family")
    lines = [
        f"{'source':<22}{'held out':>16}{'in-source':>16}{'in-family':>16}"
        "   (k-fold inside the source / its benchmark; AUROC / APGR or accuracy)"
    ]
    for source, held in report[columns[0]]["by_source"].items():
        second = "apgr" if "apgr" in held else "accuracy"
        cells = [report[c]["by_source"][source] for c in columns]
        lines.append(
            f"{source:<22}" + "".join(f"{m['auroc']:>8.3f}/{m[second]:<7.3f}" for m in cells)
        )
    lines.append(
        f"{'mean':<22}"
        + "".join(
            f"{report[c]['mean_auroc']:>8.3f}/{report[c]['mean_apgr']:<7.3f}" for c in columns
        )
    )
    oracle = report.get("oracle_apgr")
    if oracle:
        lines.append("APGR of a perfect scorer (knows every outcome):")
        lines += [f"  {source:<40}{value:>8.3f}" for source, value in oracle.items()]
    judge = report.get("alpaca_judge_agreement")
    if judge:
        lines.append(f"AlpacaEval, {judge['n']} prompts: AUROC of 'the 1B model loses' from")
        ranked = sorted(judge["auroc_by_model"].items(), key=lambda kv: -kv[1])
        lines += [f"  {model:<40}{value:>8.3f}" for model, value in ranked]
    prior = report.get("mmlu_subject_prior")
    if prior:
        lines.append("MMLU: AUROC of the question's subject's failure rate (leave-one-out)")
        lines += [f"  {group:<40}{value:>8.3f}" for group, value in prior.items()]
    return "\n".join(lines)

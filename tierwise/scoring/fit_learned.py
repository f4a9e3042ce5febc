"""Train the learned scorer's heads (numpy only, deterministic) and report grouped CV figures.

What each head sees (see tierwise/scoring/learned.py for how they combine):
- open complexity head: softmax regression on STREAM's balanced dev set (the labelling
  policy of the held-back test) plus the 1800/325 files at a lower weight;
- open outcome head: ridge regression of the strong model's gain on the design half of GSM8K;
- closed outcome head: the same on the multiple-choice rows of MMLU's design half (subjects
  split by hash in tierwise/evaluation/splits.py; the held-out subjects are never read).

Figures printed here are cross-validated inside the training data, grouped by domain (labels)
or subject (MMLU): they choose the ridge strength and are the honest estimate before any
held-out evaluation (`tierwise eval --split held-out`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.encoder import Encoder
from tierwise.evaluation.baselines import best_cuts
from tierwise.evaluation.data import Row
from tierwise.evaluation.metrics import LABELS, outcome_report
from tierwise.evaluation.splits import design
from tierwise.progress import Progress
from tierwise.scoring.heuristic import HeuristicModel, features
from tierwise.scoring.learned import (
    ARTIFACT,
    KindModel,
    LearnedModel,
    Standardized,
    Zscore,
    input_vector,
    is_closed,
)

SEED = 0  # row folds of GSM8K; everything else is deterministic
EXTRA_LABEL_WEIGHT = 0.3  # 1800/325 rows follow another labelling policy: they count less
SOFTMAX_L2 = 1.0  # chosen by leave-one-domain-out CV on the balanced dev set
SOFTMAX_STEPS = 1500
RIDGE_GRID = (0.3, 3.0, 30.0)  # chosen per head by grouped CV inside the design half
MIX_GRID = (0.0, 0.25, 0.5, 1.0)  # weight of outcome + heuristic against the complexity head
FOLDS = 4


@dataclass
class Prepared:
    """Rows with their model inputs, computed once."""

    rows: list[Row]
    x: np.ndarray
    heuristic_eta: np.ndarray
    closed: np.ndarray


def prepare(
    rows: Sequence[Row], encoder: Encoder, heuristic: HeuristicModel, label: str
) -> Prepared:
    """Embed each text alone (as at serving time: int8 scales depend on the batch)."""
    xs, etas, closed = [], [], []
    with Progress(len(rows), f"embed {label:>9}") as progress:
        for row in rows:
            dims = features(row.text)
            kind_closed = is_closed(dims)
            head = heuristic.closed if kind_closed else heuristic.open
            xs.append(input_vector(encoder.embed([row.text])[0], dims, row.text))
            etas.append(head.eta(dims))
            closed.append(kind_closed)
            progress.advance()
    return Prepared(list(rows), np.array(xs), np.array(etas), np.array(closed))


def _scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sd = x.std(axis=0)
    return x.mean(axis=0), np.where(sd < 1e-8, 1.0, sd)


def fit_softmax(x: np.ndarray, y: np.ndarray, weights: np.ndarray, l2: float) -> Standardized:
    """Weighted multinomial logistic regression, full-batch gradient descent."""
    mean, scale = _scale(x)
    z = (x - mean) / scale
    onehot = np.eye(len(LABELS))[y]
    w = np.zeros((z.shape[1], len(LABELS)))
    b = np.zeros(len(LABELS))
    step = 1.0 / (0.5 * np.linalg.norm(z, 2) ** 2 / len(z) + l2)
    share = weights / weights.sum()
    for _ in range(SOFTMAX_STEPS):
        logits = z @ w + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        grad = (p - onehot) * share[:, None]
        w -= step * (z.T @ grad + l2 * w)
        b -= step * grad.sum(axis=0)
    return Standardized(mean, scale, w, b)


def fit_ridge(x: np.ndarray, y: np.ndarray, l2: float) -> Standardized:
    """Ridge regression on standardized inputs, intercept not penalized (closed form)."""
    mean, scale = _scale(x)
    z = (x - mean) / scale
    centred = y - y.mean()
    w = np.linalg.solve(z.T @ z + l2 * len(z) * np.eye(z.shape[1]), z.T @ centred)
    return Standardized(mean, scale, w, float(y.mean()))


def _apgr(scores: np.ndarray, rows: Sequence[Row]) -> float:
    return outcome_report(
        scores.tolist(), [bool(r.weak) for r in rows], [bool(r.strong) for r in rows]
    ).apgr


def choose_ridge(data: Prepared, folds: np.ndarray) -> tuple[float, dict[str, float], np.ndarray]:
    """The ridge strength whose out-of-fold predictions plus the heuristic rank best (APGR).

    Predictions are standardized within each fold before pooling, so a fold's offset (its
    groups' mean gain) cannot pose as ranking skill. Returns the strength, the APGR per
    strength, and the chosen strength's out-of-fold predictions.
    """
    gain = np.array([r.gain for r in data.rows], dtype=np.float64)
    results, predictions = {}, {}
    for l2 in RIDGE_GRID:
        oof = np.zeros(len(gain))
        for f in np.unique(folds):
            train = folds != f
            oof[~train] = _zsum(fit_ridge(data.x[train], gain[train], l2)(data.x[~train]))
        results[str(l2)] = round(_apgr(_zsum(oof, data.heuristic_eta), data.rows), 4)
        predictions[str(l2)] = oof
    best = max(RIDGE_GRID, key=lambda v: results[str(v)])
    return best, results, predictions[str(best)]


def _zsum(*signals: np.ndarray) -> np.ndarray:
    return np.sum([(s - s.mean()) / (s.std() or 1.0) for s in signals], axis=0)


def _p_high_minus_low(head: Standardized, x: np.ndarray) -> np.ndarray:
    logits = head(x)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return np.asarray(p[:, 2] - p[:, 0])


def fit_open(
    labelled: Prepared,
    extra: Prepared,
    gsm: Prepared,
    outcome_head: Standardized,
    gsm_oof: np.ndarray,
) -> tuple[KindModel, dict[str, Any]]:
    """Complexity head + GSM8K outcome head + heuristic open head, standardized and summed.

    eta = complexity + mix * (outcome + heuristic). The complexity head and the band cuts are
    refitted per fold of a leave-one-domain-out CV on the labelled rows (1800/325 rows of the
    held-out domain's name are left out too); `mix` maximizes that CV accuracy plus the
    GSM8K design-half APGR of out-of-fold outcome predictions, both training data.
    """
    outcome_z = Zscore.of(outcome_head(gsm.x))
    labels = [str(r.label) for r in labelled.rows]
    y = np.array([LABELS.index(label) for label in labels])
    y_extra = np.array([LABELS.index(str(r.label)) for r in extra.rows])

    def complexity_head(mask: np.ndarray, extra_mask: np.ndarray) -> Standardized:
        weights = np.concatenate(
            [np.ones(int(mask.sum())), np.full(int(extra_mask.sum()), EXTRA_LABEL_WEIGHT)]
        )
        x = np.vstack([labelled.x[mask], extra.x[extra_mask]])
        return fit_softmax(x, np.concatenate([y[mask], y_extra[extra_mask]]), weights, SOFTMAX_L2)

    def model_for(head: Standardized, mask: np.ndarray, mix: float) -> KindModel:
        complexity = _p_high_minus_low(head, labelled.x[mask])
        complexity_z = Zscore.of(complexity)
        heuristic_z = Zscore.of(labelled.heuristic_eta[mask])
        weights = {"complexity": 1.0, "outcome": mix, "heuristic": mix}
        model = KindModel(head, complexity_z, outcome_head, outcome_z, heuristic_z, weights, 0, 0)
        eta = np.array(
            [
                model.eta(x, h)[0]
                for x, h in zip(labelled.x[mask], labelled.heuristic_eta[mask], strict=True)
            ]
        )
        low, high = best_cuts(eta, np.array(labels)[mask].tolist())
        return KindModel(
            head, complexity_z, outcome_head, outcome_z, heuristic_z, weights, low, high
        )

    domains = np.array([r.group or "" for r in labelled.rows])
    extra_domains = np.array([r.group or "" for r in extra.rows])
    folds = [
        (domains == d, complexity_head(domains != d, extra_domains != d))
        for d in np.unique(domains)
    ]
    final_head = complexity_head(np.ones(len(y), dtype=bool), np.ones(len(y_extra), dtype=bool))
    gsm_complexity = _p_high_minus_low(final_head, gsm.x)
    table = {}
    for mix in MIX_GRID:
        correct = 0
        for held, head in folds:
            model = model_for(head, ~held, mix)
            for i in np.flatnonzero(held):
                correct += (
                    model.band(model.eta(labelled.x[i], labelled.heuristic_eta[i])[0]) == labels[i]
                )
        gsm_eta = _zsum(gsm_complexity) + mix * _zsum(gsm_oof, gsm.heuristic_eta)
        table[str(mix)] = {
            "label_accuracy_cv": round(correct / len(labels), 4),
            "gsm8k_apgr_cv": round(_apgr(gsm_eta, gsm.rows), 4),
        }
    best = max(MIX_GRID, key=lambda m: sum(table[str(m)].values()))
    model = model_for(final_head, np.ones(len(y), dtype=bool), best)
    return model, {"mix": best, "by_mix": table}


def fit_closed(
    mmlu: Prepared, heuristic: HeuristicModel, l2: float, oof: np.ndarray
) -> tuple[KindModel, dict[str, float]]:
    """Heuristic closed head + weight * MMLU outcome head; bands keep the heuristic's shares.

    The weight is chosen by subject-grouped out-of-fold APGR on the design half (0 when the
    outcome head does not help on subjects it was not trained on).
    """
    gain = np.array([r.gain for r in mmlu.rows], dtype=np.float64)
    head = fit_ridge(mmlu.x, gain, l2)
    table = {
        str(w): round(_apgr(_zsum(mmlu.heuristic_eta) + w * oof, mmlu.rows), 4) for w in MIX_GRID
    }
    weight = max(MIX_GRID, key=lambda w: table[str(w)])
    outcome = head(mmlu.x)
    eta = _zsum(mmlu.heuristic_eta) + weight * _zsum(outcome)
    h = heuristic.closed
    low_share = float(np.mean(mmlu.heuristic_eta < h.cut_low))
    high_share = float(np.mean(mmlu.heuristic_eta >= h.cut_high))
    cut_low = float(np.quantile(eta, low_share))
    cut_high = float(np.quantile(eta, 1 - high_share)) if high_share else float(eta.max() + 1)
    model = KindModel(
        None,
        None,
        head,
        Zscore.of(outcome),
        Zscore.of(mmlu.heuristic_eta),
        {"outcome": weight, "heuristic": 1.0},
        cut_low,
        max(cut_low, cut_high),
    )
    return model, table


def _hash_folds(rows: Sequence[Row], key: Callable[[Row], str]) -> np.ndarray:
    return np.array(
        [int(hashlib.sha256(f"{SEED}:{key(r)}".encode()).hexdigest(), 16) % FOLDS for r in rows]
    )


def train(
    labelled: Sequence[Row],
    extra_labelled: Sequence[Row],
    gsm_rows: Sequence[Row],
    mmlu_rows: Sequence[Row],
    encoder: Encoder,
    heuristic: HeuristicModel,
) -> tuple[LearnedModel, dict[str, Any]]:
    """Fit every head; the report holds the grouped-CV figures and the choices they made."""
    started = time.perf_counter()
    gsm = prepare(design(list(gsm_rows)), encoder, heuristic, "gsm8k")
    mmlu_design = [r for r in design(list(mmlu_rows))]
    mmlu = prepare(mmlu_design, encoder, heuristic, "mmlu")
    keep = mmlu.closed
    mmlu = Prepared(
        [r for r, k in zip(mmlu.rows, keep, strict=True) if k],
        mmlu.x[keep],
        mmlu.heuristic_eta[keep],
        mmlu.closed[keep],
    )
    labelled_p = prepare(labelled, encoder, heuristic, "labels")
    extra_p = prepare(extra_labelled, encoder, heuristic, "labels+")

    gsm_l2, gsm_cv, gsm_oof = choose_ridge(gsm, _hash_folds(gsm.rows, lambda r: r.text))
    gsm_head = fit_ridge(gsm.x, np.array([r.gain for r in gsm.rows], dtype=np.float64), gsm_l2)
    open_model, open_report = fit_open(labelled_p, extra_p, gsm, gsm_head, gsm_oof)
    mmlu_folds = _hash_folds(mmlu.rows, lambda r: r.group or "")
    mmlu_l2, mmlu_cv, mmlu_oof = choose_ridge(mmlu, mmlu_folds)
    closed_model, closed_table = fit_closed(mmlu, heuristic, mmlu_l2, mmlu_oof)
    model = LearnedModel(open_model, closed_model, dim=encoder.dim, max_tokens=encoder.max_tokens)
    report = {
        "open_mix_choice": open_report,
        "gsm8k_design_cv_apgr_by_l2": gsm_cv,
        "mmlu_design_cv_apgr_by_l2": mmlu_cv,
        "mmlu_design_cv_apgr_by_outcome_weight": closed_table,
        "chosen_l2": {"gsm8k": gsm_l2, "mmlu": mmlu_l2},
        "rows": {
            "labels": len(labelled_p.rows),
            "labels_other_policy": len(extra_p.rows),
            "gsm8k_design": len(gsm.rows),
            "mmlu_design_closed": len(mmlu.rows),
        },
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    return model, report


def save(
    model: LearnedModel, report: dict[str, Any], data_files: Sequence[Path], out_dir: Path
) -> Path:
    """Write the heads with the training config and the hashes of the data they came from."""
    payload = {
        "model": model.as_dict(),
        "training": {
            "seed": SEED,
            "extra_label_weight": EXTRA_LABEL_WEIGHT,
            "softmax_l2": SOFTMAX_L2,
            "softmax_steps": SOFTMAX_STEPS,
            "ridge_grid": list(RIDGE_GRID),
            "folds": FOLDS,
            "encoder": f"all-MiniLM-L6-v2 int8, max_tokens {model.max_tokens}",
            "report": report,
        },
        "fitted_on": {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(data_files)
        },
    }
    out = out_dir / ARTIFACT
    out.write_text(json.dumps(payload, separators=(",", ":")) + "\n")
    return out

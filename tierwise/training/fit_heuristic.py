"""Fit the heuristic scorer's two heads with an ordinal (proportional-odds) logistic model.

P(y > 0) = sigmoid(w.x - cut_low), P(y > 1) = sigmoid(w.x - cut_high), where x are the
explained dimensions. The open head learns y from complexity labels (LOW < MEDIUM < HIGH);
the closed head learns y from outcomes (weak right / both same / only strong right) of
multiple-choice questions in the design half of the outcome files. Plain numpy gradient
descent with L2; deterministic.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tierwise.scoring.heuristic import (
    DIMENSIONS,
    WEIGHTS_FILE,
    HeuristicModel,
    LinearHead,
    features,
)
from tierwise.training.data import Row
from tierwise.training.metrics import LABELS
from tierwise.training.splits import design

# L2 strengths. The closed head's was chosen by subject-grouped 4-fold cross-validation
# inside the design half (out-of-fold APGR 0.585 at 1e-4 vs 0.569 at 1e-2).
L2_OPEN = 0.01
L2_CLOSED = 1e-4
STEPS = 4000
LEARNING_RATE = 0.5


def feature_matrix(texts: Sequence[str]) -> np.ndarray:
    return np.array([[features(t)[d] for d in DIMENSIONS] for t in texts], dtype=np.float64)


def fit_head(x: np.ndarray, y: np.ndarray, l2: float) -> LinearHead:
    """Fit one ordinal head; y holds 0, 1, 2."""
    w = np.zeros(x.shape[1])
    cuts = np.array([-0.5, 0.5])
    above = np.stack([y > 0, y > 1], axis=1).astype(np.float64)
    for _ in range(STEPS):
        eta = x @ w
        p = 1.0 / (1.0 + np.exp(-(eta[:, None] - cuts[None, :])))
        residual = p - above  # gradient of the two cumulative log-losses w.r.t. their logits
        w -= LEARNING_RATE * (x.T @ residual.sum(axis=1) / len(y) + l2 * w)
        cuts = np.sort(cuts + LEARNING_RATE * residual.mean(axis=0))
    return LinearHead(
        weights={d: float(v) for d, v in zip(DIMENSIONS, w, strict=True)},
        cut_low=float(cuts[0]),
        cut_high=float(cuts[1]),
    )


def is_closed_question(text: str) -> bool:
    return features(text)["choices"] > 0


def fit(label_rows: Sequence[Row], outcome_rows: Sequence[Row]) -> HeuristicModel:
    """Open head on the label rows; closed head on the design half of the outcome rows."""
    open_x = feature_matrix([r.text for r in label_rows])
    open_y = np.array([LABELS.index(str(r.label)) for r in label_rows])
    closed = [r for r in design(list(outcome_rows)) if is_closed_question(r.text)]
    if not closed:
        raise ValueError("no multiple-choice outcome rows in the design half to fit on")
    closed_x = feature_matrix([r.text for r in closed])
    closed_y = np.array([r.gain + 1 for r in closed])
    return HeuristicModel(
        open=fit_head(open_x, open_y, L2_OPEN), closed=fit_head(closed_x, closed_y, L2_CLOSED)
    )


def save(model: HeuristicModel, data_files: Sequence[Path], out_dir: Path) -> Path:
    """Write the weights with the hashes of the data they were fitted on."""
    payload = {
        "open": model.open.as_dict(),
        "closed": model.closed.as_dict(),
        "fitted_on": {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(data_files)
        },
        "method": (
            f"ordinal logistic (proportional odds), {STEPS} full-batch steps; open head "
            f"(L2={L2_OPEN}) on complexity labels, closed head (L2={L2_CLOSED}) on the design "
            "half of multiple-choice outcomes"
        ),
    }
    out = out_dir / WEIGHTS_FILE
    out.write_text(json.dumps(payload, indent=2) + "\n")
    return out

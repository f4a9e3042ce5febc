"""The simulated LLM judge of `tierwise eval --cv source --judge-sim`, on rows whose answer
is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tierwise.cli import main
from tierwise.config import Bands
from tierwise.training.judge_sim import judge_figures, stand_in_ratings
from tierwise.training.sources import SMALL_MODELS


def test_the_stand_in_rating_is_the_other_small_models_judged_outcome(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.jsonl"
    lost = {m: 0.0 for m in SMALL_MODELS[1:]}
    won = {m: 1.0 for m in SMALL_MODELS[1:]}
    rows = [
        {"text": "a", "preference_vs_strong": {SMALL_MODELS[0]: 1.0, **lost}},
        {"text": "b", "preference_vs_strong": {SMALL_MODELS[0]: 0.0, **won}},
        {"text": "c", "preference_vs_strong": {SMALL_MODELS[0]: 0.0}},  # no other model
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # The 1B model's own preference (the target) is never part of the verdict.
    assert stand_in_ratings(path) == {"a": 10.0, "b": 1.0}


def test_only_rows_near_an_edge_take_the_verdict() -> None:
    bands = Bands(medium=0.4, high=0.7)
    unit = np.array([0.39, 0.41, 0.69, 0.05, 0.95, 0.42])
    lost = np.array([True, False, True, False, True, False])  # the weak model lost
    parts = {
        "unit": unit,
        "rating": np.where(lost, 10.0, 1.0),  # a verdict that knows the outcome
        "weak": ~lost,
        "strong": np.ones(6, dtype=bool),
    }
    figures = judge_figures(parts, bands, (0.02, 0.5))
    near = figures["margin 0.02"]
    assert near["judged_share"] == pytest.approx(4 / 6, abs=1e-4)  # 0.39, 0.41, 0.69 and 0.42
    assert figures["without"]["auroc"] < 1.0 and near["auroc"] == 1.0
    assert figures["margin 0.5"]["judged_share"] == 1.0


def test_judge_sim_needs_cv(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--judge-sim"]) == 1
    assert "--judge-sim goes with --cv source" in capsys.readouterr().err

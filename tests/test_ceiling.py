"""The upper-bound measurements behind the README's "why the floors are not reached"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tierwise.training.ceiling import family, judge_agreement, perfect_scores, subject_prior
from tierwise.training.sources import mmlu_group


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_judge_agreement_ranks_other_models_by_how_well_they_predict_the_1b_flag(
    tmp_path: Path,
) -> None:
    rows = []
    for i in range(20):
        weak = i % 2 == 0
        prefs = {
            "FuseChat-Llama-3.2-1B-Instruct": 0.9 if weak else 0.1,
            "gemma-2b-it": 0.8 if weak else 0.2,  # agrees with the 1B model on every prompt
            "phi-2": 0.2 if weak else 0.8,  # disagrees on every prompt
        }
        if i == 0:
            del prefs["phi-2"]  # a model missing on a prompt is skipped there, not zeroed
        rows.append({"text": f"q{i}", "weak": weak, "strong": True, "preference_vs_strong": prefs})
    rows.append({"text": "no 1B answer", "weak": True, "strong": True})
    report = judge_agreement(_write(tmp_path / "alpaca.jsonl", rows))
    assert report["n"] == 20
    assert report["auroc_by_model"]["gemma-2b-it"] == pytest.approx(1.0)
    assert report["auroc_by_model"]["phi-2"] == pytest.approx(0.0)
    assert "FuseChat-Llama-3.2-1B-Instruct" not in report["auroc_by_model"]


def test_subject_prior_is_leave_one_out_inside_each_subject(tmp_path: Path) -> None:
    subjects = [f"mmlu:s{i}" for i in range(40)]
    groups: dict[str, list[str]] = {}
    for s in subjects:
        groups.setdefault(mmlu_group(s), []).append(s)
    hard, easy = next(g for g in groups.values() if len(g) >= 2)[:2]
    rows = [{"text": "q", "weak": False, "strong": True, "bench": hard} for _ in range(5)]
    rows += [{"text": "q", "weak": True, "strong": True, "bench": easy} for _ in range(5)]
    prior = subject_prior(_write(tmp_path / "mmlu.jsonl", rows))
    assert prior == {mmlu_group(hard): pytest.approx(1.0)}


def test_family_groups_benchmark_splits_and_keeps_other_sources() -> None:
    assert family("mmlu-3") == "mmlu"
    assert family("alpaca-koala") == "alpaca"
    assert family("stream-balanced_dev") == "stream-balanced_dev"


def test_a_perfect_scorer_ranks_strong_only_wins_first_and_weak_only_wins_last() -> None:
    weak = [False, True, True, False]
    strong = [True, True, False, False]
    scores = perfect_scores(weak, strong)
    assert scores[0] > scores[1] == scores[3] > scores[2]

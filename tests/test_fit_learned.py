"""Training the learned head: the solver, source balancing, the CV folds, one end-to-end run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tierwise.request import ChatRequest
from tierwise.scoring.heuristic import features
from tierwise.scoring.learned import LearnedModel, LearnedScorer, input_vector
from tierwise.training import fit_learned
from tierwise.training.cv import Pool, fold_scores
from tierwise.training.sources import Example


class HashEncoder:
    """Deterministic stand-in: a text's word hashes as a unit vector (no weights needed)."""

    dim = 16

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def _pool() -> Pool:
    """Three outcome sources of very different sizes and one label family."""
    examples = []
    for source, n in (("big", 400), ("mid", 60), ("small", 20)):
        for i in range(n):
            hard = i % 3 == 0
            words = "prove rigorously and derive" if hard else "say hello"
            examples.append(Example(f"{words} {source} {i}", source, float(hard), not hard, True))
    for i in range(60):
        label = ("LOW", "MEDIUM", "HIGH")[i % 3]
        words = {"LOW": "say hello", "MEDIUM": "explain how", "HIGH": "prove rigorously and derive"}
        examples.append(Example(f"{words[label]} label {i}", "labels", i % 3 / 2, label=label))
    encoder = HashEncoder()
    x = np.array(
        [input_vector(encoder.encode([e.text])[0], features(e.text), e.text) for e in examples]
    )
    return Pool(examples, x, encoder.dim)


def test_ridge_recovers_a_linear_rule_under_weights() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 3))
    y = x @ np.array([2.0, -1.0, 0.0]) + 0.5 + rng.normal(0, 0.01, 500)
    head = fit_learned.fit_ridge(x, y, rng.uniform(0.5, 2.0, 500), l2=1e-6)
    np.testing.assert_allclose(head(x), y, atol=0.05)


def test_every_source_weighs_the_same_whatever_its_size() -> None:
    pool = _pool()
    w = fit_learned.source_weights(pool, np.ones(len(pool.sources), dtype=bool), 0.3)
    totals = {s: w[pool.sources == s].sum() for s in pool.source_names}
    assert totals == pytest.approx({"big": 1.0, "mid": 1.0, "small": 1.0, "labels": 0.3})


def test_each_fold_trains_without_the_source_it_scores() -> None:
    pool = _pool()
    seen = []

    def fold(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert not (train & test).any() and len(set(pool.sources[test])) == 1
        seen.append(pool.sources[test][0])
        return np.zeros(int(test.sum())), np.zeros(int(test.sum()), dtype=int)

    fold_scores(pool, fold)
    assert seen == pool.source_names


def test_train_end_to_end_writes_a_loadable_deterministic_artifact(tmp_path: Path) -> None:
    pool = _pool()
    model, report = fit_learned.train(pool, "hash-16")
    assert report["chosen"]["l2"] in fit_learned.L2_GRID
    assert len(report["cv_by_setting"]) == 16
    data = tmp_path / "data.jsonl"
    data.write_text("{}\n")
    out = fit_learned.save(model, report, [data], tmp_path)
    payload = json.loads(out.read_text())
    assert payload["fitted_on"]["data.jsonl"] == hashlib.sha256(b"{}\n").hexdigest()
    loaded = LearnedModel.from_dict(payload["model"])
    scorer = LearnedScorer(HashEncoder(), model=loaded)
    easy = scorer.score(ChatRequest.from_text("say hello big 1")).value
    hard = scorer.score(ChatRequest.from_text("prove rigorously and derive big 2")).value
    assert easy < hard
    again, _ = fit_learned.train(_pool(), "hash-16")
    assert json.dumps(again.as_dict()) == json.dumps(model.as_dict())

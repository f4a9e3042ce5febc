"""Training the learned heads: the solvers, and one small end-to-end run (fake encoder)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from tierwise.evaluation.data import Row
from tierwise.scoring import fit_learned
from tierwise.scoring.heuristic import load_model
from tierwise.scoring.learned import LearnedModel, LearnedScorer


def test_softmax_separates_separable_classes() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[-3.0, 0.0], [0.0, 3.0], [3.0, 0.0]])
    y = rng.integers(0, 3, 300)
    x = centres[y] + rng.normal(0, 0.5, (300, 2))
    head = fit_learned.fit_softmax(x, y, np.ones(300), l2=0.01)
    assert np.mean(head(x).argmax(axis=1) == y) > 0.97


def test_ridge_recovers_a_linear_rule() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 3))
    y = x @ np.array([2.0, -1.0, 0.0]) + 0.5 + rng.normal(0, 0.01, 500)
    head = fit_learned.fit_ridge(x, y, l2=1e-6)
    np.testing.assert_allclose(head(x), y, atol=0.05)


class HashEncoder:
    """Deterministic stand-in: a text's word hashes as a unit vector (no model needed)."""

    dim, max_tokens, model_path = 16, 40, Path("hash.onnx")

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    def embed_request(self, request: object) -> np.ndarray:
        return self.embed([request.last_user_text])[0]  # type: ignore[attr-defined]


def _rows() -> tuple[list[Row], list[Row], list[Row], list[Row]]:
    rng = np.random.default_rng(2)
    labelled, extra, gsm, mmlu = [], [], [], []
    for i in range(90):
        label = ("LOW", "MEDIUM", "HIGH")[i % 3]
        words = {"LOW": "what is the capital", "MEDIUM": "explain how", "HIGH": "prove rigorously"}
        labelled.append(Row(f"{words[label]} item {i}", label=label, group=f"d{i % 5}"))
        extra.append(Row(f"{words[label]} other {i}", label=label, group="x"))
    for i in range(80):
        hard = i % 4 == 0
        text = (
            f"Tom has {i} apples and {'then loses many over several days' if hard else 'eats one'}."
        )
        gsm.append(Row(text, weak=not hard, strong=True, group="gsm8k"))
        subject = f"mmlu:s{i % 8}"
        q = f"Question {i} about topic {i % 8}?\nA. one\nB. two\nC. three\nD. four\nAnswer:"
        mmlu.append(Row(q, weak=bool(rng.integers(0, 2)), strong=True, group=subject))
    return labelled, extra, gsm, mmlu


def test_train_end_to_end_writes_a_loadable_artifact(tmp_path: Path) -> None:
    labelled, extra, gsm, mmlu = _rows()
    encoder = HashEncoder()
    model, report = fit_learned.train(labelled, extra, gsm, mmlu, encoder, load_model())  # type: ignore[arg-type]
    assert report["open_mix_choice"]["mix"] in fit_learned.MIX_GRID
    assert set(report["chosen_l2"]) == {"gsm8k", "mmlu"}
    data = tmp_path / "data.jsonl"
    data.write_text("{}\n")
    out = fit_learned.save(model, report, [data], tmp_path)
    payload = json.loads(out.read_text())
    assert payload["fitted_on"]["data.jsonl"] == hashlib.sha256(b"{}\n").hexdigest()
    loaded = LearnedModel.from_dict(payload["model"])
    scorer = LearnedScorer(encoder, model=loaded)  # type: ignore[arg-type]
    from tierwise.request import ChatRequest

    easy = scorer.score(ChatRequest.from_text("what is the capital item 1")).value
    hard = scorer.score(ChatRequest.from_text("prove rigorously item 2")).value
    assert easy < hard
    # Deterministic: a second run gives the same heads.
    again, _ = fit_learned.train(labelled, extra, gsm, mmlu, encoder, load_model())  # type: ignore[arg-type]
    assert json.dumps(again.as_dict()) == json.dumps(model.as_dict())

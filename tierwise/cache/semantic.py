"""The semantic cache: exact match first, then cosine on the question's embedding.

Correctness rules, in the order they are checked:
- never for requests with tools, hot sampling, images in the question, an opt-out, or no
  tenant to scope them to (unless the cache is configured global);
- only within one partition (tenant scope + model group + system prompt + earlier turns +
  answer-shaping parameters);
- an answer produced by tier T serves only requests whose decision is T or a cheaper tier;
- a semantic match needs the cosine the error budget `max_false_hit_rate` sets for the
  pair's length (tierwise.cache.budget: short look-alikes need more), must keep the
  question's numbers and names (anchor guard), and both questions must fit the encoder's
  window: a vector of a long question's head and tail says nothing about its middle, so
  long questions are matched exactly or not at all;
- before the encoder runs, a static gate: the question's static vector (WordLlama, a
  tokenizer pass and a mean, ~0.1 ms) must have a stored neighbour at STATIC_FLOOR or
  above, else the lookup is a miss without the MiniLM pass (`cache.static_gate`);
- entries expire after ttl_s; past max_entries the least recently used go first.
Any storage fault turns the cache off with one warning; requests are served regardless.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.cache import keys
from tierwise.cache.budget import Thresholds, content_words, encoder_curves
from tierwise.cache.embedders import STATIC_FLOOR, Embedder, StaticEmbedder
from tierwise.cache.index import VectorIndex
from tierwise.cache.store import DiskStore, Entry, RedisStore, Store, StoreError
from tierwise.config import CacheConfig
from tierwise.request import ChatRequest
from tierwise.static_encoder import StaticEncoderUnavailable, shared_static_encoder

# request.memo key of the question's vector; benchmarks and tests put a known vector there.
VECTOR_MEMO = "cache_vector"

log = logging.getLogger(__name__)
EXPIRY_SWEEP_EVERY = 1024  # puts between sweeps for expired entries


def default_directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tierwise" / "answers"


@dataclass(frozen=True)
class CacheHit:
    entry_id: str
    response: dict[str, Any]
    tier: str
    similarity: float  # 1.0 for an exact hit
    exact: bool


class SemanticCache:
    """Tenant-scoped, tier-stamped answer cache over a shared store and a local vector index."""

    def __init__(
        self,
        config: CacheConfig,
        encoder: Embedder | None,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        static: StaticEmbedder | None = None,
    ) -> None:
        self.config = config
        self.encoder = encoder
        self.static = static or self._open_static(config, encoder)
        self.clock = clock
        self.thresholds = (
            Thresholds.fixed(config.similarity)
            if config.similarity is not None
            else Thresholds.for_budget(
                config.max_false_hit_rate, encoder_curves(getattr(encoder, "curves", None))
            )
        )
        self.disabled_reason = ""
        self._lock = threading.RLock()
        self._indexes: dict[str, VectorIndex] = {}
        self._gates: dict[str, VectorIndex] = {}  # static vectors of whole questions
        # id -> (partition, expires, last used, content words of the question)
        self._meta: dict[str, tuple[str, float, float, int]] = {}
        self._seen_seq = 0
        self._puts = 0
        self.store: Store | None = None
        try:
            self.store = store or self._open_store()
        except StoreError as exc:
            self._disable(f"cannot open the {config.backend} store: {exc}")
            return
        self._sync()

    @staticmethod
    def _open_static(config: CacheConfig, encoder: Embedder | None) -> StaticEmbedder | None:
        if not config.static_gate or encoder is None:
            return None
        try:
            return shared_static_encoder()
        except StaticEncoderUnavailable as exc:
            log.warning("semantic cache without its static gate (%s): every lookup embeds", exc)
            return None

    def _open_store(self) -> Store:
        if self.config.backend == "redis":
            return RedisStore(str(self.config.redis_url))
        directory = Path(self.config.directory) if self.config.directory else default_directory()
        return DiskStore(directory)

    @property
    def enabled(self) -> bool:
        return not self.disabled_reason and self.store is not None

    def _disable(self, reason: str) -> None:
        if not self.disabled_reason:
            log.warning("semantic cache turned off: %s; requests are served without it", reason)
        self.disabled_reason = reason

    def skip_reason(self, request: ChatRequest, opt_out: bool = False) -> str | None:
        """Why this request must neither be served from nor stored in the cache (None: ok)."""
        if not self.enabled:
            return f"cache off: {self.disabled_reason}"
        if opt_out:
            return "the client opted out"
        if request.has_tools:
            return "the request uses tools"
        temperature = request.temperature
        if temperature is not None and temperature > self.config.max_temperature:
            return f"temperature {temperature:g} > {self.config.max_temperature:g}"
        last = request.last_user
        if last is None or not last.text.strip():
            return "no text question to match"
        if last.has_media:
            return "the question carries images, audio or files"
        if keys.scope_part(request, self.config.scope) is None:
            return "no user, team or key to scope the cache to (or set cache.scope: global)"
        return None

    def partition(self, request: ChatRequest) -> str:
        scope = keys.scope_part(request, self.config.scope)
        return f"{scope}|{keys.context_part(request)}"

    def vector(self, request: ChatRequest) -> np.ndarray | None:
        """The embedding of the whole question, or None when it is too long to match by meaning.

        Computed once per request (kept in request.memo), so a lookup and the store after a
        miss share one encoder pass.
        """
        if not self._fits(request.last_user_text):
            return None
        return self._embedding(request)

    def _fits(self, question: str) -> bool:
        """Whether the encoder sees the whole question (a tokenizer pass, no model run)."""
        if self.encoder is None:
            return False
        window = min(self.config.window_tokens, self.encoder.max_tokens)
        return self.encoder.token_count(question, window) <= window

    def _embedding(self, request: ChatRequest) -> np.ndarray:
        assert self.encoder is not None
        if VECTOR_MEMO not in request.memo:
            request.memo[VECTOR_MEMO] = self.encoder.embed([request.last_user_text])[0]
        return np.asarray(request.memo[VECTOR_MEMO], dtype=np.float32)

    def _partial_vector(self, request: ChatRequest) -> np.ndarray:
        """A long question (or any, without an encoder) is stored for exact matches only; its
        vector just fills the index slot."""
        if self.encoder is None:
            return np.zeros(1, dtype=np.float32)
        return np.asarray(self.encoder.embed([request.last_user_text])[0], dtype=np.float32)

    def lookup(
        self, request: ChatRequest, tier_order: int, opt_out: bool = False
    ) -> CacheHit | None:
        """An answer for `request` from a tier at least as strong as the decided one, or None."""
        if self.skip_reason(request, opt_out) is not None or self.store is None:
            return None
        partition = self.partition(request)
        question = request.last_user_text
        try:
            entry_id = self.store.exact(keys.exact_key(partition, question))
            if entry_id:
                hit = self._serve(entry_id, tier_order, 1.0, exact=True)
                if hit:
                    return hit
            if not self._fits(question):
                return None  # too long to match by meaning: exact matches only
            self._sync()
            if not self._passes_gate(partition, question):
                return None  # no stored question near enough to be worth the encoder pass
            query = self._embedding(request)
            with self._lock:
                index = self._indexes.get(partition)
                candidates = index.search(query, k=4) if index else []
            words = content_words(question)
            for similarity, candidate in candidates:
                if similarity < self.thresholds.lowest:
                    break
                if similarity < self._needed(words, candidate):
                    continue  # known from memory: no store read for a candidate too far
                hit = self._serve(candidate, tier_order, similarity, exact=False, asked=question)
                if hit:
                    return hit
        except StoreError as exc:
            self._disable(str(exc))
        return None

    def _passes_gate(self, partition: str, question: str) -> bool:
        """Whether a stored question's static vector reaches STATIC_FLOOR (True: no gate)."""
        if self.static is None:
            return True
        with self._lock:
            if partition not in self._gates:
                return False
        vector = self.static.encode([question])[0]
        with self._lock:
            gate = self._gates.get(partition)
            best = gate.search(vector, k=1) if gate is not None else []
        return bool(best) and best[0][0] >= STATIC_FLOOR

    def _serve(
        self,
        entry_id: str,
        tier_order: int,
        similarity: float,
        exact: bool,
        asked: str = "",
    ) -> CacheHit | None:
        assert self.store is not None
        entry = self.store.get(entry_id)
        now = self.clock()
        if entry is None or entry.expires <= now:
            self._forget(entry_id)
            return None
        if entry.tier_order < tier_order:
            return None  # produced by a cheaper tier than this request needs
        if not exact and not (entry.whole and self._same_anchors(asked, entry.question)):
            return None
        with self._lock:
            if entry_id in self._meta:
                partition, expires, _, words = self._meta[entry_id]
                self._meta[entry_id] = (partition, expires, now, words)
        return CacheHit(entry.id, entry.response, entry.tier, similarity, exact)

    def _needed(self, asked_words: int, entry_id: str) -> float:
        """The cosine a candidate needs for its pair's length band (above 1 if unknown)."""
        with self._lock:
            meta = self._meta.get(entry_id)
        return 2.0 if meta is None else self.thresholds.needed(asked_words, meta[3])

    def _same_anchors(self, asked: str, stored: str) -> bool:
        return not self.config.anchor_guard or keys.anchors_agree(asked, stored)

    def put(
        self,
        request: ChatRequest,
        response: Mapping[str, Any],
        tier: str,
        tier_order: int,
        opt_out: bool = False,
    ) -> bool:
        """Store an answer; False when the request may not be cached or the cache is off."""
        if self.skip_reason(request, opt_out) is not None or self.store is None:
            return False
        whole = self.vector(request)
        vector = whole if whole is not None else self._partial_vector(request)
        now = self.clock()
        partition = self.partition(request)
        entry = Entry(
            id=uuid.uuid4().hex,
            partition=partition,
            exact_key=keys.exact_key(partition, request.last_user_text),
            question=request.last_user_text,
            vector=vector,
            response=dict(response),
            tier=tier,
            tier_order=tier_order,
            created=now,
            expires=now + self.config.ttl_s,
            whole=whole is not None,
        )
        try:
            self.store.add(entry, self.config.ttl_s)
            self._sync()
            self._evict()
        except StoreError as exc:
            self._disable(str(exc))
            return False
        return True

    def _sync(self) -> None:
        """Pull entries other processes (or this one) added since the last look."""
        if self.store is None:
            return
        try:
            latest = self.store.latest()
            if latest <= self._seen_seq:
                return
            for seq, entry in self.store.since(self._seen_seq):
                self._remember(entry)
                self._seen_seq = max(self._seen_seq, seq)
            self._seen_seq = max(self._seen_seq, latest)
        except StoreError as exc:
            self._disable(str(exc))

    def _remember(self, entry: Entry) -> None:
        with self._lock:
            index = self._indexes.get(entry.partition)
            if index is None:
                index = self._indexes[entry.partition] = VectorIndex(len(entry.vector))
            index.add(entry.id, entry.vector)
            if self.static is not None and entry.whole:
                static = self.static.encode([entry.question])[0]
                gate = self._gates.get(entry.partition)
                if gate is None:
                    gate = self._gates[entry.partition] = VectorIndex(len(static))
                gate.add(entry.id, static)
            words = content_words(entry.question)
            self._meta[entry.id] = (entry.partition, entry.expires, entry.created, words)

    def _forget(self, entry_id: str) -> None:
        with self._lock:
            meta = self._meta.pop(entry_id, None)
            if meta is not None:
                for indexes in (self._indexes, self._gates):
                    if meta[0] in indexes:
                        indexes[meta[0]].remove(entry_id)

    def _evict(self) -> None:
        """Sweep expired entries now and then; past max_entries drop the least recently used.

        Both scans are O(n), so they run every EXPIRY_SWEEP_EVERY puts or when over the cap,
        and an over-cap sweep frees 1% of the cap at once rather than one entry per put.
        """
        assert self.store is not None
        self._puts += 1
        cap = self.config.max_entries
        with self._lock:
            if len(self._meta) <= cap and self._puts % EXPIRY_SWEEP_EVERY:
                return
            now = self.clock()
            victims = [i for i, (_, expires, *_) in self._meta.items() if expires <= now]
            over = len(self._meta) - len(victims) - cap
            if over > 0:
                # A stable sort on the last use alone: entries used at the same instant go
                # oldest-inserted first (ordering ties by their random ids could drop the newest).
                live = sorted(
                    (i for i, (_, expires, *_) in self._meta.items() if expires > now),
                    key=lambda i: self._meta[i][2],
                )
                victims += live[: max(over, cap // 100)]
        for entry_id in victims:
            self.store.delete(entry_id)
            self._forget(entry_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._meta)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

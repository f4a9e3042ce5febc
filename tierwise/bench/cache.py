"""`tierwise bench cache`: lookup latency (embedding included) at 1k / 10k / 100k entries,
insert rate, and memory per 100k entries, for the embedded (diskcache) backend.

Every entry is a real `SemanticCache.put` into one global partition (the worst case: one
index holds everything). Entry vectors come from real prompts embedded once, each reused
with small random perturbations so 100k distinct vectors exist without 100k encoder runs;
lookups embed a real question each time, as a request does.

Each question is looked up twice, interleaved so machine load hits both alike: through the
cache as configured (static gate on: the MiniLM pass only when a stored question is near
by the static vectors) and through a second cache over the same store with the gate off
(the path before the gate: every lookup embeds).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.bench.stats import summary_ms
from tierwise.cache.embedders import Embedder
from tierwise.cache.semantic import VECTOR_MEMO, SemanticCache
from tierwise.config import CacheConfig
from tierwise.progress import Progress
from tierwise.request import ChatRequest

SIZES = (1_000, 10_000, 100_000)
LOOKUPS = 300
# Question lengths (tokens) reported apart: a chat question, one past the learned scorer's
# window (the cache embeds it again), one past the cache's window (matched exactly only).
LENGTH_BANDS = ((0, 40), (41, 128), (129, 10**9))
SCOPE = "global"


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _request(text: str) -> ChatRequest:
    return ChatRequest.from_openai(
        {"model": "auto", "messages": [{"role": "user", "content": text}]}
    )


def run(encoder: Embedder, prompts: Sequence[str], sizes: Sequence[int] = SIZES) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    base_texts = list(prompts)[:2000]
    with Progress(len(base_texts), "embedding seeds") as progress:
        seeds = []
        for start in range(0, len(base_texts), 64):
            seeds.append(encoder.embed(base_texts[start : start + 64]))
            progress.advance(len(base_texts[start : start + 64]))
    seed_vectors = np.concatenate(seeds)
    directory = Path(tempfile.mkdtemp(prefix="tierwise-bench-cache-"))
    config = CacheConfig(enabled=True, directory=str(directory), scope=SCOPE, max_entries=10**7)
    cache = SemanticCache(config, encoder)
    plain = SemanticCache(config.model_copy(update={"static_gate": False}), encoder)
    results: dict[str, Any] = {"sizes": {}, "directory": str(directory)}
    inserted, insert_seconds, fill_mb = 0, 0.0, 0.0
    questions = random.Random(1).sample(list(prompts), min(LOOKUPS, len(prompts)))
    lengths = [encoder.token_count(q, 10**9) for q in questions]
    for size in sizes:
        before = _rss_mb()
        with Progress(size - inserted, f"filling to {size:,}") as progress:
            while inserted < size:
                i = inserted % len(seed_vectors)
                noise = np.asarray(rng.normal(scale=0.02, size=seed_vectors.shape[1]), np.float32)
                vector = seed_vectors[i] + noise
                request = _request(f"{base_texts[i]} #{inserted}")
                request.memo[VECTOR_MEMO] = vector / np.linalg.norm(vector)
                started = time.perf_counter()
                cache.put(request, {"content": "answer"}, tier="local", tier_order=0)
                insert_seconds += time.perf_counter() - started
                inserted += 1
                progress.advance()
        fill_mb += _rss_mb() - before  # lookups (the encoder's arena) are not counted
        for each in (cache, plain):  # untimed: pulls the entries just added into each index
            each.lookup(_request(questions[0]), tier_order=0)
        samples, ungated, search_only, embedded = [], [], [], []
        for text in questions:
            request = _request(text)
            started = time.perf_counter()
            cache.lookup(request, tier_order=0)
            samples.append(time.perf_counter() - started)
            embedded.append(VECTOR_MEMO in request.memo)
            request = _request(text)
            started = time.perf_counter()
            plain.lookup(request, tier_order=0)
            ungated.append(time.perf_counter() - started)
            started = time.perf_counter()  # again, the vector now in request.memo
            plain.lookup(request, tier_order=0)
            search_only.append(time.perf_counter() - started)
        row: dict[str, Any] = dict(summary_ms(samples))
        results["sizes"][str(size)] = row
        row["by_length"] = _by_length(samples, lengths)
        row["gate_off"] = {**summary_ms(ungated), "by_length": _by_length(ungated, lengths)}
        row["embedded_share"] = round(sum(embedded) / len(embedded), 3)
        row["gated_miss"] = summary_ms([s for s, e in zip(samples, embedded, strict=True) if not e])
        row["embedded"] = summary_ms([s for s, e in zip(samples, embedded, strict=True) if e])
        row["search_only"] = summary_ms(search_only)
        row["rss_mb"] = round(_rss_mb(), 1)
    results["question_tokens_p50"] = float(np.median(lengths))
    results["insert_per_s"] = round(inserted / insert_seconds, 1)
    results["entries"] = len(cache)
    largest = max(sizes)
    results["memory_mb_per_100k"] = round(fill_mb * 100_000 / largest, 1)
    results["disk_mb"] = round(sum(p.stat().st_size for p in directory.rglob("*")) / 2**20, 1)
    cache.close()
    plain.close()
    return results


def _by_length(samples: Sequence[float], lengths: Sequence[int]) -> dict[str, dict[str, float]]:
    return {
        f"{low}-{high}" if high < 10**9 else f">{low - 1}": summary_ms(
            [s for s, n in zip(samples, lengths, strict=True) if low <= n <= high]
        )
        for low, high in LENGTH_BANDS
    }


def format_results(r: dict[str, Any], window: int) -> str:
    lines = [
        f"semantic cache, diskcache backend, one partition; lookups embed the question "
        f"(window {window} tokens; median question {r['question_tokens_p50']:.0f} tokens) "
        f"and search the index"
    ]
    for size, s in r["sizes"].items():
        off = s["gate_off"]
        lines.append(
            f"  {int(size):>7,} entries: lookup p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms"
            f" (static gate off, same run: p50 {off['p50_ms']:.2f} ms  p99 {off['p99_ms']:.2f} ms);"
            f" vector already computed: p50 "
            f"{s['search_only']['p50_ms']:.2f} ms  p99 {s['search_only']['p99_ms']:.2f} ms"
        )
        lines.append(
            f"           {s['embedded_share']:.0%} of lookups passed the gate and embedded "
            f"(p50 {s['embedded']['p50_ms']:.2f} ms); the rest missed at the gate "
            f"(p50 {s['gated_miss']['p50_ms']:.2f} ms  p99 {s['gated_miss']['p99_ms']:.2f} ms)"
        )
        for label, by_length in (("gate on ", s["by_length"]), ("gate off", off["by_length"])):
            bands = "; ".join(
                f"{band} tokens (n={b['n']}) p50 {b['p50_ms']:.2f} p99 {b['p99_ms']:.2f} ms"
                for band, b in by_length.items()
                if b["n"]
            )
            lines.append(f"           {label} by question length: {bands}")
    lines.append(f"  insert rate {r['insert_per_s']:,.0f} entries/s (embedding already computed)")
    lines.append(
        f"  memory {r['memory_mb_per_100k']:.0f} MB per 100k entries in RAM; "
        f"{r['disk_mb']:.0f} MB on disk for {r['entries']:,} entries"
    )
    return "\n".join(lines)

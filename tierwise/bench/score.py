"""`tierwise bench score`: latency of the learned path (static embedding + head) and its RSS.

Prompts are real ones from the data directory: ~64-token prompts as they are, ~512-token
prompts made by joining several. Open-chat prompts (writing, roleplay, extraction, chat) take
the open-chat head on MiniLM, a slower path, so ~64-token prompts of those kinds are timed
apart as well. Every timing scores a fresh request (no memo), on one
thread, after a warm-up; the heuristic is timed on the same prompts for comparison.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tierwise.bench.stats import summary_ms
from tierwise.request import ChatRequest
from tierwise.scoring.base import Scorer
from tierwise.scoring.learned import open_chat
from tierwise.tokens import default_counter

WARMUP = 20
SIZES = (64, 512)


def rss_mb() -> float:
    """Resident memory of this process now (Linux /proc; peak RSS elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prompts_of_size(texts: Sequence[str], tokens: int, count: int, seed: int = 0) -> list[str]:
    """Real prompts within 15% of `tokens` tokens, else real prompts joined up to that size."""
    counter = default_counter()
    sized = [t for t in texts if abs(counter.count(t) - tokens) <= 0.15 * tokens]
    rng = random.Random(seed)
    if len(sized) >= count:
        return rng.sample(sized, count)
    out = list(sized)
    while len(out) < count:
        parts, n = [], 0
        while n < tokens:
            part = rng.choice(texts)
            parts.append(part)
            n += counter.count(part)
        out.append("\n\n".join(parts))
    return out


def time_scorer(scorer: Scorer, prompts: Sequence[str], repeat: int) -> list[float]:
    def once(text: str) -> float:
        request = ChatRequest.from_text(text)
        started = time.perf_counter()
        scorer.score(request)
        return time.perf_counter() - started

    for text in prompts[:WARMUP]:
        once(text)
    return [once(text) for _ in range(repeat) for text in prompts]


def run(
    load_learned: Callable[[], Scorer], heuristic: Scorer, texts: Sequence[str], repeat: int
) -> dict[str, Any]:
    """RSS before and after loading the learned scorer, then p50/p99 per prompt size."""
    before = rss_mb()
    started = time.perf_counter()
    learned = load_learned()
    load_s = time.perf_counter() - started
    after = rss_mb()
    results: dict[str, Any] = {
        "rss_mb_before_load": round(before, 1),
        "rss_mb_after_load": round(after, 1),
        "load_seconds": round(load_s, 3),
        "sizes": {},
    }
    counter = default_counter()

    def timed(prompts: list[str]) -> dict[str, Any]:
        tokens = sorted(counter.count(p) for p in prompts)
        return {
            "prompts": len(prompts),
            "median_tokens": tokens[len(tokens) // 2],
            "learned": summary_ms(time_scorer(learned, prompts, repeat)),
            "heuristic": summary_ms(time_scorer(heuristic, prompts, repeat)),
        }

    for size in SIZES:
        results["sizes"][str(size)] = timed(prompts_of_size(texts, size, 100, seed=size))
    open_texts = [t for t in texts if open_chat(t)]
    if open_texts:
        prompts = prompts_of_size(open_texts, SIZES[0], 100, seed=1)
        results["sizes"][f"{SIZES[0]} open-chat"] = timed(prompts)
    results["rss_mb_after_run"] = round(rss_mb(), 1)
    return results


def format_results(results: dict[str, Any], encoder: str) -> str:
    lines = [
        f"learned scorer ({encoder}), one thread, this machine",
        f"  RSS: {results['rss_mb_before_load']:.0f} MB before loading, "
        f"{results['rss_mb_after_load']:.0f} MB loaded ({results['load_seconds']:.2f} s), "
        f"{results['rss_mb_after_run']:.0f} MB after the run",
    ]
    for size, r in results["sizes"].items():
        tokens, _, kind = size.partition(" ")
        label = f"~{tokens:>3}-token {kind + ' ' if kind else ''}prompts"
        for name in ("learned", "heuristic"):
            s = r[name]
            lines.append(
                f"  {label} (median {r['median_tokens']}), {name:<9} "
                f"p50 {s['p50_ms']:.3f} ms   p99 {s['p99_ms']:.3f} ms"
            )
    return "\n".join(lines)

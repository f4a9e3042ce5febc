"""`tierwise bench decide`: heuristic decision latency, with LiteLLM's on the same prompts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tierwise.bench.stats import summary_ms
from tierwise.config import TierwiseConfig
from tierwise.progress import Progress
from tierwise.request import ChatRequest
from tierwise.router import TierRouter
from tierwise.scoring.heuristic import HeuristicScorer
from tierwise.training.baselines import litellm_or_none
from tierwise.training.data import iter_jsonl

WARMUP = 50


def load_prompts(paths: Sequence[Path]) -> list[str]:
    prompts = []
    for path in paths:
        for _, row in iter_jsonl(path):
            text = row.get("text")
            if isinstance(text, str):
                prompts.append(text)
    return prompts


def _time(fn: Any, prompts: Sequence[str], repeat: int, label: str) -> list[float]:
    for text in prompts[:WARMUP]:
        fn(text)
    samples = []
    with Progress(len(prompts) * repeat, label) as progress:
        for _ in range(repeat):
            for text in prompts:
                started = time.perf_counter()
                fn(text)
                samples.append(time.perf_counter() - started)
                progress.advance()
    return samples


def run(config: TierwiseConfig, prompts: Sequence[str], repeat: int = 3) -> dict[str, Any]:
    """Time the whole decide() (request view, tokens, heuristic score, rule chain)."""
    router = TierRouter(config, scorer=HeuristicScorer(bands=config.scoring.bands))
    results: dict[str, Any] = {
        "prompts": len(prompts),
        "tierwise_decide_heuristic": summary_ms(
            _time(lambda t: router.decide(ChatRequest.from_text(t)), prompts, repeat, "tierwise")
        ),
    }
    lite = litellm_or_none()
    if lite is not None:
        results["litellm_complexity_router_classify"] = summary_ms(
            _time(lite.classify, prompts, repeat, "litellm ")
        )
    return results


def format_results(results: dict[str, Any]) -> str:
    lines = [f"decision latency over {results['prompts']} prompts (one thread, this machine)"]
    for key, label in (
        ("tierwise_decide_heuristic", "tierwise decide (heuristic path)"),
        ("litellm_complexity_router_classify", "LiteLLM complexity_router classify"),
    ):
        if key in results:
            s = results[key]
            lines.append(f"  {label:<38} p50 {s['p50_ms']:.4f} ms   p99 {s['p99_ms']:.4f} ms")
    if "litellm_complexity_router_classify" not in results:
        lines.append("  (litellm not installed: no LiteLLM comparison)")
    return "\n".join(lines)

"""`tierwise bench proxy`: what `auto` + tierwise adds to a LiteLLM proxy, measured in one run.

Two real proxies on loopback, one stand-in upstream behind both, the same request mix:
  (a) a plain model group, no tierwise callback;
  (b) the `auto` group (three tiers, all on that same upstream) with the tierwise callback,
      scoring with whatever `scoring:` the given tierwise config uses.
Sequential requests alternate between (a) and (b) so drift on a shared machine hits both
equally; throughput is a bounded concurrent burst against each in turn.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from tierwise.bench.stats import summary_ms
from tierwise.config import load_config

KEY = "sk-tierwise-bench-0123456789abcdef"
WARMUP = 20
BURST_ROUNDS = 3


def _prompts() -> list[str]:
    text = resources.files("tierwise.defaults").joinpath("examples.jsonl").read_text()
    return [json.loads(line)["text"] for line in text.splitlines() if line.strip()]


def _bodies(model: str, prompts: list[str]) -> list[dict[str, Any]]:
    """Every prompt twice: once plain, once streamed (with usage, as Continue.dev sends)."""
    bodies = []
    for text in prompts:
        for stream in (False, True):
            body: dict[str, Any] = {
                "model": model,
                "messages": [{"role": "user", "content": text}],
                "stream": stream,
            }
            if stream:
                body["stream_options"] = {"include_usage": True}
            bodies.append(body)
    return bodies


def _configs(
    upstream: str, scoring: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    params = {"model": "openai/bench-model", "api_base": f"{upstream}/v1", "api_key": "unused"}
    # Both sides declare the stand-in free, as a user would for a local model: without rates
    # LiteLLM runs its zero-cost diagnostic on every response of a deployment with model_info,
    # a cost of LiteLLM's that has nothing to do with routing.
    free = {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0}
    general = {"master_key": KEY}
    plain = {
        "model_list": [{"model_name": "plain", "litellm_params": params, "model_info": free}],
        "general_settings": general,
    }
    routed: dict[str, Any] = {
        "model_list": [
            {
                "model_name": "auto",
                "litellm_params": params,
                "model_info": {**free, "tierwise_tier": tier},
            }
            for tier in ("local", "hpc", "cloud")
        ],
        "litellm_settings": {"callbacks": ["litellm_plugin.tierwise"]},
        "general_settings": general,
    }
    if scoring is not None:
        routed["tierwise"] = {"scoring": scoring}
    return plain, routed


def _send(client: httpx.Client, url: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    response = client.post(f"{url}/v1/chat/completions", json=body)
    response.read()
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
    return time.perf_counter() - started


async def _burst(url: str, bodies: list[dict[str, Any]], count: int, concurrency: int) -> float:
    """Requests per second for `count` requests with `concurrency` in flight."""
    queue = [bodies[i % len(bodies)] for i in range(count)]
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=concurrency)

    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                response = await client.post(f"{url}/v1/chat/completions", json=body)
                await response.aread()
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered {response.status_code}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


def _throughput(
    sides: dict[str, tuple[str, list[dict[str, Any]]]], burst: int, concurrency: int
) -> dict[str, float]:
    """Requests per second per side over BURST_ROUNDS alternating bursts (drift hits both)."""
    seconds = dict.fromkeys(sides, 0.0)
    for _ in range(BURST_ROUNDS):
        for side, (url, bodies) in sides.items():
            seconds[side] += burst / asyncio.run(_burst(url, bodies, burst, concurrency))
    return {side: BURST_ROUNDS * burst / spent for side, spent in seconds.items()}


def run(
    config_path: str | None, requests: int = 200, concurrency: int = 8, burst: int = 400
) -> dict[str, Any]:
    from litellm_plugin.launch import start_proxy, start_standin

    config = load_config(config_path)
    scoring = config.scoring.model_dump(mode="json") if config_path else None
    workdir = Path(tempfile.mkdtemp(prefix="tierwise-bench-"))
    children = []
    try:
        upstream = start_standin("bench", workdir, label="bench")
        children.append(upstream)
        plain_config, routed_config = _configs(upstream.url, scoring)
        plain = start_proxy(plain_config, workdir, name="plain")
        children.append(plain)
        routed = start_proxy(routed_config, workdir, name="auto")
        children.append(routed)
        sides = {
            "plain": (plain.url, _bodies("plain", _prompts())),
            "auto": (routed.url, _bodies("auto", _prompts())),
        }
        samples: dict[str, list[float]] = {"plain": [], "auto": []}
        with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
            for i in range(WARMUP + requests):
                for side, (url, bodies) in sides.items():
                    elapsed = _send(client, url, bodies[i % len(bodies)])
                    if i >= WARMUP:
                        samples[side].append(elapsed)
        throughput = _throughput(sides, burst, concurrency)
        scorer = _scorer_in_log(routed.log)
    finally:
        for child in reversed(children):
            child.stop()
    plain_s, auto_s = summary_ms(samples["plain"]), summary_ms(samples["auto"])
    return {
        "requests_per_side": requests,
        "concurrency": concurrency,
        "burst": burst,
        "burst_rounds": BURST_ROUNDS,
        "cpus": os.cpu_count(),
        "scoring_method": config.scoring.method,
        "scorer_seen": scorer,
        "plain": plain_s,
        "auto": auto_s,
        "added_p50_ms": round(auto_s["p50_ms"] - plain_s["p50_ms"], 3),
        "added_p99_ms": round(auto_s["p99_ms"] - plain_s["p99_ms"], 3),
        "throughput_rps": {k: round(v, 1) for k, v in throughput.items()},
        "throughput_ratio": round(throughput["auto"] / throughput["plain"], 3),
        "logs": str(workdir),
    }


def _scorer_in_log(log: Path) -> str:
    """The scorer the proxy's plugin reported at start (so the figure names what it measured)."""
    for line in log.read_text(errors="replace").splitlines():
        if "tierwise: routing model group" in line and "scorer" in line:
            return line.rsplit("scorer ", 1)[-1].strip().rstrip(")")
    return "unknown"


def format_results(r: dict[str, Any]) -> str:
    lines = [
        f"LiteLLM proxy, plain group vs `auto` + tierwise (scorer: {r['scorer_seen']}); "
        f"{r['requests_per_side']} sequential requests each, alternating; {r['cpus']} CPUs",
        f"  plain   p50 {r['plain']['p50_ms']:.2f} ms   p99 {r['plain']['p99_ms']:.2f} ms",
        f"  auto    p50 {r['auto']['p50_ms']:.2f} ms   p99 {r['auto']['p99_ms']:.2f} ms",
        f"  added   p50 {r['added_p50_ms']:+.2f} ms   p99 {r['added_p99_ms']:+.2f} ms",
        f"  throughput ({BURST_ROUNDS} alternating bursts of {r['burst']} requests, "
        f"{r['concurrency']} in flight): plain "
        f"{r['throughput_rps']['plain']:.1f} req/s, auto {r['throughput_rps']['auto']:.1f} req/s, "
        f"ratio {r['throughput_ratio']:.3f}",
        f"  logs: {r['logs']}",
    ]
    return "\n".join(lines)

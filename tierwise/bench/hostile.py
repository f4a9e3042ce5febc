"""`tierwise bench hostile`: what one hostile caller does to another caller's `auto` traffic.

Real LiteLLM proxies on loopback over three stand-in tiers: a plain model group (no tierwise)
for the baseline, and `auto` with tierwise twice, with shared signals in a real redis-server
and without. Against each `auto` proxy, hostile requests (malformed content parts, non-chat
endpoints, control characters in `user`) alternate with normal easy questions from another
user; each normal question is also sent to the plain group, so the added latency is measured
in the same run, request by request, and drift on a shared machine hits both sides.

Printed per `auto` proxy: the share of normal easy questions served by `local` (target 100%),
responses dropped (no HTTP response at all; target 0), the hostile requests' statuses, and
the p50 the plugin adds over the plain group (target <= 3 ms).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tierwise.bench.stats import summary_ms

KEY = "sk-tierwise-bench-0123456789abcdef"
WARMUP = 10
# Easy questions the heuristic scorer sends to local on their own (checked with `tierwise
# route`), so any that leaves local was moved by the hostile traffic.
NORMAL = ("What is 2+2?", "What is the capital of France?", "How many days are in a week?")
FIM = {"prompt": "def add(a, b):\n    ", "suffix": "\n", "max_tokens": 16}


def hostile_requests() -> list[tuple[str, dict[str, Any]]]:
    """(path, body) pairs a careless or hostile client sends to `auto`."""

    def chat(content: Any, **extra: Any) -> tuple[str, dict[str, Any]]:
        body = {"model": "auto", "messages": [{"role": "user", "content": content}], **extra}
        return "/v1/chat/completions", body

    return [
        chat([{"type": "hologram"}]),
        chat([{"type": "image_url"}], stream=True),
        ("/v1/completions", {"model": "auto", **FIM}),
        ("/v1/embeddings", {"model": "auto", "input": "hello"}),
        chat("What is 2+2?", user="mallory\r\n" + " " * 300 + "\x00end"),
    ]


def _configs(urls: dict[str, str], redis_url: str | None) -> tuple[dict[str, Any], ...]:
    free = {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0}

    def params(tier: str) -> dict[str, Any]:
        return {"model": f"openai/{tier}", "api_base": f"{urls[tier]}/v1", "api_key": "unused"}

    general = {"master_key": KEY}
    plain = {
        "model_list": [
            {"model_name": "plain", "litellm_params": params("local"), "model_info": free}
        ],
        "general_settings": general,
    }
    routed: list[dict[str, Any]] = []
    for redis in (None, redis_url):
        section: dict[str, Any] = {"scoring": {"method": "heuristic"}}
        if redis:
            section["redis_url"] = redis
        routed.append(
            {
                "model_list": [
                    {
                        "model_name": "auto",
                        "litellm_params": params(tier),
                        "model_info": {**free, "tierwise_tier": tier},
                    }
                    for tier in ("local", "hpc", "cloud")
                ],
                "litellm_settings": {"callbacks": ["litellm_plugin.tierwise"]},
                "general_settings": general,
                "tierwise": section,
            }
        )
    return (plain, *routed)


def _send(client: httpx.Client, url: str, path: str, body: dict[str, Any]) -> httpx.Response | None:
    """The response, or None when the server closed the connection without one (dropped)."""
    try:
        response = client.post(f"{url}{path}", json=body)
        response.read()
        return response
    except httpx.TransportError:
        return None


def _timed(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    response = _send(client, url, "/v1/chat/completions", body)
    return time.perf_counter() - started, response


def _round(
    client: httpx.Client, auto: str, plain: str, hostile: int, normal: int
) -> dict[str, Any]:
    """`hostile` hostile requests interleaved with `normal` normal ones, against one proxy."""
    attacks = hostile_requests()
    statuses: Counter[str] = Counter()
    dropped = local = 0
    auto_s: list[float] = []
    plain_s: list[float] = []
    for i in range(WARMUP + max(hostile, normal)):
        if i >= WARMUP and i - WARMUP < hostile:
            path, body = attacks[(i - WARMUP) % len(attacks)]
            response = _send(client, auto, path, body)
            dropped += response is None
            statuses[str(response.status_code) if response is not None else "dropped"] += 1
        if i >= WARMUP + normal:
            continue
        text = NORMAL[i % len(NORMAL)]
        messages = [{"role": "user", "content": text}]
        ask = {"model": "auto", "messages": messages, "user": "alice", "stream": bool(i % 2)}
        spent, response = _timed(client, auto, ask)
        plain_spent, _ = _timed(client, plain, {**ask, "model": "plain"})
        if i < WARMUP:
            continue
        dropped += response is None
        ok = response is not None and response.status_code == 200
        local += ok and response.headers.get("x-tierwise-tier") == "local"
        auto_s.append(spent)
        plain_s.append(plain_spent)
    auto_p, plain_p = summary_ms(auto_s), summary_ms(plain_s)
    return {
        "normal_on_local": local / normal,
        "dropped": dropped,
        "hostile_statuses": dict(sorted(statuses.items())),
        "auto": auto_p,
        "plain": plain_p,
        "added_p50_ms": round(auto_p["p50_ms"] - plain_p["p50_ms"], 3),
    }


def run(hostile: int = 100, normal: int = 100) -> dict[str, Any]:
    from litellm_plugin.launch import LaunchError, start_proxy, start_redis, start_standin

    workdir = Path(tempfile.mkdtemp(prefix="tierwise-bench-hostile-"))
    children = []
    results: dict[str, Any] = {"hostile": hostile, "normal": normal, "cpus": os.cpu_count()}
    try:
        urls = {}
        for tier in ("local", "hpc", "cloud"):
            child = start_standin(tier, workdir)
            children.append(child)
            urls[tier] = child.url
        try:
            redis = start_redis(workdir)
            children.append(redis)
            redis_url: str | None = redis.url
        except LaunchError as exc:
            redis_url, results["redis_skipped"] = None, str(exc)
        plain_config, off_config, on_config = _configs(urls, redis_url)
        plain = start_proxy(plain_config, workdir, name="plain", timeout_s=300)
        children.append(plain)
        sides = (
            {"redis off": off_config, "redis on": on_config}
            if redis_url
            else {"redis off": off_config}
        )
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(headers=headers, timeout=60) as client:
            for label, config in sides.items():
                name = label.replace(" ", "-")
                proxy = start_proxy(config, workdir, name=f"auto-{name}", timeout_s=300)
                children.append(proxy)
                results[label] = _round(client, proxy.url, plain.url, hostile, normal)
                proxy.stop()
    finally:
        for child in reversed(children):
            child.stop()
    results["logs"] = str(workdir)
    return results


def format_results(r: dict[str, Any]) -> str:
    lines = [
        f"{r['hostile']} hostile requests interleaved with {r['normal']} normal easy questions "
        f"from another user, per `auto` proxy; {r['cpus']} CPUs"
    ]
    for label in ("redis off", "redis on"):
        side = r.get(label)
        if side is None:
            lines.append(f"  {label}: skipped ({r.get('redis_skipped', 'no redis')})")
            continue
        lines += [
            f"  {label}: normal easy on local {side['normal_on_local']:.0%} (target 100%), "
            f"dropped {side['dropped']} (target 0), hostile statuses {side['hostile_statuses']}",
            f"    p50 auto {side['auto']['p50_ms']:.2f} ms vs plain "
            f"{side['plain']['p50_ms']:.2f} ms: added {side['added_p50_ms']:+.2f} ms "
            "(target <= 3 ms)",
        ]
    lines.append(f"  logs: {r['logs']}")
    return "\n".join(lines)

"""`tierwise bench relay`: what the relay adds to time to first token, how many tokens per
second one relay process carries, and whether 200 concurrent streams arrive intact — on a
quiet machine and, with --loaded, while two busy-loop processes saturate its cores.

Everything runs on loopback in one run: a relay process, an OpenAI-compatible stand-in for
vLLM (tierwise.standin), the real worker and the real consumer.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tierwise.bench.stats import summary_ms
from tierwise.processes import free_port, stop, wait_http

REPO = Path(__file__).resolve().parents[2]
STREAM_TTFT_CONTEXT = (
    "STREAM (prior art) reports 0.57-0.65 s end-to-end TTFT through its relay on a real "
    "HPC deployment; this bench isolates what the relay hop itself adds."
)


@contextmanager
def _process(command: list[str], ready: str, env: dict[str, str]) -> Iterator[None]:
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_http(ready, process, 30)
            yield
        finally:
            stop(process)


# Each busy loop ends by itself after this long, should the bench die before stopping it.
BUSY_LIMIT_S = 900
BUSY_LOOPS = 2


@contextmanager
def _busy_cores(count: int) -> Iterator[None]:
    """`count` processes spinning on the CPU: the machine is saturated while this is open."""
    code = (
        f"import time\nend = time.monotonic() + {BUSY_LIMIT_S}\nwhile time.monotonic() < end: pass"
    )
    loops = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]
    try:
        yield
    finally:
        for loop in loops:
            stop(loop)


def run(
    ttft_runs: int = 50,
    throughput_tokens: int = 100_000,
    streams: int = 200,
    tokens: int = 500,
    runs: int = 1,
    loaded: bool = False,
) -> dict[str, Any]:
    secret = secrets.token_urlsafe(32)
    env = {"TIERWISE_RELAY_SECRET": secret}
    relay_port, stub_port = free_port(), free_port()
    relay_cmd = [sys.executable, "-m", "relay", "--port", str(relay_port)]
    stub_cmd = [sys.executable, "-m", "tierwise.standin", "--port", str(stub_port)]
    results: dict[str, Any] = {"load_at_start": _load_average()}
    with (
        _process(relay_cmd, f"http://127.0.0.1:{relay_port}/health", env),
        _process(stub_cmd, f"http://127.0.0.1:{stub_port}/health", env),
    ):
        base = f"ws://127.0.0.1:{relay_port}"
        upstream = f"http://127.0.0.1:{stub_port}/v1"
        results["ttft"] = _ttft(base, upstream, secret.encode(), ttft_runs)
        results["throughput"] = _load(base, secret, 1, throughput_tokens, "one")
        quiet = [_load(base, secret, streams, tokens, f"quiet{r}") for r in range(runs)]
        results["concurrent"] = quiet[0]
        results["concurrent_runs"] = quiet
        if loaded:
            with _busy_cores(BUSY_LOOPS):
                results["loaded_runs"] = [
                    _load(base, secret, streams, tokens, f"loaded{r}") for r in range(runs)
                ]
    results["load_at_end"] = _load_average()
    results["context"] = STREAM_TTFT_CONTEXT
    return results


def _load_average() -> dict[str, Any]:
    """The machine's 1-minute load and its cores: every figure here moves with them."""
    return {"load_1m": round(os.getloadavg()[0], 2), "cores": os.cpu_count()}


def _ttft(base: str, upstream: str, secret: bytes, runs: int) -> dict[str, Any]:
    """Alternate direct and relayed requests to the same upstream; time to first content."""
    from relay import protocol
    from relay.consumer import HpcStream, StreamTimeouts
    from relay.worker import Upstream, run_worker

    body = {"model": "m", "messages": [{"role": "user", "content": "one two three"}]}

    def direct() -> float:
        """The worker's own HTTP client, straight to the upstream: the same code minus relay."""
        started = time.perf_counter()
        client = Upstream(upstream)
        request = {**body, "stream": True, "stream_options": {"include_usage": True}}
        try:
            for chunk in client.chunks(request):
                if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or []):
                    return time.perf_counter() - started
        finally:
            client.conn.close()
        raise RuntimeError("the upstream sent no content")

    async def relayed(pool: ThreadPoolExecutor, index: int) -> tuple[float, str]:
        channel = f"bench-ttft-{index:05d}"
        job = {
            "upstream": {"url": upstream},
            "body": body,
            "relay": {
                "url": base + protocol.channel_path(channel, "produce"),
                "token": protocol.mint_token(secret, channel, "produce", 600),
            },
        }
        started = time.perf_counter()
        future = pool.submit(run_worker, job)
        token = protocol.mint_token(secret, channel, "consume", 600)
        stream = HpcStream(base, channel, token, future, StreamTimeouts(total_s=30))
        first, source = 0.0, ""
        async for event in stream.events():
            if not first and event["type"] == "token":
                first = time.perf_counter() - started
                source = "relay" if stream.source_counts["relay"] else "result"
        await asyncio.wrap_future(future)  # its teardown must not overlap the next request
        return first, source

    direct_s, relay_s, sources = [], [], {"relay": 0, "result": 0}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for index in range(runs + 3):
            d = direct()
            r, source = asyncio.run(relayed(pool, index))
            if index >= 3:  # warm-up
                direct_s.append(d)
                relay_s.append(r)
                sources[source] += 1
    direct_summary, relay_summary = summary_ms(direct_s), summary_ms(relay_s)
    return {
        "runs": runs,
        "direct": direct_summary,
        "via_relay": relay_summary,
        "added_p50_ms": round(relay_summary["p50_ms"] - direct_summary["p50_ms"], 3),
        "first_token_source": sources,
    }


def _load(base: str, secret: str, streams: int, tokens: int, label: str) -> dict[str, Any]:
    """`streams` producers in a separate process, consumers here; every token is checked."""
    from tierwise.bench.relay_load import consume

    channels = [f"bench-{label}-{i:05d}" for i in range(streams)]
    command = [sys.executable, "-m", "tierwise.bench.relay_load", base, str(tokens), *channels]

    async def consume_all() -> list[Any]:
        consumers = [consume(base, secret.encode(), c, tokens) for c in channels]
        return await asyncio.gather(*consumers)

    started = time.perf_counter()
    producer = subprocess.Popen(
        command, cwd=REPO, env={**os.environ, "TIERWISE_RELAY_SECRET": secret}
    )
    try:
        checked = asyncio.run(consume_all())
    finally:
        try:
            producer.wait(60)
        except subprocess.TimeoutExpired:
            stop(producer)
    elapsed = time.perf_counter() - started
    received = sum(c.tokens for c in checked)
    return {
        "streams": streams,
        "tokens_per_stream": tokens,
        "tokens_received": received,
        "lost": sum(c.lost for c in checked),
        "duplicated": sum(c.duplicated for c in checked),
        "misrouted": sum(c.misrouted for c in checked),
        "unfinished_streams": sum(not c.finished for c in checked),
        "errors": sorted({c.error for c in checked if c.error}),
        "seconds": round(elapsed, 3),
        "tokens_per_s": round(received / elapsed),
    }


def format_results(results: dict[str, Any]) -> str:
    ttft, one, many = results["ttft"], results["throughput"], results["concurrent"]
    lines = [
        f"time to first token, {ttft['runs']} runs each, same upstream, loopback:",
        f"  direct to upstream     p50 {ttft['direct']['p50_ms']:.2f} ms   "
        f"p99 {ttft['direct']['p99_ms']:.2f} ms",
        f"  worker -> relay -> us  p50 {ttft['via_relay']['p50_ms']:.2f} ms   "
        f"p99 {ttft['via_relay']['p99_ms']:.2f} ms",
        f"  added by the relay hop p50 {ttft['added_p50_ms']:.2f} ms (target <= 5 ms); first "
        f"token came via the relay in {ttft['first_token_source']['relay']} of {ttft['runs']} runs",
        f"one stream through one relay process: {one['tokens_per_s']:,} tokens/s "
        f"({one['tokens_received']:,} tokens in {one['seconds']:.2f} s; target >= 20,000/s)",
        f"{many['streams']} concurrent streams x {many['tokens_per_stream']} tokens:",
        *_load_lines("quiet ", results["concurrent_runs"]),
        *_load_lines(f"loaded ({BUSY_LOOPS} busy loops)", results.get("loaded_runs") or []),
        "(producer, relay and consumer processes share this machine's cores; load average "
        f"{_load_text(results)})",
        results["context"],
    ]
    return "\n".join(lines)


def _load_text(results: dict[str, Any]) -> str:
    start, end = results.get("load_at_start"), results.get("load_at_end")
    if not start or not end:
        return "not recorded"
    return f"{start['load_1m']} at the start, {end['load_1m']} at the end, {start['cores']} cores"


def _load_lines(mode: str, runs: list[dict[str, Any]]) -> list[str]:
    """One line per run of the concurrent check, and a total when there are several."""
    lines = [
        f"  {mode} run {i}: {r['tokens_per_s']:,} tokens/s in {r['seconds']:.1f} s; lost "
        f"{r['lost']}, duplicated {r['duplicated']}, misrouted {r['misrouted']}, unfinished "
        f"{r['unfinished_streams']}{' ' + str(r['errors']) if r['errors'] else ''}"
        for i, r in enumerate(runs, 1)
    ]
    if len(runs) > 1:
        total = {k: sum(r[k] for r in runs) for k in ("lost", "duplicated", "unfinished_streams")}
        lines.append(
            f"  {mode} all {len(runs)} runs: lost {total['lost']}, duplicated "
            f"{total['duplicated']}, unfinished {total['unfinished_streams']} of "
            f"{len(runs) * runs[0]['streams']} streams"
        )
    return lines

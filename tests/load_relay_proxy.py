"""Concurrent HPC streams through a real LiteLLM proxy: are all of them exact under load?

    .venv/bin/python -m tests.load_relay_proxy [STREAMS] [TOKENS] [LOCAL_WORKERS]

Starts the stand-in vLLM (20 ms per token), a relay and a LiteLLM proxy whose `hpc/`
deployment dispatches locally (one worker process per task, as an endpoint would), sends
STREAMS streaming requests at once and checks each answer word for word, while a probe
times the proxy's liveness endpoint. Prints exact/total, the failures by message, and the
relay's loss / cancel counters. Issue 17's run is `50 300 50` (about five minutes on a
2-core machine: fifty worker processes start at once). Not part of the test run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import yaml

from tests.servers import Service, free_port, start_service, start_stub
from tests.servers.relay import SECRET, start_relay, ws_url


def start_proxy(tmp: Path, relay: Service, upstream: str, workers: int) -> tuple[Service, str]:
    key = "sk-" + secrets.token_urlsafe(24)
    hpc = {"relay_url": ws_url(relay), "dispatch": "local", "local_workers": workers}
    config = {
        "model_list": [
            {
                "model_name": "hpc",
                "litellm_params": {"model": "hpc/stub-model", "api_base": upstream, "hpc": hpc},
            }
        ],
        "litellm_settings": {
            "custom_provider_map": [
                {"provider": "hpc", "custom_handler": "relay.provider.hpc_provider"}
            ]
        },
        "general_settings": {"master_key": key},
    }
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    litellm = str(Path(sys.executable).parent / "litellm")
    proxy = start_service(
        [litellm, "--config", str(tmp / "config.yaml"), "--port", str(port)],
        f"http://127.0.0.1:{port}/health/liveliness",
        tmp / "proxy.log",
        env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "TIERWISE_RELAY_SECRET": SECRET},
        timeout_s=300,
    )
    proxy.url = f"http://127.0.0.1:{port}"
    return proxy, key


async def one_stream(client: httpx.AsyncClient, url: str, key: str, words: str) -> str | None:
    """None when the answer is exact, else what went wrong."""
    text, error = "", None
    body = {"model": "hpc", "stream": True, "messages": [{"role": "user", "content": words}]}
    try:
        async with client.stream(
            "POST", url, json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    error = str(chunk["error"].get("message", chunk["error"]))[:160]
                for choice in chunk.get("choices") or []:
                    text += (choice.get("delta") or {}).get("content") or ""
            if response.status_code != 200:
                error = f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        error = repr(exc)[:160]
    if text == "[vllm] " + words:
        return None
    return error or "answer differs"


async def run(proxy: Service, key: str, streams: int, tokens: int) -> None:
    limits = httpx.Limits(max_connections=streams + 10)
    async with httpx.AsyncClient(timeout=900, limits=limits) as client:
        waits: list[float] = []

        async def probe() -> None:
            while True:
                started = time.monotonic()
                with contextlib.suppress(httpx.HTTPError):
                    await client.get(f"{proxy.url}/health/liveliness", timeout=300)
                waits.append(time.monotonic() - started)
                await asyncio.sleep(1)

        prober = asyncio.create_task(probe())
        started = time.monotonic()
        url = f"{proxy.url}/v1/chat/completions"
        outcomes = await asyncio.gather(
            *(
                one_stream(client, url, key, " ".join(f"s{i}w{j}" for j in range(tokens)))
                for i in range(streams)
            )
        )
        prober.cancel()
    exact = outcomes.count(None)
    print(
        f"{exact}/{streams} streams exact in {time.monotonic() - started:.0f} s; "
        f"proxy liveness probe max {max(waits, default=0):.1f} s"
    )
    for error, count in Counter(o for o in outcomes if o is not None).most_common():
        print(f"  {count} x {error}")


def main(argv: list[str]) -> int:
    streams, tokens, workers = (int(a) for a in (argv + ["50", "300", "50"][len(argv) :])[:3])
    tmp = Path(tempfile.mkdtemp(prefix="tierwise-load-"))
    stub = start_stub("vllm", tmp, ["stub-model"])
    stub.control(token_delay_ms=20)
    relay = start_relay(tmp)
    proxy: Service | None = None
    try:
        proxy, key = start_proxy(tmp, relay, f"{stub.url}/v1", workers)
        asyncio.run(run(proxy, key, streams, tokens))
        counters = [
            line
            for line in httpx.get(f"{relay.url}/metrics", timeout=10).text.splitlines()
            if line.startswith(("tierwise_relay_producer_lost", "tierwise_relay_cancels"))
        ]
        print("relay:", "; ".join(counters), f"(logs in {tmp})")
    finally:
        for service in (proxy, relay, stub):
            if service is not None:
                service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The plugin inside a real `litellm --config` proxy, with stand-in upstreams per tier."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import MASTER_KEY, Service, Stub, start_litellm, start_stub

EASY = "What is the capital of Australia?"
MEDIUM = "Explain how a hash table handles collisions."
HARD = (
    "Design a rate limiter for a distributed API gateway serving 50k requests per second; "
    "discuss consistency trade-offs, failure modes and how you would test it."
)
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}

pytestmark = pytest.mark.integration


def deployment(stub: Stub, tier: str | None, group: str = "auto", **info: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "model_name": group,
        "litellm_params": {
            "model": f"openai/{stub.name}-model",
            "api_base": f"{stub.url}/v1",
            "api_key": "unused",
        },
    }
    if tier is not None:
        entry["model_info"] = {"tierwise_tier": tier, **info}
    return entry


def proxy_config(stubs: dict[str, Stub], tierwise: dict[str, Any] | None = None) -> dict[str, Any]:
    model_list = [deployment(stubs[t], t) for t in ("local", "hpc", "cloud")]
    model_list.append(deployment(stubs["local"], None, group="plain"))
    config: dict[str, Any] = {
        "model_list": model_list,
        "litellm_settings": {
            "callbacks": ["litellm_plugin.tierwise", "tests.plugins.capture.capture"]
        },
    }
    # The heuristic scorer keeps these routing tests independent of the learned weights.
    config["tierwise"] = {"scoring": {"method": "heuristic"}, **(tierwise or {})}
    return config


def chat(
    proxy: Service, text: str | list[Any], model: str = "auto", stream: bool = False, **extra: Any
) -> httpx.Response:
    headers = extra.pop("headers", AUTH)
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
        **extra,
    }
    return httpx.post(f"{proxy.url}/v1/chat/completions", json=body, headers=headers, timeout=60)


def answer(response: httpx.Response) -> str:
    """The reply text, from a JSON body or an SSE stream."""
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        text = ""
        for line in response.text.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:]).get("choices", []):
                    text += choice.get("delta", {}).get("content") or ""
        return text
    return str(response.json()["choices"][0]["message"]["content"])


@pytest.fixture(scope="module")
def tiers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Stub]]:
    log_dir = tmp_path_factory.mktemp("stubs")
    stubs = {name: start_stub(name, log_dir) for name in ("local", "hpc", "cloud")}
    yield stubs
    for stub in stubs.values():
        stub.stop()


@pytest.fixture
def fresh_tiers(tiers: dict[str, Stub]) -> dict[str, Stub]:
    for stub in tiers.values():
        stub.control(ttft_ms=0, fail_status=0, kv_cache_usage=0.1, waiting=0)
        stub.reset()
    return tiers


@pytest.fixture
def proxy_factory(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def start(config: dict[str, Any], **env: str) -> Service:
        capture = tmp_path / "capture.jsonl"
        service = start_litellm(
            config, tmp_path, env={"TIERWISE_TEST_CAPTURE": str(capture), **env}
        )
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def captured(proxy: Service, count: int) -> list[dict[str, Any]]:
    """The first `count` rows the capture callback wrote (logging runs after the response)."""
    path = proxy.log.parent / "capture.jsonl"
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if path.exists():
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            if len(rows) >= count:
                break
        time.sleep(0.1)
    return rows


def test_routes_by_complexity_and_capability_streaming_and_not(
    fresh_tiers: dict[str, Stub], proxy_factory: Callable[..., Service]
) -> None:
    proxy = proxy_factory(proxy_config(fresh_tiers))
    for stream in (False, True):
        easy = chat(proxy, EASY, stream=stream)
        assert answer(easy) == f"[local] {EASY}"
        assert easy.headers["x-tierwise-tier"] == "local"
        assert float(easy.headers["x-tierwise-score"]) < 0.3333
        assert "complexity" in easy.headers["x-tierwise-reason"]

        hard = chat(proxy, HARD, stream=stream)
        assert answer(hard) == f"[cloud] {HARD}"
        assert hard.headers["x-tierwise-tier"] == "cloud"

        medium = chat(proxy, MEDIUM, stream=stream)
        assert answer(medium).startswith("[hpc]")

    image = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
    ]
    seen = chat(proxy, image)
    assert answer(seen).startswith("[cloud]")  # only cloud lists `vision`
    assert "capability: vision" in seen.headers["x-tierwise-reason"]

    # The decision reached LiteLLM's standard logging payload (and so the spend logs).
    rows = captured(proxy, 7)
    assert len(rows) == 7 and all(r["model_group"] == "auto" for r in rows)
    decisions = [r["spend_logs_metadata"]["tierwise"] for r in rows]
    assert {d["tier"] for d in decisions} == {"local", "hpc", "cloud"}
    assert all(d["attempts"] == [d["tier"]] and d["scorer"] for d in decisions)


def test_other_groups_auth_and_bad_input(
    fresh_tiers: dict[str, Stub], proxy_factory: Callable[..., Service]
) -> None:
    proxy = proxy_factory(proxy_config(fresh_tiers))
    plain = chat(proxy, HARD, model="plain")  # hard, but not `auto`: untouched
    assert answer(plain) == f"[local] {HARD}"
    assert not any(h.startswith("x-tierwise") for h in plain.headers)
    assert fresh_tiers["local"].requests()[-1]["body"]["model"] == "local-model"
    assert "num_retries" not in fresh_tiers["local"].requests()[-1]["body"]

    before = sum(len(s.requests()) for s in fresh_tiers.values())
    for headers in ({}, {"Authorization": "Bearer sk-wrong-key"}):
        denied = chat(proxy, EASY, headers=headers)
        # Without a database LiteLLM answers 401/400/500 here, never 200: not served.
        assert denied.status_code != 200
    assert sum(len(s.requests()) for s in fresh_tiers.values()) == before

    bad_role = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "wizard", "content": "hi"}]},
        headers=AUTH,
        timeout=30,
    )
    assert bad_role.status_code == 400
    assert (
        "tierwise: messages[0].role: unknown role 'wizard'" in bad_role.json()["error"]["message"]
    )
    bad_messages = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": "auto", "messages": "hello"},
        headers=AUTH,
        timeout=30,
    )
    assert bad_messages.status_code == 400
    assert "'messages' must be a list" in bad_messages.json()["error"]["message"]
    assert answer(chat(proxy, EASY)).startswith("[local]")  # and the proxy keeps serving


def test_tier_down_falls_back_along_the_chain(
    fresh_tiers: dict[str, Stub], proxy_factory: Callable[..., Service]
) -> None:
    proxy = proxy_factory(proxy_config(fresh_tiers))
    fresh_tiers["local"].control(fail_status=503)
    for stream in (False, True):
        reply = chat(proxy, EASY, stream=stream)
        assert answer(reply).startswith("[hpc]")  # next tier of local's chain
        assert reply.headers["x-tierwise-tier"] == "hpc"
        assert reply.headers["x-tierwise-reason"].startswith("fallback: local failed")
    fresh_tiers["hpc"].control(fail_status=500)
    assert answer(chat(proxy, EASY)).startswith("[cloud]")
    rows = [r["spend_logs_metadata"]["tierwise"] for r in captured(proxy, 3)]
    assert rows[-1]["tier"] == "local" and rows[-1]["attempts"][-1] == "cloud"
    # Three failures in a row open local's breaker: the next decision skips it up front.
    skipped = chat(proxy, EASY)
    assert "health: local cooling down" in skipped.headers["x-tierwise-reason"]


def test_sla_demotion_and_recovery(
    fresh_tiers: dict[str, Stub], proxy_factory: Callable[..., Service]
) -> None:
    sla = {"max_ttft_ms": 250, "seed_ms": 10, "alpha": 0.5, "probe_every": 3}
    proxy = proxy_factory(proxy_config(fresh_tiers, {"tiers": [{"name": "local", "sla": sla}]}))
    fresh_tiers["local"].control(ttft_ms=600)
    served = [chat(proxy, EASY, stream=True) for _ in range(4)]
    tiers = [r.headers["x-tierwise-tier"] for r in served]
    assert tiers[0] == "local"  # slow, observed: the EMA now breaks the SLA
    assert "hpc" in tiers[1:]
    demoted = next(r for r in served if r.headers["x-tierwise-tier"] == "hpc")
    assert "sla: local EMA" in demoted.headers["x-tierwise-reason"]

    fresh_tiers["local"].control(ttft_ms=0)
    reasons = []
    for _ in range(12):  # probes (1 in 3) pull the EMA back under the SLA
        reply = chat(proxy, EASY, stream=True)
        reasons.append((reply.headers["x-tierwise-tier"], reply.headers["x-tierwise-reason"]))
    assert any("recovery probe" in reason for _, reason in reasons)
    assert reasons[-1][0] == "local" and "sla:" not in reasons[-1][1]


def test_fail_open_serves_default_tier(
    fresh_tiers: dict[str, Stub], proxy_factory: Callable[..., Service]
) -> None:
    rules = {"custom": ["tests.plugins.broken_rule:corrupt_floor"]}
    proxy = proxy_factory(proxy_config(fresh_tiers, {"rules": rules, "default_tier": "hpc"}))
    reply = chat(proxy, f"{HARD} BREAK-TIERWISE")
    assert answer(reply).startswith("[hpc]")  # the default tier, not cloud
    assert reply.headers["x-tierwise-reason"].startswith("fail-open: tierwise error (TypeError)")
    assert reply.headers["x-tierwise-score"] == "n/a"
    assert answer(chat(proxy, HARD)).startswith("[cloud]")  # other requests unaffected
    record = captured(proxy, 1)[0]["spend_logs_metadata"]["tierwise"]
    assert record["fail_open"] is True
    assert "tierwise: fail-open #1 in pre-call (TypeError" in proxy.log.read_text()


def test_steps_answer_before_routing_and_see_each_attempt(
    fresh_tiers: dict[str, Stub], proxy_factory: Callable[..., Service]
) -> None:
    from tests.plugins.canned_step import ANSWER, QUESTION

    proxy = proxy_factory(proxy_config(fresh_tiers, {"steps": ["tests.plugins.canned_step:build"]}))
    before = sum(len(s.requests()) for s in fresh_tiers.values())
    assert answer(chat(proxy, QUESTION)) == ANSWER
    assert answer(chat(proxy, QUESTION, stream=True)) == ANSWER
    assert sum(len(s.requests()) for s in fresh_tiers.values()) == before  # no upstream call

    fresh_tiers["local"].control(fail_status=503)
    assert answer(chat(proxy, EASY)).startswith("[hpc]")
    fitted = [r["headers"].get("x-fitted-for") for r in fresh_tiers["hpc"].requests()]
    assert fitted[-1] == "hpc"  # the per-attempt step ran again for the fallback tier
    assert fresh_tiers["local"].requests()[-1]["headers"].get("x-fitted-for") == "local"


def test_vllm_metrics_demote_a_full_tier_and_pick_replicas(
    fresh_tiers: dict[str, Stub], proxy_factory: Callable[..., Service], tmp_path: Path
) -> None:
    replicas = [start_stub(f"hpc{i}", tmp_path) for i in (1, 2)]
    try:
        config = proxy_config(fresh_tiers)
        config["model_list"] = [d for d in config["model_list"] if d["model_name"] != "auto"]
        config["model_list"] += [
            deployment(fresh_tiers["local"], "local"),
            deployment(fresh_tiers["cloud"], "cloud"),
            *(deployment(r, "hpc", tierwise_metrics_url=f"{r.url}/metrics") for r in replicas),
        ]
        vram = {"source": "vllm", "metrics_url": f"{replicas[0].url}/metrics", "max_waiting": 4}
        config["tierwise"] = {
            "scoring": {"method": "heuristic"},
            "replicas": "metrics",
            "metrics_interval_s": 0.2,
            "tiers": [{"name": "hpc", "vram": vram}],
        }
        replicas[0].control(waiting=3, kv_cache_usage=0.5)
        replicas[1].control(waiting=0, kv_cache_usage=0.2)
        proxy = proxy_factory(config)
        time.sleep(0.6)
        for _ in range(3):
            assert answer(chat(proxy, MEDIUM)).startswith("[hpc2]")  # the less loaded replica
        replicas[1].control(waiting=6)
        time.sleep(0.6)
        assert answer(chat(proxy, MEDIUM)).startswith("[hpc1]")
        replicas[0].control(waiting=9)  # both queues past max_waiting: the tier is full
        time.sleep(0.6)
        full = chat(proxy, MEDIUM)
        assert answer(full).startswith("[cloud]")
        assert "vram: hpc 6 requests waiting > 4" in full.headers["x-tierwise-reason"]
    finally:
        for replica in replicas:
            replica.stop()

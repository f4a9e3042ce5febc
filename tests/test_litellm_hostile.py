"""Hostile traffic through a real proxy: no caller drops, re-routes or up-charges another's.

Each case starts a fresh proxy (health and SLA state would leak between cases) over the same
three stand-in upstreams, sends what a careless or hostile client would, then checks what
another user gets.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import Service, Stub, start_litellm, start_redis
from tests.test_litellm_proxy import AUTH, answer, chat, proxy_config, tiers

EASY = "What is 2+2?"
pytestmark = pytest.mark.integration
__all__ = ["tiers"]  # the stand-in upstreams fixture, shared with test_litellm_proxy


@pytest.fixture
def proxy(tiers: dict[str, Stub], tmp_path: Path) -> Iterator[Service]:
    for stub in tiers.values():
        stub.control(
            ttft_ms=0, token_delay_ms=0, fail_status=0, fail_message="", fail_after_tokens=-1
        )
        stub.reset()
    capture = {"TIERWISE_TEST_CAPTURE": str(tmp_path / "capture.jsonl")}
    service = start_litellm(proxy_config(tiers), tmp_path, env=capture, timeout_s=240)
    yield service
    service.stop()


def post(proxy: Service, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{proxy.url}{path}", json=body, headers=AUTH, timeout=60)


def error_of(response: httpx.Response) -> str:
    return str(response.json()["error"]["message"])


def served_by(tiers: dict[str, Stub]) -> dict[str, int]:
    return {name: len(stub.requests()) for name, stub in tiers.items()}


def test_request_faults_get_a_clear_4xx_and_change_nothing_for_others(
    tiers: dict[str, Stub], proxy: Service
) -> None:
    # Malformed content parts: LiteLLM refuses them before any upstream call.
    bad_parts = [[{"type": "hologram"}], [{"type": "image_url"}]]
    for i in range(6):
        reply = chat(proxy, bad_parts[i % 2], stream=bool(i % 3), user="mallory")
        assert reply.status_code == 400, reply.text
        assert "tierwise: request refused" in error_of(reply)
        assert reply.headers["x-tierwise-reason"].startswith("failed (request refused")
    assert served_by(tiers) == {"local": 0, "hpc": 0, "cloud": 0}  # nothing left the proxy
    # Non-chat endpoints on `auto` (Continue's autocomplete posts FIM to /v1/completions).
    fim = {"model": "auto", "prompt": "def add(a, b):\n    ", "suffix": "\n", "max_tokens": 16}
    for _ in range(3):
        for path, body in (
            ("/v1/completions", fim),
            ("/v1/embeddings", {"model": "auto", "input": "hello"}),
        ):
            reply = post(proxy, path, body)
            assert reply.status_code == 400, reply.text
            assert "POST /v1/chat/completions" in error_of(reply)
    assert served_by(tiers) == {"local": 0, "hpc": 0, "cloud": 0}
    # The upstream reads the request and refuses it: its 4xx, no walk to a dearer tier.
    for status in (400, 404, 413, 422):
        tiers["local"].control(fail_status=status, fail_message="the request is malformed")
        for stream in (False, True):
            reply = chat(proxy, EASY, stream=stream, user="mallory")
            assert reply.status_code == status, reply.text
            assert "the request is malformed" in error_of(reply)
    assert served_by(tiers) == {"local": 8, "hpc": 0, "cloud": 0}
    tiers["local"].control(fail_status=0)
    for stream in (False, True):
        other = chat(proxy, EASY, stream=stream, user="alice")
        assert answer(other) == f"[local] {EASY}", other.headers["x-tierwise-reason"]
        assert other.headers["x-tierwise-reason"].startswith("complexity")


def test_upstream_error_text_never_drops_a_response(tiers: dict[str, Stub], proxy: Service) -> None:
    """The issue's repro (an error full of spaces), then a property: whatever the upstream's
    error text (it lands in the reason header while a tier cools down), every request is
    answered and every header is printable."""
    message = "local upstream failed:" + " " * 250 + "end"
    tiers["local"].control(fail_status=500, fail_message=message)
    for i in range(8):
        reply = chat(proxy, EASY, stream=bool(i % 2), user=f"user-{i % 3}")
        assert reply.status_code == 200, reply.text
        reason = reply.headers["x-tierwise-reason"]
        assert reason == reason.strip() and len(reason) <= 240
    rng = random.Random(15)
    alphabet = " \t\r\n\x00\x7fabc é中🙂\u2028:;\"'"
    texts = ["x" * 10_000, " " * 300, "\r\n" * 50, "é" * 500]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 600))) for _ in range(6)]
    for i, text in enumerate(texts):
        tiers["local"].control(fail_status=503, fail_message=text)
        reply = chat(proxy, EASY, stream=bool(i % 2), user=f"user-{i % 2}")
        assert reply.status_code == 200, (text, reply.text)
        assert all(value.isprintable() for value in reply.headers.values())


def test_a_burst_against_a_healthy_tier_does_not_demote_it(
    tiers: dict[str, Stub], proxy: Service
) -> None:
    def one(i: int) -> str:
        return chat(proxy, EASY, stream=True, user=f"burst-{i}").headers["x-tierwise-tier"]

    with ThreadPoolExecutor(max_workers=40) as pool:
        burst = list(pool.map(one, range(120)))
    assert burst.count("local") >= 100, burst
    assert deaths(proxy) == 0  # a healthy burst counts no tier fault
    after = chat(proxy, EASY, stream=True, user="alice")
    assert after.headers["x-tierwise-tier"] == "local", after.headers["x-tierwise-reason"]


def test_a_mid_stream_death_counts(tiers: dict[str, Stub], proxy: Service) -> None:
    """An upstream that crashes mid-body (its chunked body never ends) is a tier fault: the
    caller sees an error, not a made-up "stop", and once the deaths from several callers
    reach the breaker's threshold (3), the next easy requests go to another tier. Clients
    that hang up mid-stream count nothing."""
    tiers["local"].control(token_delay_ms=300)
    for i in range(3):
        body = {"model": "auto", "messages": [{"role": "user", "content": EASY}], "stream": True}
        body["user"] = f"leaver-{i}"
        url = f"{proxy.url}/v1/chat/completions"
        with httpx.stream("POST", url, json=body, headers=AUTH, timeout=60) as reply:
            assert reply.headers["x-tierwise-tier"] == "local"
            next(reply.iter_lines())  # the first chunk, then hang up
    tiers["local"].control(token_delay_ms=0, fail_after_tokens=2)
    served = []
    for i in range(5):
        reply = chat(proxy, EASY, stream=True, user=f"user-{i % 2}")
        served.append(reply.headers["x-tierwise-tier"])
        if served[-1] == "local":
            assert "is 2+2?" not in reply.text and "error" in reply.text, reply.text
        else:
            assert answer(reply) == f"[hpc] {EASY}"
            assert "health: local cooling down" in reply.headers["x-tierwise-reason"]
    assert served == ["local", "local", "local", "hpc", "hpc"]
    assert deaths(proxy) == 3
    tiers["local"].control(fail_after_tokens=-1)
    after = chat(proxy, EASY, user="alice")
    assert answer(after) == f"[hpc] {EASY}", after.headers["x-tierwise-reason"]


def deaths(proxy: Service) -> int:
    """Mid-stream deaths the proxy counted against a tier, from its log."""
    lines = proxy.log.read_text(errors="replace").splitlines()
    return sum(line.startswith("tierwise: tier ") and "died mid-way" in line for line in lines)


def test_one_caller_cannot_open_the_breaker_for_everyone(
    tiers: dict[str, Stub], proxy: Service
) -> None:
    tiers["local"].control(fail_status=503)
    for _ in range(6):
        assert answer(chat(proxy, EASY, user="mallory")).startswith("[hpc]")
    tiers["local"].control(fail_status=0)
    own = chat(proxy, EASY, user="mallory")
    assert "health: local cooling down" in own.headers["x-tierwise-reason"]  # its own breaker
    assert answer(chat(proxy, EASY, user="alice")) == f"[local] {EASY}"


def test_two_replicas_share_a_breaker_through_redis(tiers: dict[str, Stub], tmp_path: Path) -> None:
    for stub in tiers.values():
        stub.control(ttft_ms=0, fail_status=0, fail_message="", fail_after_tokens=-1)
    redis = start_redis(tmp_path)
    config = proxy_config(tiers, {"redis_url": redis.url})
    env = {"TIERWISE_TEST_CAPTURE": str(tmp_path / "capture.jsonl")}
    replicas: list[Service] = []
    try:
        for name in ("replica-a", "replica-b"):
            replicas.append(start_litellm(config, tmp_path, name=name, env=env, timeout_s=240))
        a, b = replicas
        tiers["local"].control(fail_status=503)
        for user in ("alice", "bob", "alice"):  # behind replica A only
            assert answer(chat(a, EASY, user=user)).startswith("[hpc]")
        tiers["local"].control(fail_status=0)
        reply = chat(b, EASY, user="carol")
        assert answer(reply) == f"[hpc] {EASY}"
        assert "health: local cooling down" in reply.headers["x-tierwise-reason"]
    finally:
        for service in [*replicas, redis]:
            service.stop()

"""What a job may not make the worker do: carry the model server's key, call any host, send
tokens in clear, or run after the proxy stopped waiting for it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from relay.worker import run_worker
from tests.servers import Stub

pytestmark = pytest.mark.integration


def _job(stub: Stub, **extra: Any) -> dict[str, Any]:
    return {
        "upstream": {"url": f"{stub.url}/v1"},
        "body": {"model": "m", "messages": [{"role": "user", "content": "one two three"}]},
        "relay": None,
        **extra,
    }


def _error(result: dict[str, Any]) -> str:
    (event,) = [e for e in result["events"] if e["type"] == "error"]
    return str(event["message"])


def test_a_job_carrying_the_model_servers_key_is_refused(
    stub_factory: Callable[..., Stub],
) -> None:
    stub = stub_factory("vllm")
    job = _job(stub)
    job["upstream"]["api_key"] = "sk-should-not-travel"
    assert "set it in the endpoint's environment" in _error(run_worker(job))
    assert stub.requests() == []


def test_the_key_comes_from_the_endpoints_environment(
    stub_factory: Callable[..., Stub], monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = stub_factory("vllm")
    monkeypatch.setenv("SITE_VLLM_KEY", "sk-from-the-node")
    job = _job(stub)
    job["upstream"]["api_key_env"] = "SITE_VLLM_KEY"
    result = run_worker(job)
    assert result["events"][-1]["type"] == "done"
    assert stub.requests()[0]["headers"]["authorization"] == "Bearer sk-from-the-node"


def test_only_loopback_or_listed_model_servers(
    stub_factory: Callable[..., Stub], monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = stub_factory("vllm")
    elsewhere = _job(stub)
    elsewhere["upstream"]["url"] = stub.url.replace("127.0.0.1", "127.0.0.2") + "/v1"
    assert "not on loopback nor in this endpoint's TIERWISE_UPSTREAM_HOSTS" in _error(
        run_worker(elsewhere)
    )
    monkeypatch.setenv("TIERWISE_UPSTREAM_HOSTS", "gpu-a, 127.0.0.2")
    assert "cannot reach the model server" in _error(run_worker(elsewhere))  # allowed, tried


def test_tokens_never_go_to_a_relay_in_clear_off_loopback(
    stub_factory: Callable[..., Stub],
) -> None:
    stub = stub_factory("vllm")
    relay = {"url": "ws://relay.example.edu/v1/channels/chan-clear/produce", "token": "t"}
    assert "the relay must be wss://" in _error(run_worker(_job(stub, relay=relay)))
    assert stub.requests() == []


def test_a_job_that_starts_after_its_deadline_calls_no_model(
    stub_factory: Callable[..., Stub],
) -> None:
    stub = stub_factory("vllm")
    late = run_worker(_job(stub, deadline={"start_by": time.time() - 5}))
    assert "after its deadline" in _error(late)
    assert stub.requests() == []


def test_generation_stops_at_the_finish_deadline(stub_factory: Callable[..., Stub]) -> None:
    stub = stub_factory("vllm")
    stub.control(token_delay_ms=300)
    job = _job(stub, deadline={"start_by": time.time() + 60, "finish_by": time.time() + 1})
    job["body"]["messages"][0]["content"] = " ".join(f"w{i}" for i in range(60))
    result = run_worker(job)
    assert _error(result) == "the job reached its deadline"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not stub.requests()[0].get("aborted"):
        time.sleep(0.1)
    assert stub.requests()[0].get("aborted") is True  # vLLM was told to stop


def test_a_probe_reports_the_node_without_calling_the_model() -> None:
    node = run_worker({"probe": True})["probe"]
    assert node["python"] and node["host"]
    assert node["websockets"]  # installed here, as it must be on compute nodes

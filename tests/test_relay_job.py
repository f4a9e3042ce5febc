"""What a job may not make the worker do: carry the model server's key, call any host, send
tokens in clear, or run after the proxy stopped waiting for it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from relay.worker import run_worker
from tests.servers import Stub
from tests.servers.relay import start_relay, token, worker_job, ws_url

pytestmark = pytest.mark.integration


def _job(stub: Stub, **extra: Any) -> dict[str, Any]:
    return {
        "upstream": {"url": f"{stub.url}/v1"},
        "body": {"model": "m", "messages": [{"role": "user", "content": "one two three"}]},
        "relay": None,
        **extra,
    }


def _aborted(stub: Stub) -> bool:
    """Whether the stub saw its one request hang up mid-stream (it notices within moments)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not stub.requests()[0].get("aborted"):
        time.sleep(0.1)
    return stub.requests()[0].get("aborted") is True


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
    assert _aborted(stub)  # vLLM was told to stop


def test_a_probe_reports_the_node_without_calling_the_model() -> None:
    node = run_worker({"probe": True})["probe"]
    assert node["python"] and node["host"]
    assert node["websockets"]  # installed here, as it must be on compute nodes


def test_an_expired_producer_token_stops_generation(
    tmp_path: Path, stub_factory: Callable[..., Stub]
) -> None:
    """The relay answers 401: nobody can receive this answer, so vLLM is told to stop."""
    stub, relay = stub_factory("vllm"), start_relay(tmp_path)
    stub.control(token_delay_ms=200)
    job = worker_job(f"{stub.url}/v1", ws_url(relay), "chan-expired", "w " * 40)
    job["relay"]["token"] = token("chan-expired", "produce", ttl_s=-10)
    try:
        result = run_worker(job)
    finally:
        relay.stop()
    assert result["cancelled"] is True
    # Stopped before vLLM was called, or vLLM's request was aborted: no answer for nobody.
    assert stub.requests() == [] or _aborted(stub)


def test_settings_refuse_a_relay_in_clear_and_a_key_in_the_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from litellm.llms.custom_llm import CustomLLMError

    from relay.provider import HpcProvider, parse_settings

    with pytest.raises(CustomLLMError, match="relay_url must be wss:// off loopback"):
        parse_settings({"relay_url": "ws://relay.example.edu", "dispatch": "local"})
    allowed = {"relay_url": "ws://relay.example.edu", "dispatch": "local"}
    assert parse_settings({**allowed, "allow_insecure_relay": True}).allow_insecure_relay
    monkeypatch.setenv("TIERWISE_RELAY_SECRET", "s" * 32)
    call = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "api_base": "http://127.0.0.1:8000/v1",
        "api_key": "sk-vllm",
        "optional_params": {"hpc": {"relay_url": "ws://127.0.0.1:1", "dispatch": "local"}},
    }

    async def ask() -> None:
        async for _ in HpcProvider().astreaming(**call):
            pass

    with pytest.raises(CustomLLMError, match="set VLLM_API_KEY in the endpoint's environment"):
        asyncio.run(ask())

"""The upstream stand-in behaves like an OpenAI server: the other integration tests rely on it."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.servers import Stub


@pytest.mark.integration
def test_plain_streaming_tools_and_control(stub_factory) -> None:  # type: ignore[no-untyped-def]
    stub: Stub = stub_factory("local")
    body = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}
    reply = httpx.post(f"{stub.url}/v1/chat/completions", json=body).json()
    assert reply["choices"][0]["message"]["content"] == "[local] hello there"
    assert reply["usage"]["completion_tokens"] == 3

    stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{stub.url}/v1/chat/completions", json=stream_body) as response:
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "[local] hello there"
    assert chunks[-1]["usage"]["total_tokens"] > 0

    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    call = {"model": "m", "tools": tools, "messages": [{"role": "user", "content": "call tool"}]}
    message = httpx.post(f"{stub.url}/v1/chat/completions", json=call).json()["choices"][0][
        "message"
    ]
    assert message["tool_calls"][0]["function"]["name"] == "lookup"

    stub.control(fail_status=503)
    assert httpx.post(f"{stub.url}/v1/chat/completions", json=body).status_code == 503
    assert len(stub.requests()) == 4
    metrics = httpx.get(f"{stub.url}/metrics").text
    assert "vllm:gpu_cache_usage_perc" in metrics

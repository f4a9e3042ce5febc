"""Continue.dev's requests, replayed through a real LiteLLM proxy with the plugin.

Continue (provider: openai, model: auto) streams chat with stream_options.include_usage,
sends native `tools` in agent mode when the model declares tool_use, and runs autocomplete
through chat completions with a short max_tokens and stop sequences. Tool calls and usage
must come back intact, whichever tier answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.servers import MASTER_KEY, Service, Stub, start_litellm, start_stub
from tests.test_litellm_proxy import deployment

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
CONFIG = Path(__file__).parents[1] / "continue_config" / "config.yaml"
READ_FILE_TOOL = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read a file in the workspace",
        "parameters": {
            "type": "object",
            "properties": {"filepath": {"type": "string"}},
            "required": ["filepath"],
        },
    },
}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, dict[str, Stub]]]:
    log_dir = tmp_path_factory.mktemp("continue")
    stubs = {name: start_stub(name, log_dir) for name in ("local", "hpc", "cloud")}
    model_list = [deployment(stub, name) for name, stub in stubs.items()]
    service = start_litellm(
        {"model_list": model_list, "litellm_settings": {"callbacks": ["litellm_plugin.tierwise"]}},
        log_dir,
        name="continue-proxy",
    )
    yield service, stubs
    service.stop()
    for stub in stubs.values():
        stub.stop()


def sse_chunks(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_the_shipped_continue_config_selects_auto_with_tool_use() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["schema"] == "v1"
    (model,) = config["models"]
    assert model["provider"] == "openai" and model["model"] == "auto"
    assert model["apiBase"].endswith("/v1")
    assert "tool_use" in model["capabilities"]
    assert {"chat", "autocomplete"} <= set(model["roles"])


def test_streamed_chat_with_usage(proxy: tuple[Service, dict[str, Stub]]) -> None:
    service, _ = proxy
    body = {
        "model": "auto",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [
            {"role": "system", "content": "You are a helpful coding assistant."},
            {"role": "user", "content": "What does git stash do?"},
        ],
    }
    response = httpx.post(f"{service.url}/v1/chat/completions", json=body, headers=AUTH, timeout=60)
    chunks = sse_chunks(response)
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
    )
    tier = response.headers["x-tierwise-tier"]
    assert text == f"[{tier}] What does git stash do?"
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert usage and usage[-1]["completion_tokens"] == len(text.split())
    assert usage[-1]["prompt_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_agent_mode_tool_calls_pass_through(
    proxy: tuple[Service, dict[str, Stub]], stream: bool
) -> None:
    service, stubs = proxy
    body: dict[str, Any] = {
        "model": "auto",
        "stream": stream,
        "tools": [READ_FILE_TOOL],
        "messages": [{"role": "user", "content": "Please call tool read_file on main.py"}],
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    response = httpx.post(f"{service.url}/v1/chat/completions", json=body, headers=AUTH, timeout=60)
    tier = response.headers["x-tierwise-tier"]
    sent = stubs[tier].requests()[-1]["body"]
    assert sent["tools"] == [READ_FILE_TOOL]  # the definition reached the upstream intact
    if stream:
        chunks = sse_chunks(response)
        calls = [
            call
            for c in chunks
            if c.get("choices")
            for call in c["choices"][0]["delta"].get("tool_calls") or []
        ]
        assert calls and calls[0]["function"]["name"] == "read_file"
        assert json.loads("".join(c["function"].get("arguments") or "" for c in calls)) == {
            "q": "x"
        }
        finish = [c["choices"][0].get("finish_reason") for c in chunks if c.get("choices")]
        assert "tool_calls" in finish
        assert any(c.get("usage") for c in chunks)
    else:
        message = response.json()["choices"][0]["message"]
        assert message["tool_calls"][0]["function"]["name"] == "read_file"
        assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"q": "x"}
        assert response.json()["choices"][0]["finish_reason"] == "tool_calls"
        assert response.json()["usage"]["total_tokens"] > 0


def test_tool_result_turn_goes_back_to_a_tool_capable_tier(
    proxy: tuple[Service, dict[str, Stub]],
) -> None:
    service, _ = proxy
    body = {
        "model": "auto",
        "tools": [READ_FILE_TOOL],
        "messages": [
            {"role": "user", "content": "Summarize main.py"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "read_file", "arguments": '{"filepath": "main.py"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "print('hello')"},
        ],
    }
    response = httpx.post(f"{service.url}/v1/chat/completions", json=body, headers=AUTH, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"].startswith("[")


def test_autocomplete_through_chat_completions(proxy: tuple[Service, dict[str, Stub]]) -> None:
    service, stubs = proxy
    body = {
        "model": "auto",
        "max_tokens": 64,
        "temperature": 0.01,
        "stop": ["\n\n"],
        "messages": [
            {
                "role": "user",
                "content": "Complete the code at <CURSOR>:\ndef add(a, b):\n    <CURSOR>",
            }
        ],
    }
    response = httpx.post(f"{service.url}/v1/chat/completions", json=body, headers=AUTH, timeout=60)
    assert response.status_code == 200, response.text
    tier = response.headers["x-tierwise-tier"]
    sent = stubs[tier].requests()[-1]["body"]
    assert sent["max_tokens"] == 64 and sent["stop"] == ["\n\n"]
    assert response.json()["usage"]["completion_tokens"] > 0

"""Tier-aware summarization inside a real LiteLLM proxy: long easy chats stay local."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.servers import MASTER_KEY, Service, Stub, start_litellm, start_stub
from tests.test_litellm_proxy import answer, deployment
from tierwise.summarize import NOTICE_HEADER, SUMMARY_HEADER

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
SUMMARY = (
    "The user and the assistant talked about the history of bridges, their materials and how "
    "load is carried, with several worked examples about arches and suspension cables."
)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, dict[str, Stub]]]:
    log_dir = tmp_path_factory.mktemp("litellm-context")
    stubs = {name: start_stub(name, log_dir) for name in ("local", "hpc", "cloud")}
    model_list = [deployment(stub, name) for name, stub in stubs.items()]
    config = {
        "model_list": model_list,
        "litellm_settings": {"callbacks": ["litellm_plugin.tierwise"]},
        "tierwise": {
            "scoring": {"method": "heuristic"},
            "summarize": {"enabled": True, "timeout_s": 20},
            "tiers": [{"name": "local", "context_window": 2048, "output_reserve": 256}],
        },
    }
    service = start_litellm(config, log_dir)
    yield service, stubs
    service.stop()
    for stub in stubs.values():
        stub.stop()


def long_chat(turns: int, question: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    for i in range(turns):
        messages.append(
            {
                "role": "user",
                "content": f"Tell me more about bridge number {i}: " + "arches and cables " * 40,
            }
        )
        messages.append({"role": "assistant", "content": "Bridges carry loads. " * 40})
    messages.append({"role": "user", "content": question})
    return messages


def post(
    service: Service, messages: list[dict[str, str]], user: str = "alice", **extra: object
) -> httpx.Response:
    body = {"model": "auto", "user": user, "messages": messages, **extra}
    return httpx.post(f"{service.url}/v1/chat/completions", json=body, headers=AUTH, timeout=60)


def test_a_long_easy_chat_is_summarized_and_stays_local(
    proxy: tuple[Service, dict[str, Stub]],
) -> None:
    service, stubs = proxy
    for stub in stubs.values():
        stub.reset()
    stubs["local"].control(reply=SUMMARY)
    response = post(service, long_chat(8, "Thanks! What is 2 + 2?"))
    assert answer(response) == SUMMARY  # the local stand-in answers with its fixed text
    assert response.headers["x-tierwise-tier"] == "local"
    assert "summarize and stay on local" in response.headers["x-tierwise-reason"]
    sent = [r["body"] for r in stubs["local"].requests()]
    assert len(sent) == 2  # the summarizer call, then the fitted chat
    job, chat = sent
    assert job["max_tokens"] > 0 and job["temperature"] == 0
    system = [m["content"] for m in chat["messages"] if m["role"] == "system"]
    assert any(s.startswith(SUMMARY_HEADER) and SUMMARY in s for s in system)
    assert chat["messages"][-1]["content"] == "Thanks! What is 2 + 2?"
    assert len(chat["messages"]) < len(long_chat(8, "x"))
    assert not stubs["hpc"].requests() and not stubs["cloud"].requests()


def test_a_failing_summarizer_truncates_with_a_notice(
    proxy: tuple[Service, dict[str, Stub]],
) -> None:
    service, stubs = proxy
    for stub in stubs.values():
        stub.reset()
    stubs["local"].control(reply="")  # an empty summary is refused by the core
    # Another user: no rolling summary of theirs exists yet to fall back on.
    response = post(service, long_chat(9, "Thanks! What is 3 + 3?"), user="bob", stream=True)
    assert response.status_code == 200, response.text
    chat = stubs["local"].requests()[-1]["body"]
    system = [m["content"] for m in chat["messages"] if m["role"] == "system"]
    assert any(s.startswith(NOTICE_HEADER) for s in system)
    assert chat["messages"][-1]["content"] == "Thanks! What is 3 + 3?"
    stubs["local"].control(reply=None)

"""The semantic cache inside a real LiteLLM proxy: hits, streaming, tenants, logs, opt-out."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers import MASTER_KEY, Service, Stub, start_litellm, start_stub
from tests.test_litellm_proxy import answer, captured, deployment

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
QUESTION = "What is the capital of Australia?"
PARAPHRASE = "Which city is the capital of Australia?"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, dict[str, Stub]]]:
    log_dir = tmp_path_factory.mktemp("litellm-cache")
    stubs = {name: start_stub(name, log_dir) for name in ("local", "hpc", "cloud")}
    model_list = [deployment(stub, name) for name, stub in stubs.items()]
    model_list.append(
        {
            "model_name": "plain",
            "litellm_params": {
                "model": "openai/local-model",
                "api_base": f"{stubs['local'].url}/v1",
                "api_key": "unused",
            },
        }
    )
    config = {
        "model_list": model_list,
        "litellm_settings": {
            "callbacks": ["litellm_plugin.tierwise", "tests.plugins.capture.capture"]
        },
        "tierwise": {
            "scoring": {"method": "heuristic"},
            # Short rewordings ("Which city is ...") embed as close as short look-alikes:
            # the default budget (2%) serves neither, so these tests allow 15%.
            "cache": {
                "enabled": True,
                "directory": str(log_dir / "answers"),
                "max_false_hit_rate": 0.15,
            },
            "telemetry": {"log": True, "path": str(log_dir / "decisions.db")},
        },
    }
    service = start_litellm(
        config, log_dir, env={"TIERWISE_TEST_CAPTURE": str(log_dir / "capture.jsonl")}
    )
    yield service, stubs
    service.stop()
    for stub in stubs.values():
        stub.stop()


def ask(
    service: Service, text: str, user: str = "alice", model: str = "auto", **extra: Any
) -> httpx.Response:
    headers = {**AUTH, **extra.pop("headers", {})}
    body = {"model": model, "user": user, "messages": [{"role": "user", "content": text}]}
    return httpx.post(
        f"{service.url}/v1/chat/completions", json={**body, **extra}, headers=headers, timeout=60
    )


def calls(stubs: dict[str, Stub]) -> int:
    return sum(len(stub.requests()) for stub in stubs.values())


def test_a_paraphrase_is_answered_from_the_cache(proxy: tuple[Service, dict[str, Stub]]) -> None:
    service, stubs = proxy
    first = ask(service, QUESTION)
    original = answer(first)
    assert original == "[local] What is the capital of Australia?"
    assert "x-tierwise-cache" not in first.headers
    before = calls(stubs)
    second = ask(service, PARAPHRASE)
    assert answer(second) == original
    assert second.headers["x-tierwise-cache"].startswith("hit (similar")
    assert calls(stubs) == before  # no upstream was called

    streamed = ask(service, PARAPHRASE, stream=True)
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert answer(streamed) == original
    assert calls(stubs) == before

    rows = captured(service, 3)
    assert [bool(r["cache_hit"]) for r in rows[:3]] == [False, True, True]
    assert rows[1]["response_cost"] in (0, 0.0, None)
    assert rows[1]["spend_logs_metadata"]["tierwise"]["cache"]["answered_by"] == "local"


def test_another_user_never_gets_the_answer(proxy: tuple[Service, dict[str, Stub]]) -> None:
    service, stubs = proxy
    ask(service, "How many moons does Mars have?", user="carol")
    before = calls(stubs)
    response = ask(service, "How many moons does Mars have?", user="dave")
    assert "x-tierwise-cache" not in response.headers
    assert calls(stubs) == before + 1


def test_streamed_answers_are_stored_and_opt_out_is_honoured(
    proxy: tuple[Service, dict[str, Stub]],
) -> None:
    service, stubs = proxy
    text = "What is the tallest mountain in Africa?"
    streamed = ask(service, text, user="erin", stream=True, stream_options={"include_usage": True})
    assert answer(streamed) == f"[local] {text}"
    before = calls(stubs)
    again = ask(service, text, user="erin")
    assert again.headers.get("x-tierwise-cache", "").startswith("hit (exact")
    assert answer(again) == f"[local] {text}"
    assert calls(stubs) == before
    skipped = ask(service, text, user="erin", headers={"x-tierwise-no-cache": "1"})
    assert "x-tierwise-cache" not in skipped.headers
    assert calls(stubs) == before + 1


def test_other_groups_and_tool_requests_bypass_the_cache(
    proxy: tuple[Service, dict[str, Stub]],
) -> None:
    service, stubs = proxy
    for _ in range(2):
        assert answer(ask(service, "Name a prime number.", user="frank", model="plain"))
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    before = calls(stubs)
    for _ in range(2):
        response = ask(service, "Name a prime number, please.", user="frank", tools=tools)
        assert response.status_code == 200, response.text
        assert "x-tierwise-cache" not in response.headers
    assert calls(stubs) == before + 2


def test_cache_hits_reach_the_spend_log_as_zero_cost(
    proxy: tuple[Service, dict[str, Stub]],
) -> None:
    service, _ = proxy
    lines = (service.log.parent / "capture.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    hits = [r for r in rows if r["cache_hit"]]
    assert hits and all(not r["response_cost"] for r in hits)


def test_every_request_lands_in_the_decision_log(proxy: tuple[Service, dict[str, Stub]]) -> None:
    service, _ = proxy
    ask(service, "Who painted the Mona Lisa?", user="gina")
    ask(service, "Who painted the Mona Lisa?", user="gina")  # an exact cache hit
    path = service.log.parent / "decisions.db"
    deadline = time.monotonic() + 15
    rows: list[sqlite3.Row] = []
    while time.monotonic() < deadline:  # the writer thread flushes in batches
        if path.exists():
            with sqlite3.connect(path) as conn:
                conn.row_factory = sqlite3.Row
                rows = conn.execute("SELECT * FROM requests ORDER BY id").fetchall()
            if sum(r["cache_hit"] for r in rows) >= 2 and len(rows) >= 6:
                break
        time.sleep(0.2)
    assert {r["host"] for r in rows} == {"litellm"}
    served = [r for r in rows if not r["cache_hit"]]
    hits = [r for r in rows if r["cache_hit"]]
    assert served and hits
    assert all(r["tier"] == "cache" and r["cost_usd"] == 0 for r in hits)
    assert all(r["routed_tier"] in ("local", "hpc", "cloud") for r in rows)
    assert all(r["latency_ms"] is not None and r["latency_ms"] >= 0 for r in rows)
    assert all(len(r["scope"]) >= 16 and "gina" not in r["scope"] for r in rows)

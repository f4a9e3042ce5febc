"""The LLM judge inside a real LiteLLM proxy: the cheapest tier rates near-edge requests.

The local stand-in answers the judge's prompt by a per-prompt rule (a rating, a stall, junk or
HTTP 500) and echoes every other request, so a test sees both the judge call and where the
user's request went. Which request is near a band edge is computed here with the same
config's scorer, not assumed.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import three_tiers
from tests.servers import MASTER_KEY, Service, Stub, start_litellm, start_stub
from tests.test_litellm_proxy import answer, captured, deployment
from tierwise.config import load_config
from tierwise.request import ChatRequest
from tierwise.scoring.factory import build_scorer
from tierwise.scoring.judge import nearest_edge
from tierwise.scoring.judge_prompt import ASK, INSTRUCTIONS

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
NEAR = "Compare quicksort and mergesort for large datasets on disk."
FAR = "hi"
TIMEOUT_S = 10.0  # generous: a loaded machine must not turn a slow verdict into a timeout


def distance(tierwise: dict[str, Any], text: str) -> float:
    """How far this config's scorer puts the text from its nearest band edge."""
    settings = load_config({**three_tiers(), **tierwise})
    score = build_scorer(settings).score(ChatRequest.from_text(text)).value
    return abs(score - nearest_edge(score, settings.scoring.bands))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, dict[str, Stub]]]:
    log_dir = tmp_path_factory.mktemp("litellm-judge")
    stubs = {name: start_stub(name, log_dir) for name in ("local", "hpc", "cloud")}
    tierwise: dict[str, Any] = {}  # the tiers come from the deployments' tierwise_tier
    tierwise["scoring"] = {"cascade": {"judge_margin": 0.0, "judge_timeout_s": TIMEOUT_S}}
    margin = min(0.5, distance(tierwise, NEAR) + 0.02)
    assert distance(tierwise, FAR) > margin, "the far text must be out of the judge's reach"
    tierwise["scoring"]["cascade"]["judge_margin"] = margin
    tierwise["scoring"]["judge"] = {"enabled": True, "max_failures": 100}
    config = {
        "model_list": [deployment(stub, name, id=f"{name}-1") for name, stub in stubs.items()],
        "litellm_settings": {
            "callbacks": ["litellm_plugin.tierwise", "tests.plugins.capture.capture"]
        },
        "tierwise": tierwise,
    }
    env = {
        "TIERWISE_TEST_CAPTURE": str(log_dir / "capture.jsonl"),
        **{f"XDG_{d}_HOME": str(log_dir / d.lower()) for d in ("DATA", "STATE", "CACHE")},
    }
    service = start_litellm(config, log_dir, env=env)
    assert ", LLM judge on local)" in service.log.read_text()  # the start-up line
    yield service, stubs
    service.stop()
    for stub in stubs.values():
        stub.stop()


@pytest.fixture
def tiers(stack: tuple[Service, dict[str, Stub]]) -> dict[str, Stub]:
    for stub in stack[1].values():
        stub.control(rules=[])
        stub.reset()
    return stack[1]


def post(service: Service, text: str, user: str, stream: bool = False) -> httpx.Response:
    body = {
        "model": "auto",
        "user": user,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    }
    return httpx.post(f"{service.url}/v1/chat/completions", json=body, headers=AUTH, timeout=90)


def judge_calls(stub: Stub) -> list[dict[str, Any]]:
    return [r["body"] for r in stub.requests() if ASK in str(r["body"].get("messages"))]


def judge_rule(**answer: Any) -> list[dict[str, Any]]:
    return [{"contains": ASK, **answer}]


def test_a_near_edge_request_is_judged_by_the_cheapest_tier_and_routed_by_the_verdict(
    stack: tuple[Service, dict[str, Stub]], tiers: dict[str, Stub]
) -> None:
    service = stack[0]
    tiers["local"].control(rules=judge_rule(reply="9"))
    response = post(service, NEAR, "ann", stream=True)
    assert answer(response) == f"[cloud] {NEAR}"
    assert response.headers["x-tierwise-tier"] == "cloud"
    assert response.headers["x-tierwise-reason"].startswith("judge: ")
    assert "rated 9/10" in response.headers["x-tierwise-reason"]
    (call,) = judge_calls(tiers["local"])
    assert call["messages"][0]["content"] == INSTRUCTIONS and NEAR in str(call["messages"][1])
    assert call["max_tokens"] == 16 and call["temperature"] == 0
    tiers["local"].control(rules=judge_rule(reply="Rating: 2"))
    low = post(service, NEAR, "ann-2")  # the band below the edge it was asked about
    assert answer(low) == f"[hpc] {NEAR}" and "rated 2/10" in low.headers["x-tierwise-reason"]


def test_a_far_from_edge_request_is_not_judged(
    stack: tuple[Service, dict[str, Stub]], tiers: dict[str, Stub]
) -> None:
    tiers["local"].control(rules=judge_rule(reply="9"))
    response = post(stack[0], FAR, "bea")
    assert answer(response) == f"[local] {FAR}"
    assert "judge" not in response.headers["x-tierwise-reason"]
    assert judge_calls(tiers["local"]) == []


def test_a_stalled_judge_leaves_the_learned_score_after_its_timeout(
    stack: tuple[Service, dict[str, Stub]], tiers: dict[str, Stub]
) -> None:
    tiers["local"].control(rules=judge_rule(reply="1", ttft_ms=60_000))
    response = post(stack[0], NEAR, "cai")
    assert answer(response) == f"[hpc] {NEAR}"  # the unjudged score's tier
    reason = response.headers["x-tierwise-reason"]
    assert reason.startswith("judge: no answer in time, kept ")
    assert len(judge_calls(tiers["local"])) == 1


def test_the_verdict_cache_is_per_caller(
    stack: tuple[Service, dict[str, Stub]], tiers: dict[str, Stub]
) -> None:
    service = stack[0]
    tiers["local"].control(rules=judge_rule(reply="9"))
    first, again = post(service, NEAR, "fay"), post(service, NEAR, "fay")
    assert answer(first) == answer(again) == f"[cloud] {NEAR}"
    assert "cached" in again.headers["x-tierwise-reason"]
    assert len(judge_calls(tiers["local"])) == 1
    tiers["local"].control(rules=judge_rule(reply="1"))
    other = post(service, NEAR, "gus")  # same text, another caller: judged afresh
    assert answer(other) == f"[hpc] {NEAR}" and "rated 1/10" in other.headers["x-tierwise-reason"]
    assert len(judge_calls(tiers["local"])) == 2


def test_the_judge_call_is_the_proxys_own_call_and_the_record_says_what_it_did(
    stack: tuple[Service, dict[str, Stub]], tiers: dict[str, Stub]
) -> None:
    service = stack[0]
    capture = Path(service.log.parent / "capture.jsonl")
    before = len(capture.read_text().splitlines()) if capture.exists() else 0
    tiers["local"].control(rules=judge_rule(reply="9"))
    assert answer(post(service, NEAR, "hal")) == f"[cloud] {NEAR}"
    rows = captured(service, before + 2)[before:]
    # LiteLLM's logging saw the judge's call to the local deployment...
    judge_rows = [r for r in rows if r["model_id"] == "local-1"]
    assert len(judge_rows) == 1
    # ...and the user's request, whose spend-log record carries the judge's verdict.
    (user_row,) = [r for r in rows if r["model_group"] == "auto"]
    record = user_row["spend_logs_metadata"]["tierwise"]
    assert record["judge"]["status"] == "judged" and record["judge"]["rating"] == 9
    assert record["scorer"] == "judge" and record["tier"] == "cloud"


def test_a_stalled_judge_holds_only_its_own_request(
    stack: tuple[Service, dict[str, Stub]], tiers: dict[str, Stub]
) -> None:
    """The judge is awaited on the proxy's event loop, not waited on: while one request's
    judge call hangs, another caller's request is decided and served."""
    tiers["local"].control(rules=judge_rule(reply="1", ttft_ms=60_000))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        stalled = pool.submit(post, stack[0], NEAR, "ida")
        deadline = time.monotonic() + 60
        while not judge_calls(tiers["local"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert judge_calls(tiers["local"]), "the judge was never called"
        assert answer(post(stack[0], FAR, "jo")) == f"[local] {FAR}"
        assert not stalled.done()  # still inside its judge's timeout
        assert answer(stalled.result()) == f"[hpc] {NEAR}"


# Last: a 500 from the local deployment must not touch the tests above.
@pytest.mark.parametrize(
    ("rule", "user"), [({"reply": "I cannot rate that."}, "dan"), ({"fail_status": 500}, "eve")]
)
def test_judge_junk_or_errors_fail_open(
    stack: tuple[Service, dict[str, Stub]], tiers: dict[str, Stub], rule: Any, user: str
) -> None:
    tiers["local"].control(rules=judge_rule(**rule))
    response = post(stack[0], NEAR, user)
    assert answer(response) == f"[hpc] {NEAR}"
    reason = response.headers["x-tierwise-reason"]
    assert reason.startswith("judge: unreadable or failed answer, kept "), reason

"""A feedback call through the real LiteLLM proxy reaches the decision log's outcomes."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import MASTER_KEY, Service, start_litellm, start_stub

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Path]]:
    log_dir = tmp_path_factory.mktemp("feedback")
    stubs = {name: start_stub(name, log_dir) for name in ("local", "hpc", "cloud")}
    db = log_dir / "decisions.db"
    config: dict[str, Any] = {
        "model_list": [
            {
                "model_name": "auto",
                "litellm_params": {
                    "model": f"openai/{name}-model",
                    "api_base": f"{stub.url}/v1",
                    "api_key": "unused",
                },
                "model_info": {"tierwise_tier": name},
            }
            for name, stub in stubs.items()
        ],
        "litellm_settings": {"callbacks": ["litellm_plugin.tierwise"]},
        "tierwise": {
            "scoring": {"method": "heuristic"},
            "telemetry": {"log": True, "path": str(db)},
            # Refit in the background as soon as 10 outcomes are in, checking every 0.2 s.
            "adapt": {
                "enabled": True,
                "explore": 0.0,
                "min_outcomes": 10,
                "refit_every": 10,
                "refit_check_s": 0.2,
            },
        },
    }
    service = start_litellm(config, log_dir)
    yield service, db
    service.stop()
    for stub in stubs.values():
        stub.stop()


def ask(proxy: Service, text: str, stream: bool) -> str:
    body = {"model": "auto", "messages": [{"role": "user", "content": text}], "stream": stream}
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json=body, headers=AUTH, timeout=60)
    assert response.status_code == 200, response.text
    if not stream:
        return str(response.json()["id"])
    ids = {
        json.loads(line[6:])["id"]
        for line in response.text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    }
    assert len(ids) == 1
    return str(ids.pop())


def rate(proxy: Service, body: Any, headers: dict[str, str] = AUTH) -> httpx.Response:
    return httpx.post(f"{proxy.url}/tierwise/feedback", json=body, headers=headers, timeout=30)


def rate_when_logged(proxy: Service, body: dict[str, Any]) -> httpx.Response:
    """The row is written just after the answer: a client may have to ask again."""
    deadline = time.monotonic() + 30
    while True:
        response = rate(proxy, body)
        if response.status_code != 404 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


@pytest.mark.parametrize("stream", [False, True])
def test_a_feedback_call_reaches_the_log(proxy: tuple[Service, Path], stream: bool) -> None:
    service, db = proxy
    answer_id = ask(service, f"What is the capital of Australia? ({stream})", stream)
    response = rate_when_logged(service, {"id": answer_id, "score": 0})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == answer_id and response.json()["tier"] == "local"
    conn = sqlite3.connect(db)
    try:
        row = conn.execute(
            "SELECT o.source, o.value, r.tier, r.raw_score IS NOT NULL, length(r.sketch) "
            "FROM outcomes o JOIN requests r ON r.request_id = o.request_id "
            "WHERE o.request_id = ?",
            (answer_id,),
        ).fetchone()
    finally:
        conn.close()
    assert row == ("feedback", 0.0, "local", 1, 256)


def test_bad_feedback_is_refused_plainly_and_stores_nothing(proxy: tuple[Service, Path]) -> None:
    service, db = proxy
    answer_id = ask(service, "Name three primary colours.", stream=False)
    assert rate_when_logged(service, {"id": answer_id, "score": 1}).status_code == 200
    before = _outcomes(db)
    unknown = rate(service, {"id": "chatcmpl-not-ours", "score": 1})
    assert unknown.status_code == 404 and "no answer" in unknown.text
    for bad in ({"id": answer_id, "score": 7}, {"id": answer_id}, {"score": 1}, {"id": 5}):
        response = rate(service, bad)
        assert response.status_code == 400, (bad, response.text)
        assert "tierwise" in response.text
    # A body that is not an object fails inside LiteLLM's own auth (500) before the route.
    assert rate(service, [answer_id, 0]).status_code >= 400
    # LiteLLM's own auth guards the route (without a database a bad key is refused, not 401).
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
        assert rate(service, {"id": answer_id, "score": 0}, headers).status_code != 200
    assert _outcomes(db) == before
    # The proxy still serves chat after all of it.
    assert ask(service, "What is 2 + 2?", stream=False)


def test_feedback_calls_lead_to_a_background_refit_in_the_proxy(
    proxy: tuple[Service, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from tests.conftest import three_tiers
    from tierwise.cli import main

    service, db = proxy
    for i in range(10):
        answer_id = ask(service, f"Name a colour of the sky ({i}).", stream=False)
        assert rate_when_logged(service, {"id": answer_id, "score": i % 2}).status_code == 200
    marker = db.parent / "adapt" / "refit.json"
    deadline = time.monotonic() + 120
    while not (marker.is_file() and json.loads(marker.read_text())["outcomes"] >= 10):
        assert time.monotonic() < deadline, "no background refit in the proxy"
        time.sleep(0.2)
    # The command reads the same log and directory: it shows the proxy's refit.
    config = {**three_tiers(), "telemetry": {"log": True, "path": str(db)}}
    path = tmp_path / "tierwise.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["--config", str(path), "adapt", "--status"]) == 0
    assert "last background refit:" in capsys.readouterr().out


def _outcomes(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])
    finally:
        conn.close()


def test_the_sketch_stays_out_of_the_spend_logs_metadata() -> None:
    from litellm_plugin.engine import Engine
    from tierwise.decision import Decision

    trace = {"raw": 0.2, "sketch": "00" * 256, "version": 3}
    decision = Decision("local", ("m",), 0.3, "LOW", (), (), notes={"adapt": trace})
    record = Engine.record_of(decision)
    assert record["adapt"] == {"raw": 0.2, "version": 3, "explored": False}
    assert "00" * 256 not in json.dumps(record)

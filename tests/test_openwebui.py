"""The auto Pipe inside a real Open WebUI, started offline by the test.

Connections: an Ollama-compatible stand-in (local tier), two OpenAI-compatible stand-ins (hpc
and cloud tiers). The function is installed with `tierwise openwebui install` through
Open WebUI's API; a non-admin user may use the local and hpc models but not the cloud one.
Each stand-in answers "[<name>] <prompt>", so a reply says which tier served it.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.servers import REPO, Service, Stub, start_stub
from tests.servers.browser import chromium
from tests.servers.openwebui import (
    CannotBuild,
    OpenWebUI,
    control,
    ollama_requests,
    openwebui_python,
    reset,
    start_ollama_stub,
    start_openwebui,
)
from tierwise.bench.browser import binaries

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

LOCAL, HPC, CLOUD = "local-llama:latest", "hpc-model", "cloud-model"
TIER_MODELS = f"local={LOCAL}; hpc={HPC}; cloud={CLOUD}"
EASY = "hi there"
HARD = (
    "Prove that there are infinitely many primes p such that p = 4k+3, and derive the "
    "asymptotic density using Dirichlet's theorem; then compare with a rigorous analysis of "
    "the error term."
)
PUBLIC = [{"principal_type": "user", "principal_id": "*", "permission": "read"}]


@dataclass
class Stack:
    server: OpenWebUI
    local: Service
    hpc: Stub
    cloud: Stub
    user_token: str
    valves: dict[str, Any]  # as installed; each test starts from these
    root: Path  # this run's directory: configs, the cache, the decision log

    def save_valves(self, **changes: Any) -> httpx.Response:
        """Save the installed valves with these changes (Open WebUI replaces the whole set)."""
        with self.server.client() as admin:
            return admin.post(
                "/api/v1/functions/id/auto/valves/update", json={**self.valves, **changes}
            )

    def reset(self) -> None:
        for service in (self.local, self.hpc, self.cloud):
            reset(service)
            control(service, fail_status=0)

    def served(self) -> dict[str, int]:
        return {
            "local": len(ollama_requests(self.local)),
            "hpc": len(self.hpc.requests()),
            "cloud": len(self.cloud.requests()),
        }


def install_cli(
    server: OpenWebUI, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `tierwise openwebui install` as a user would (the admin's JWT unless `token`)."""
    command = [sys.executable, "-m", "tierwise", "openwebui", "install", "--url", server.url]
    return subprocess.run(
        [*command, "--token", token or server.admin_token, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    try:
        python, build_s = openwebui_python()
    except CannotBuild as exc:  # only when the script itself says this machine cannot host it
        pytest.skip(f"Open WebUI environment: {exc}")
    root = tmp_path_factory.mktemp("openwebui")
    services: list[Service] = []
    try:
        local = start_ollama_stub("local", root, [LOCAL])
        services.append(local)
        hpc = start_stub("hpc", root, [HPC])
        services.append(hpc)
        cloud = start_stub("cloud", root, [CLOUD])
        services.append(cloud)
        log = root / "openwebui.log"
        server = start_openwebui(python, root / "data", log, [hpc, cloud], [local])
        services.append(server)
        print(
            f"\n[openwebui] env {build_s:.1f} s, startup {server.startup_s:.1f} s, "
            f"RSS {server.rss_mb():.0f} MB",
            file=sys.stderr,
        )
        # The ladder's scorer is pinned to the heuristic, so the prompts below land where
        # they do whatever scorer `auto` means in this tierwise.
        config = yaml.safe_load((REPO / "tierwise/defaults/default.yaml").read_text())
        config["scoring"]["method"] = "heuristic"
        # The semantic cache (when a test turns its valve on) lives in this run's directory.
        # Short rewordings need a looser error budget than the default (README: Semantic cache).
        config["cache"] = {"directory": str(root / "answers"), "max_false_hit_rate": 0.15}
        config_path = root / "ladder.yaml"
        config_path.write_text(yaml.safe_dump(config))
        # The same ladder with the decision log on, for the telemetry test.
        config["telemetry"] = {"log": True, "path": str(root / "decisions.db")}
        (root / "ladder-logged.yaml").write_text(yaml.safe_dump(config))
        valves = {"tier_models": TIER_MODELS, "config_path": str(config_path)}
        done = install_cli(
            server,
            "--tier-models",
            TIER_MODELS,
            "--valve",
            f"config_path={config_path}",
            "--public",
        )
        assert done.returncode == 0, done.stderr
        with server.client() as admin:
            added = admin.post(
                "/api/v1/auths/add",
                json={
                    "name": "Uma",
                    "email": "uma@example.org",
                    "password": "uma-pass-123",
                    "role": "user",
                },
            )
            assert added.status_code == 200, added.text
            for model, grants in ((LOCAL, PUBLIC), (HPC, PUBLIC), (CLOUD, [])):
                granted = admin.post(
                    "/api/v1/models/model/access/update",
                    json={"id": model, "name": model, "access_grants": grants},
                )
                assert granted.status_code == 200, granted.text
        user_token = server.sign_in("uma@example.org", "uma-pass-123")
        # As the UI does after signing in: list the models. Open WebUI refreshes its model
        # list (with the access grants made above) then, and the pipe reads that list.
        with server.client(user_token) as uma:
            assert uma.get("/api/models").status_code == 200
        yield Stack(server, local, hpc, cloud, user_token, valves, root)
    finally:
        if services and isinstance(services[-1], OpenWebUI):
            print(
                f"\n[openwebui] RSS after the tests {services[-1].rss_mb():.0f} MB", file=sys.stderr
            )
        for service in reversed(services):
            service.stop()


@pytest.fixture
def owui(stack: Stack) -> Iterator[Stack]:
    """The shared stack with clean stand-ins and the installed valves restored afterwards."""
    stack.reset()
    yield stack
    restored = stack.save_valves()
    assert restored.status_code == 200, restored.text


def chat(client: httpx.Client, prompt: str, **extra: Any) -> httpx.Response:
    body = {"model": "auto", "messages": [{"role": "user", "content": prompt}], **extra}
    return client.post("/api/chat/completions", json=body)


def answer(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


def test_easy_prompt_goes_to_the_local_model(owui: Stack) -> None:
    with owui.server.client() as admin:
        text = answer(chat(admin, EASY, stream=False))
    assert text == f"[local] {EASY}"
    assert owui.served() == {"local": 1, "hpc": 0, "cloud": 0}


def test_hard_prompt_streams_from_the_cloud_model(owui: Stack) -> None:
    owui.cloud.control(token_delay_ms=40)
    try:
        pieces: list[str] = []
        arrivals: list[float] = []
        with owui.server.client() as admin:
            body = {"model": "auto", "messages": [{"role": "user", "content": HARD}]}
            with admin.stream("POST", "/api/chat/completions", json={**body, "stream": True}) as s:
                assert s.status_code == 200
                assert s.headers["content-type"].startswith("text/event-stream")
                for line in s.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    delta = json.loads(line[6:])["choices"][0]["delta"]
                    if delta.get("content"):
                        pieces.append(delta["content"])
                        arrivals.append(time.monotonic())
    finally:
        owui.cloud.control(token_delay_ms=0)
    assert "".join(pieces) == f"[cloud] {HARD}"
    assert owui.served()["cloud"] == 1 and owui.served()["local"] == 0
    # Streamed, not buffered: the words arrived spread over the stand-in's pacing.
    assert len(pieces) > 20
    assert arrivals[-1] - arrivals[0] > 0.5


def test_user_without_cloud_access_is_not_escalated(owui: Stack) -> None:
    with owui.server.client(owui.user_token) as uma:
        models = {m["id"] for m in uma.get("/api/models").json()["data"]}
        assert {"auto", LOCAL, HPC} <= models and CLOUD not in models
        refused = chat(uma, HARD, model=CLOUD, stream=False)  # the access rule is real
        assert refused.status_code in (400, 401, 403, 404), refused.text
        chat_id, message_id = new_chat(uma, HARD)
        done = chat(uma, HARD, stream=True, chat_id=chat_id, id=message_id)
        assert done.status_code == 200, done.text
        message = saved_message(uma, chat_id, message_id)
    assert message["content"] == f"[hpc] {HARD}"
    assert owui.served() == {"local": 0, "hpc": 1, "cloud": 0}
    statuses = [s["description"] for s in message["statusHistory"]]
    first = statuses[0]
    assert first.startswith(f"auto → {HPC} (hpc) · score ")
    assert "HIGH" in first and "-> cloud" in first
    assert "cloud is not permitted for your account (you may use up to hpc)" in first
    assert message["statusHistory"][-1]["done"] is True
    # The line left shown: short, says the limit, never the same entry twice.
    assert statuses[-1].startswith(f"{HPC} (hpc) · hard question, cloud not permitted · first")
    assert len(statuses) == len(set(statuses))


def test_status_shows_tier_score_and_reason(owui: Stack) -> None:
    with owui.server.client() as admin:
        chat_id, message_id = new_chat(admin, EASY)
        assert chat(admin, EASY, stream=True, chat_id=chat_id, id=message_id).status_code == 200
        message = saved_message(admin, chat_id, message_id)
    assert message["content"] == f"[local] {EASY}"
    first = message["statusHistory"][0]["description"]
    assert first.startswith(f"auto → {LOCAL} (local) · score 0.")
    assert "LOW" in first and "complexity:" in first and "-> local" in first
    last = message["statusHistory"][-1]
    assert last["done"] is True
    assert last["description"].startswith(f"{LOCAL} (local) · easy question · first token ")


def test_background_tasks_go_to_the_cheapest_tier(owui: Stack) -> None:
    with owui.server.client() as admin:
        response = admin.post(
            "/api/v1/tasks/title/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": HARD}]},
        )
    assert response.status_code == 200, response.text
    assert answer(response).startswith("[local] ")
    assert owui.served() == {"local": 1, "hpc": 0, "cloud": 0}


def test_valves_updates_take_effect(owui: Stack) -> None:
    with owui.server.client() as admin:
        assert answer(chat(admin, HARD, stream=False)).startswith("[cloud] ")
        saved = owui.save_valves(thresholds="hpc=0.9; cloud=0.95")
        assert saved.status_code == 200, saved.text
        assert answer(chat(admin, HARD, stream=False)).startswith("[local] ")
        remapped = owui.save_valves(tier_models=f"local={HPC}; cloud={CLOUD}")
        assert remapped.status_code == 200, remapped.text
        assert answer(chat(admin, EASY, stream=False)) == f"[hpc] {EASY}"


def test_unknown_model_in_mapping_is_refused_when_saved(owui: Stack) -> None:
    refused = owui.save_valves(tier_models=f"local={LOCAL}; cloud=gpt-nope")
    with owui.server.client() as admin:
        kept = admin.get("/api/v1/functions/id/auto/valves").json()
    assert refused.status_code == 400
    assert kept == owui.valves
    # Open WebUI answers a refused save generically; the reason is in its log ...
    assert "tier_models: unknown model id 'gpt-nope'; installed: " in owui.server.log_text()
    # ... and the install command says it before anything is sent.
    done = install_cli(owui.server, "--tier-models", f"local={LOCAL}; cloud=gpt-nope")
    assert done.returncode == 1
    assert "unknown model id 'gpt-nope'" in done.stderr and CLOUD in done.stderr


def test_install_takes_an_admin_api_key_and_turns_builtin_tools_off(owui: Stack) -> None:
    with owui.server.client() as admin:
        key = admin.post("/api/v1/auths/api_key").json()["api_key"]
        assert key.startswith("sk-")
        config_path = owui.valves["config_path"]
        done = install_cli(
            owui.server,
            "--tier-models",
            TIER_MODELS,
            "--valve",
            f"config_path={config_path}",
            token=key,
        )
        assert done.returncode == 0, done.stderr
        assert "updated function 'auto'" in done.stdout and "built-in tools: off" in done.stdout
        auto = admin.get("/api/v1/models/model", params={"id": "auto"}).json()
        assert auto["meta"]["capabilities"]["builtin_tools"] is False
        # Open WebUI's own model list (what the chat middleware reads) has it too.
        listed = {m["id"]: m for m in admin.get("/api/models").json()["data"]}
        assert listed["auto"]["info"]["meta"]["capabilities"]["builtin_tools"] is False
    with owui.server.client(owui.user_token) as uma:
        key = uma.post("/api/v1/auths/api_key")
    if key.status_code == 200:  # ordinary users may have keys when permitted
        refused = install_cli(owui.server, token=key.json()["api_key"])
        assert refused.returncode == 1 and "not an admin" in refused.stderr


def test_a_refused_install_changes_nothing_and_prints_the_reason(owui: Stack) -> None:
    with owui.server.client() as admin:
        before = admin.get("/api/v1/functions/id/auto").json()
        for args, reason in (
            (("--thresholds", "hpc=0.9; cloud=0.5"), "lowest scores must rise"),
            (("--tier-models", f"gpu={LOCAL}"), "unknown tier 'gpu'"),
            (("--tier-models", f"local={LOCAL}; cloud=gpt-nope"), "unknown model id 'gpt-nope'"),
        ):
            done = install_cli(
                owui.server, *args, "--valve", f"config_path={owui.valves['config_path']}"
            )
            assert done.returncode == 1 and reason in done.stderr, done.stderr
        after = admin.get("/api/v1/functions/id/auto").json()
        valves = admin.get("/api/v1/functions/id/auto/valves").json()
    assert after["updated_at"] == before["updated_at"] and after["is_active"] is True
    assert valves == owui.valves


def test_failing_tier_falls_back_to_the_next_one_the_user_may_use(owui: Stack) -> None:
    owui.hpc.control(fail_status=500)
    with owui.server.client(owui.user_token) as uma:
        text = streamed_text(uma, HARD)
    assert text == f"[local] {HARD}"
    assert owui.served() == {"local": 1, "hpc": 1, "cloud": 0}


def test_pipe_error_reaches_the_user_as_words(owui: Stack) -> None:
    owui.hpc.control(fail_status=500)
    control(owui.local, fail_status=503)
    with owui.server.client(owui.user_token) as uma:
        text = answer(chat(uma, HARD, stream=False))
    assert text.startswith("tierwise could not answer: every tier this chat could use failed")
    assert "hpc: HTTP 500: hpc failing on purpose" in text
    assert "local:" in text
    assert owui.served()["cloud"] == 0


def test_one_users_bad_requests_are_theirs_alone(owui: Stack) -> None:
    control(owui.local, fail_status=400)  # the upstream refuses the requests as malformed
    with owui.server.client(owui.user_token) as uma:
        for _ in range(4):  # more than the breaker's max_failures (3)
            text = answer(chat(uma, EASY, stream=False))
            assert text.startswith("tierwise could not answer: the model refused this request")
    # Not retried on dearer tiers ...
    assert owui.served() == {"local": 4, "hpc": 0, "cloud": 0}
    control(owui.local, fail_status=0)
    # ... and no breaker opened: the next caller's easy chat is served locally.
    with owui.server.client() as admin:
        assert answer(chat(admin, EASY, stream=False)) == f"[local] {EASY}"


def test_automatic_mapping_puts_ollama_models_in_the_cheapest_tier(owui: Stack) -> None:
    # The built-in ladder names models 'local', 'hpc', 'cloud', none installed here; with
    # no tier_models only the Ollama model maps, to the cheapest tier.
    saved = owui.save_valves(tier_models="", config_path="")
    assert saved.status_code == 200, saved.text
    with owui.server.client() as admin:
        assert answer(chat(admin, HARD, stream=False)) == f"[local] {HARD}"


def test_paraphrase_is_served_from_the_cache(owui: Stack) -> None:
    saved = owui.save_valves(semantic_cache=True)
    assert saved.status_code == 200, saved.text
    with owui.server.client() as admin:
        first = answer(chat(admin, "What is the capital of France?", stream=False))
        again = answer(chat(admin, "Tell me the capital city of France.", stream=False))
        streamed = streamed_text(admin, "Which city is the capital of France?")
        chat_id, message_id = new_chat(admin, "whats the capital of france")
        done = chat(
            admin, "whats the capital of france", stream=True, chat_id=chat_id, id=message_id
        )
        assert done.status_code == 200, done.text
        message = saved_message(admin, chat_id, message_id)
    assert first == "[local] What is the capital of France?"
    assert again == first and streamed == first and message["content"] == first
    # Only the first question reached a model: the stand-in saw one request.
    assert owui.served() == {"local": 1, "hpc": 0, "cloud": 0}
    (entry,) = message["statusHistory"]  # one entry for a cache hit, not two
    status = entry["description"]
    assert status.startswith(f"cached answer from {LOCAL} (local) · similarity 0.9")
    assert "LOW" in status and entry["done"] is True


def test_a_cached_answer_is_not_served_to_another_user(owui: Stack) -> None:
    assert owui.save_valves(semantic_cache=True).status_code == 200
    question = "What is the capital of Italy?"
    with owui.server.client() as admin:
        assert answer(chat(admin, question, stream=False)) == f"[local] {question}"
        assert answer(chat(admin, question, stream=False)) == f"[local] {question}"
    assert owui.served()["local"] == 1  # the admin's repeat came from the cache
    with owui.server.client(owui.user_token) as uma:
        assert streamed_text(uma, question) == f"[local] {question}"
        assert owui.served()["local"] == 2  # not the admin's entry: Uma's own call
        assert streamed_text(uma, "Tell me the capital city of Italy.") == f"[local] {question}"
    assert owui.served() == {"local": 2, "hpc": 0, "cloud": 0}  # ... and now Uma's entry


def test_a_long_chat_is_summarized_and_stays_on_the_local_tier(owui: Stack) -> None:
    assert owui.save_valves(summarize=True).status_code == 200
    history = long_history()
    with owui.server.client(owui.user_token) as uma:
        chat_id, message_id = new_chat(uma, EASY)
        body = {"model": "auto", "messages": [*history, {"role": "user", "content": EASY}]}
        done = uma.post(
            "/api/chat/completions",
            json={**body, "stream": True, "chat_id": chat_id, "id": message_id},
        )
        assert done.status_code == 200, done.text
        message = saved_message(uma, chat_id, message_id)
    assert message["content"] == f"[local] {EASY}"
    assert owui.served() == {"local": 2, "hpc": 0, "cloud": 0}
    summarizer_call, chat_call = (r["body"] for r in ollama_requests(owui.local))
    # The summarizer ran on the local model, as Uma, with the old turns as a transcript ...
    assert summarizer_call["model"] == LOCAL and summarizer_call["stream"] is False
    assert "New messages to fold in:" in summarizer_call["messages"][-1]["content"]
    # ... and the local model got the summary in place of the old turns, then the question.
    sent = chat_call["messages"]
    assert sent[0]["role"] == "system" and sent[0]["content"].startswith("[tierwise summary]")
    assert "[local] Summary so far:" in sent[0]["content"]  # the stand-in's "summary"
    assert sent[-1] == {"role": "user", "content": EASY}
    assert len(sent) < len(body["messages"])
    statuses = [s["description"] for s in message["statusHistory"]]
    assert any(s.startswith("summarized ") and "earlier messages for local" in s for s in statuses)
    assert "summarize and stay on local" in statuses[0]


def test_telemetry_rows_are_written_when_the_log_is_on(owui: Stack) -> None:
    logged = str(owui.root / "ladder-logged.yaml")
    assert owui.save_valves(config_path=logged, semantic_cache=True).status_code == 200
    owui.cloud.control(fail_status=500)
    with owui.server.client() as admin:
        streamed_text(admin, "What is the capital of Spain?")
        streamed_text(admin, "Tell me the capital city of Spain.")
        assert not streamed_text(admin, HARD).startswith("[cloud]")
    with owui.server.client(owui.user_token) as uma:
        assert answer(chat(uma, EASY, stream=False)) == f"[local] {EASY}"
    first, hit, fallback, other = decision_rows(owui.root / "decisions.db", 4)
    assert first["host"] == "openwebui" and first["tier"] == "local" and first["ok"] == 1
    assert first["model"] == LOCAL and first["cache_hit"] == 0 and first["fallback"] == 0
    assert first["ttft_ms"] is not None and first["latency_ms"] >= first["ttft_ms"]
    assert first["tokens_out"] > 0 and first["decide_ms"] is not None
    assert hit["tier"] == "cache" and hit["cache_hit"] == 1 and hit["routed_tier"] == "local"
    assert hit["reason"] == "cache: hit" and hit["scope"] == first["scope"]
    # The cloud stand-in failed: the next tier of the fallback chain served, and it says so.
    assert fallback["routed_tier"] == "cloud" and fallback["tier"] in ("hpc", "local")
    assert fallback["fallback"] == 1 and fallback["ok"] == 1
    assert other["tier"] == "local" and other["ttft_ms"] is None  # not streamed
    assert other["scope"] != first["scope"]  # another user, hashed


def test_a_browser_chat_goes_local_and_its_repeat_in_a_new_chat_is_a_cache_hit(
    owui: Stack, tmp_path: Path
) -> None:
    """As people use it: Uma signs in with a real browser, picks `auto`, asks an easy
    question, then asks it again in a new chat. The web UI attaches Open WebUI's built-in
    tools unless `auto` has them off, which `tierwise openwebui install` does by default."""
    if binaries() is None:
        pytest.fail("chromium and chromedriver are missing: run scripts/system-deps.sh")
    assert owui.save_valves(semantic_cache=True).status_code == 200
    question = "What is the capital of Portugal?"
    answer_text = f"[local] {question}"
    with chromium(tmp_path / "profile") as driver:
        sign_in(driver, owui.server.url, "uma@example.org", "uma-pass-123")
        first = ask_in_new_chat(driver, owui.server.url, question, answer_text)
        second = ask_in_new_chat(driver, owui.server.url, question, answer_text)
        shot = tmp_path / "openwebui-browser.png"
        driver.save_screenshot(str(shot))
    timings = [
        line for page in (first, second) for line in page.splitlines() if "first token" in line
    ]
    print(f"\n[openwebui] browser: {timings}; screenshot {shot}", file=sys.stderr)
    # The local stand-in's own log: the question reached a model once, without tools.
    asked = [
        r["body"]
        for r in ollama_requests(owui.local)
        if r["body"]["messages"][-1].get("content") == question
    ]
    assert len(asked) == 1, asked
    assert not asked[0].get("tools")
    assert owui.served()["hpc"] == 0 and owui.served()["cloud"] == 0
    # What the user reads above each reply (the collapsed status line).
    assert f"{LOCAL} (local) · easy question · first token " in first
    assert f"cached answer from {LOCAL} (local) · exact repeat · first token " in second


def test_with_builtin_tools_kept_a_browser_chat_goes_where_they_fit(
    owui: Stack, tmp_path: Path
) -> None:
    """An admin who keeps the built-in tools (`--builtin-tools`): the web UI's chats carry
    them, go to a tier whose window holds them, and the status says why."""
    done = install_cli(owui.server, "--builtin-tools")
    assert done.returncode == 0 and "built-in tools: kept on" in done.stdout, done.stderr
    question = "What is the capital of Ireland?"
    try:
        with chromium(tmp_path / "profile") as driver:
            sign_in(driver, owui.server.url, "uma@example.org", "uma-pass-123")
            page = ask_in_new_chat(driver, owui.server.url, question, f"[hpc] {question}")
    finally:
        restored = install_cli(owui.server)  # built-in tools off again for the other tests
        assert restored.returncode == 0, restored.stderr
    asked = [r["body"] for r in owui.hpc.requests() if last_user_text(r["body"]) == question]
    assert len(asked) == 1 and len(asked[0]["tools"]) > 10  # Open WebUI's built-in tools
    assert not [r for r in ollama_requests(owui.local) if last_user_text(r["body"]) == question]
    assert f"{HPC} (hpc) · long prompt (" in page


def test_a_thumbs_down_in_the_browser_reaches_the_decision_log(owui: Stack, tmp_path: Path) -> None:
    """Uma rates an `auto` answer thumbs-down in the web UI: the ratings event function
    stores it beside the answer's decision, under Uma's scope; her Regenerate adds a weak
    "not good" for the same answer. The admin then tries to rate
    Uma's answer through Open WebUI's API: nothing of it is stored, while the admin's
    rating of their own answer is."""
    if binaries() is None:
        pytest.fail("chromium and chromedriver are missing: run scripts/system-deps.sh")

    from openwebui_pipe.ratings import RETRY_S
    from tierwise.request import Scope

    log = owui.root / "decisions.db"
    assert owui.save_valves(config_path=str(owui.root / "ladder-logged.yaml")).status_code == 200
    question = "What is the capital of Austria?"
    with chromium(tmp_path / "profile") as driver:
        sign_in(driver, owui.server.url, "uma@example.org", "uma-pass-123")
        ask_in_new_chat(driver, owui.server.url, question, f"[local] {question}")
        chat_id = driver.current_url.rstrip("/").rsplit("/c/", 1)[1]
        click_last(driver, BAD_RESPONSE)
        with owui.server.client(owui.user_token) as uma:
            uma_id = uma.get("/api/v1/auths/").json()["id"]
            history = uma.get(f"/api/v1/chats/{chat_id}").json()["chat"]["history"]
        answer_id = f"owui:{chat_id}:{history['currentId']}"
        (rated,) = outcome_rows(log, answer_id)
        # Then Uma asks for another answer: a weak "not good" for the one replaced.
        click_last(driver, REGENERATE)  # opens Open WebUI's regenerate menu
        click_last(driver, TRY_AGAIN, by="xpath")
        rated, regenerated = outcome_rows(log, answer_id, count=2)
    uma_scope = Scope(user=uma_id).key()
    assert rated["source"] == "rating" and rated["value"] == 0.0
    assert rated["scope"] == uma_scope and rated["tier"] == "local"
    assert rated["decision_scope"] == uma_scope  # the answer's own decision row
    assert regenerated["source"] == "regenerate" and regenerated["value"] == 0.25
    assert regenerated["scope"] == uma_scope
    asked = [r for r in ollama_requests(owui.local) if last_user_text(r["body"]) == question]
    assert len(asked) == 2  # the question, then its regeneration (besides titles and tags)
    # The admin rates Uma's answer (thumbs up) and, after it, one of their own answers.
    with owui.server.client() as admin:
        own_chat, own_message = new_chat(admin, EASY)
        done = chat(admin, EASY, stream=True, chat_id=own_chat, id=own_message)
        assert done.status_code == 200, done.text
        admin_id = admin.get("/api/v1/auths/").json()["id"]
        for target_chat, message in ((chat_id, history["currentId"]), (own_chat, own_message)):
            feedback = {
                "type": "rating",
                "data": {"rating": 1, "model_id": "auto"},
                "meta": {"chat_id": target_chat, "message_id": message},
            }
            sent = admin.post("/api/v1/evaluations/feedback", json=feedback)
            assert sent.status_code == 200, sent.text
    (own,) = outcome_rows(log, f"owui:{own_chat}:{own_message}")
    assert own["value"] == 1.0 and own["scope"] == Scope(user=admin_id).key()
    time.sleep(2 * RETRY_S)  # the refused rating's one retry has run by now
    stored = [(r["source"], r["value"]) for r in outcome_rows(log, answer_id)]
    assert stored == [("rating", 0.0), ("regenerate", 0.25)]  # nothing of the admin's


BAD_RESPONSE = "button[aria-label='Bad Response']"
REGENERATE = "button[aria-label='Regenerate']"
TRY_AGAIN = "//*[normalize-space(text())='Try Again']"


def click_last(driver: Any, selector: str, by: str = "css selector") -> None:
    """Click the last element matching `selector` as a user would, once nothing covers it
    (a tooltip or the rating's comment panel may, for a moment)."""
    from selenium.common.exceptions import ElementClickInterceptedException

    def clicked(d: Any) -> bool:
        found = d.find_elements(by, selector)
        if not found:
            return False
        d.execute_script("arguments[0].scrollIntoView({block: 'center'})", found[-1])
        try:
            found[-1].click()
        except ElementClickInterceptedException:
            return False
        return True

    wait_for(driver, clicked, timeout_s=60)


def outcome_rows(
    path: Path, request_id: str, count: int = 1, timeout_s: float = 60
) -> list[dict[str, Any]]:
    """The outcomes stored for one answer, each with its decision's tier and scope, once
    there are at least `count`."""
    query = (
        "SELECT o.source, o.value, o.scope, r.tier, r.scope AS decision_scope FROM outcomes o "
        "JOIN requests r ON r.request_id = o.request_id WHERE o.request_id = ? ORDER BY o.id"
    )
    return logged_rows(path, query, (request_id,), count, timeout_s)


def last_user_text(body: dict[str, Any]) -> Any:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    return users[-1].get("content") if users else None


def test_cache_hit_vs_miss_end_to_end(owui: Stack) -> None:
    """Figures for the README (printed, never asserted): the same questions through
    /api/chat/completions, first a miss (lookup, the local model, store), then a hit."""
    assert owui.save_valves(semantic_cache=True).status_code == 200
    countries = ["Chile", "Kenya", "Norway", "Peru", "Ghana", "Nepal", "Cuba", "Laos", "Oman"]
    questions = [f"What is the capital of {c}?" for c in countries]
    took: dict[str, list[float]] = {"miss": [], "hit": []}
    with owui.server.client() as admin:
        for kind in ("miss", "hit"):
            for question in questions:
                started = time.perf_counter()
                assert answer(chat(admin, question, stream=False)) == f"[local] {question}"
                took[kind].append((time.perf_counter() - started) * 1000)
    assert owui.served() == {"local": len(questions), "hpc": 0, "cloud": 0}  # hits: no model
    p50 = {kind: sorted(ms)[len(ms) // 2] for kind, ms in took.items()}
    print(
        f"\n[openwebui] end to end, {len(questions)} questions, not streamed: "
        f"miss p50 {p50['miss']:.0f} ms, hit p50 {p50['hit']:.0f} ms",
        file=sys.stderr,
    )


def sign_in(driver: Any, url: str, email: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/auth")
    wait_for(driver, lambda d: d.find_elements(By.ID, "email"))
    driver.find_element(By.ID, "email").send_keys(email)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "chat-input"))


def ask_in_new_chat(driver: Any, url: str, question: str, answer_text: str) -> str:
    """Open a new chat with `auto` picked, send the question, wait for the answer and its
    finished status; returns the page's text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(f"{url}/?models=auto")  # the web UI's own link to a new chat with a model
    box = wait_for(driver, lambda d: d.find_elements(By.ID, "chat-input"))[0]
    box.click()
    box.send_keys(question)
    box.send_keys(Keys.ENTER)

    def finished(d: Any) -> str | None:
        text = str(d.find_element(By.TAG_NAME, "body").text)
        return text if answer_text in text and "first token" in text else None

    return str(wait_for(driver, finished))


def wait_for(driver: Any, condition: Any, timeout_s: float = 180) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.25).until(condition)


def long_history(turns: int = 12) -> list[dict[str, str]]:
    """Earlier turns far beyond the local tier's window (about 23k tokens), varied words."""
    rng = random.Random(7)
    messages = []
    for turn in range(turns):
        text = " ".join(
            f"Node {rng.randrange(10**5)} logged {rng.randrange(10**4)} events." for _ in range(150)
        )
        messages.append({"role": "user", "content": f"Here are the logs of part {turn}: {text}"})
        messages.append({"role": "assistant", "content": f"Noted part {turn}: {text[:2000]}"})
    return messages


def decision_rows(path: Path, count: int, timeout_s: float = 20) -> list[dict[str, Any]]:
    """The decision log's rows, oldest first, once `count` of them are written."""
    return logged_rows(path, "SELECT * FROM requests ORDER BY ts", (), count, timeout_s)


def logged_rows(
    path: Path, query: str, params: tuple[Any, ...], count: int, timeout_s: float
) -> list[dict[str, Any]]:
    """The query's rows from the decision log, once there are at least `count` of them."""
    deadline = time.monotonic() + timeout_s
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if path.exists():
            with sqlite3.connect(path) as conn:
                conn.row_factory = sqlite3.Row
                try:
                    rows = [dict(r) for r in conn.execute(query, params)]
                except sqlite3.OperationalError:  # the writer has not made the tables yet
                    rows = []
            if len(rows) >= count:
                return rows
        time.sleep(0.2)
    raise AssertionError(f"{len(rows)} rows of {query!r} after {timeout_s}s, expected {count}")


def streamed_text(client: httpx.Client, prompt: str) -> str:
    body = {"model": "auto", "messages": [{"role": "user", "content": prompt}], "stream": True}
    text = []
    with client.stream("POST", "/api/chat/completions", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                text.append(choices[0].get("delta", {}).get("content") or "")
    return "".join(text)


def new_chat(client: httpx.Client, prompt: str) -> tuple[str, str]:
    """A saved chat with the user's message and an empty assistant message, as the UI makes."""
    user_id, reply_id, now = str(uuid.uuid4()), str(uuid.uuid4()), int(time.time())
    history = {
        "currentId": reply_id,
        "messages": {
            user_id: {
                "id": user_id,
                "parentId": None,
                "childrenIds": [reply_id],
                "role": "user",
                "content": prompt,
                "timestamp": now,
            },
            reply_id: {
                "id": reply_id,
                "parentId": user_id,
                "childrenIds": [],
                "role": "assistant",
                "content": "",
                "model": "auto",
                "timestamp": now,
            },
        },
    }
    body = {"chat": {"title": "t", "models": ["auto"], "history": history, "messages": []}}
    created = client.post("/api/v1/chats/new", json=body)
    assert created.status_code == 200, created.text
    return str(created.json()["id"]), reply_id


def saved_message(client: httpx.Client, chat_id: str, message_id: str) -> dict[str, Any]:
    """The assistant message as Open WebUI saved it (content, statusHistory)."""
    deadline = time.monotonic() + 20
    while True:
        chat_data = client.get(f"/api/v1/chats/{chat_id}").json()["chat"]
        message = dict(chat_data["history"]["messages"][message_id])
        if message.get("content") or time.monotonic() > deadline:
            return message
        time.sleep(0.2)

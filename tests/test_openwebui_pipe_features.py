"""The Open WebUI pipe's semantic cache, summarization and telemetry, without Open WebUI.

The pipe's few calls into Open WebUI (who the user is, which models exist and who may use
them, and calling a model) are replaced by a small in-process stand-in; everything else is
the real pipe with the real core: routing, the semantic cache with the real encoder on disk,
the summarizer's fitting, and the decision log in SQLite.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from starlette.responses import StreamingResponse

from openwebui_pipe import answers, cache_replay, host, status, summarizer
from openwebui_pipe import auto_router as ar
from openwebui_pipe.ladder import SetupError
from tests.conftest import REPO
from tierwise.cache import CacheHit, SemanticCache
from tierwise.config import load_config
from tierwise.request import ChatRequest
from tierwise.scoring import judge_prompt
from tierwise.scoring.factory import build_scorer
from tierwise.scoring.judge import nearest_edge

LOCAL, HPC, CLOUD = "llama3.2:1b", "qwen-hpc", "gpt-4o"
INSTALLED = [
    {"id": LOCAL, "owned_by": "ollama"},
    {"id": HPC, "owned_by": "openai"},
    {"id": CLOUD, "owned_by": "openai"},
]
EASY = "What is the capital of France?"
PARAPHRASE = "Tell me the capital city of France."
HARD = (
    "Prove that there are infinitely many primes p such that p = 4k+3, and derive the "
    "asymptotic density using Dirichlet's theorem; then compare with a rigorous analysis of "
    "the error term."
)
SUMMARY = "The user shared logs of many nodes and their event counts; nothing is open."


@dataclass
class User:
    id: str
    role: str = "user"


@dataclass
class FakeOpenWebUI:
    """Answers model calls like the test stand-ins: '[<model>] <last user message>'."""

    access: dict[str, set[str]]
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)
    refusing: set[str] = field(default_factory=set)  # answer HTTP 400 (a bad request)
    error_body: set[str] = field(default_factory=set)  # HTTP 200 with an error body
    finish_reason: str = "stop"
    tool_call: bool = False
    judge_reply: str = "9"  # what the LLM judge's model answers
    chunk_bytes: int = 7  # the stream is cut into pieces this long, lines split anywhere

    def chats(self) -> list[dict[str, Any]]:
        return [f for _, f in self.calls if not is_summarizer_call(f) and not is_judge_call(f)]

    def judge_calls(self) -> list[tuple[str, dict[str, Any]]]:
        return [(user, f) for user, f in self.calls if is_judge_call(f)]

    def summarizer_calls(self) -> list[dict[str, Any]]:
        return [f for _, f in self.calls if is_summarizer_call(f)]

    async def call_model(self, request: Any, form: dict[str, Any], user: User) -> host.Attempt:
        self.calls.append((user.id, form))
        model = form["model"]
        assert model in self.access[user.id], "the pipe called a model this user may not use"
        if model in self.failing:
            return host.Attempt(False, error=f"HTTP 500: {model} failing on purpose", status=500)
        if model in self.refusing and form.get("temperature", 0) > 2:
            return host.Attempt(False, error="HTTP 400: temperature must be <= 2", status=400)
        if model in self.error_body:  # what _call_model makes of Open WebUI's error bodies
            return host.Attempt(False, error=f"{model}: model not loaded")
        if is_summarizer_call(form):
            text = SUMMARY
        elif is_judge_call(form):
            text = self.judge_reply
        else:
            text = f"[{model}] {form['messages'][-1]['content']}"
        usage = {"prompt_tokens": 11, "completion_tokens": len(text.split())}
        if form.get("stream"):
            return host.Attempt(True, self.stream(model, text, usage))
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if self.tool_call:
            message = {"role": "assistant", "content": None, "tool_calls": [{"id": "t"}]}
        choice = {"index": 0, "message": message, "finish_reason": self.finish_reason}
        return host.Attempt(True, {"model": model, "choices": [choice], "usage": usage})

    def stream(self, model: str, text: str, usage: dict[str, int]) -> StreamingResponse:
        events = []
        for word in text.split(" "):
            events.append({"model": model, "choices": [{"index": 0, "delta": {"content": word}}]})
            events[-1]["choices"][0]["delta"]["content"] = word + " "
        events[-1]["choices"][0]["delta"]["content"] = text.split(" ")[-1]
        if self.tool_call:
            events.append({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0}]}}]})
        finish = {"index": 0, "delta": {}, "finish_reason": self.finish_reason}
        events.append({"model": model, "choices": [finish], "usage": usage})
        data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        raw = data.encode()
        size = self.chunk_bytes

        async def body() -> AsyncIterator[bytes]:
            for i in range(0, len(raw), size):
                yield raw[i : i + size]

        return StreamingResponse(body(), media_type="text/event-stream")


def is_summarizer_call(form: dict[str, Any]) -> bool:
    return str(form["messages"][0].get("content", "")).startswith("You keep a running summary")


def is_judge_call(form: dict[str, Any]) -> bool:
    return str(form["messages"][-1].get("content", "")).endswith(judge_prompt.ASK)


@pytest.fixture
def ladder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The built-in ladder, heuristic scorer, with the cache and decision log in tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    config = yaml.safe_load((REPO / "tierwise/defaults/default.yaml").read_text())
    config["scoring"]["method"] = "heuristic"
    # Short rewordings need a looser error budget than the default (README: Semantic cache).
    config["cache"] = {"directory": str(tmp_path / "answers"), "max_false_hit_rate": 0.15}
    config["telemetry"] = {"log": True, "path": str(tmp_path / "decisions.db")}
    path = tmp_path / "ladder.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def owui(monkeypatch: pytest.MonkeyPatch) -> FakeOpenWebUI:
    everything = {LOCAL, HPC, CLOUD}
    fake = FakeOpenWebUI(access={"ada": everything, "uma": {LOCAL, HPC}})

    async def user(raw: dict[str, Any] | None) -> User:
        return User(str((raw or {})["id"]))

    async def installed(request: Any, user: User, own_id: str) -> list[dict[str, Any]]:
        return list(INSTALLED)

    async def allowed(models: list[dict[str, Any]], user: User) -> set[str]:
        return set(fake.access[user.id])

    monkeypatch.setattr(host, "user_of", user)
    monkeypatch.setattr(host, "installed_models", installed)
    monkeypatch.setattr(host, "allowed_ids", allowed)
    monkeypatch.setattr(host, "call_model", fake.call_model)
    return fake


def make_pipe(ladder: Path, **valves: Any) -> ar.Pipe:
    pipe = ar.Pipe()
    pipe.valves = ar.Pipe.Valves(
        tier_models=f"local={LOCAL}; hpc={HPC}; cloud={CLOUD}", config_path=str(ladder), **valves
    )
    return pipe


@dataclass
class Reply:
    text: str
    statuses: list[dict[str, Any]]
    streamed: bool
    raw: Any = None


def ask(
    pipe: ar.Pipe,
    prompt: str | list[dict[str, Any]],
    user: str = "ada",
    stream: bool = False,
    task: str | None = None,
    stop_after: int | None = None,
) -> Reply:
    """One chat through the pipe, read to the end (or stopped after `stop_after` chunks)."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    body = {"model": "auto", "messages": messages, "stream": stream}
    statuses: list[dict[str, Any]] = []

    async def emitter(event: dict[str, Any]) -> None:
        statuses.append(event["data"])

    async def run() -> Reply:
        result = await pipe.pipe(
            body, __user__={"id": user}, __event_emitter__=emitter, __task__=task
        )
        if isinstance(result, StreamingResponse):
            tap = answers.StreamTap()
            seen = 0
            iterator = result.body_iterator
            async for chunk in iterator:
                tap.feed(chunk)
                seen += 1
                if stop_after is not None and seen >= stop_after:
                    await iterator.aclose()  # type: ignore[attr-defined]
                    break
            tap.close()
            return Reply(tap.text, statuses, True, tap)
        if isinstance(result, str):
            return Reply(result, statuses, False, result)
        return Reply(str(result["choices"][0]["message"]["content"]), statuses, False, result)

    return asyncio.run(run())


def rows(pipe: ar.Pipe, db: Path) -> list[dict[str, Any]]:
    assert (
        pipe.router.recorder._telemetry is not None
        and pipe.router.recorder._telemetry[1].log is not None
    )
    assert pipe.router.recorder._telemetry[1].log.flush()
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM requests ORDER BY id")]


def plugin_errors(where: str) -> float:
    labels = {"host": "openwebui", "where": where}
    return REGISTRY.get_sample_value("tierwise_plugin_errors_total", labels) or 0.0


# -- reading streams and replaying answers ---------------------------------------------------


def test_the_tap_reads_text_usage_and_finish_from_any_chunking() -> None:
    fake = FakeOpenWebUI(access={})
    for size in (1, 5, 64, 10_000):
        fake.chunk_bytes = size
        response = fake.stream("m", "[m] hello there world", {"prompt_tokens": 3})

        async def read(
            response: StreamingResponse = response, size: int = size
        ) -> answers.StreamTap:
            tap = answers.StreamTap()
            async for chunk in response.body_iterator:
                tap.feed(chunk if size % 2 else bytes(chunk).decode())  # bytes or str
            tap.close()
            return tap

        tap = asyncio.run(read())
        assert tap.text == "[m] hello there world" and tap.done
        assert tap.answer() == {
            "content": "[m] hello there world",
            "finish_reason": "stop",
            "model": "m",
            "usage": {"prompt_tokens": 3},
        }


def test_the_tap_refuses_answers_unfit_to_cache() -> None:
    def tap_of(*events: dict[str, Any], tail: str = "data: [DONE]\n\n") -> answers.StreamTap:
        tap = answers.StreamTap()
        tap.feed("".join(f"data: {json.dumps(e)}\n\n" for e in events) + tail)
        tap.close()
        return tap

    def delta(content: Any = None, finish: str | None = None, index: int = 0, **more: Any) -> Any:
        body = {"content": content, **more} if content is not None else dict(more)
        return {"choices": [{"index": index, "delta": body, "finish_reason": finish}]}

    ok = tap_of(delta("Paris."), delta(finish="stop"))
    assert ok.answer() is not None
    assert tap_of(delta("Par"), delta(finish="length")).answer() is None  # cut off
    assert tap_of(delta("Par")).answer() is None  # no finish reason: not known to be whole
    assert tap_of(delta(tool_calls=[{"index": 0}]), delta(finish="stop")).answer() is None
    assert tap_of(delta("a"), delta("b", index=1), delta(finish="stop")).answer() is None
    assert tap_of(delta("   "), delta(finish="stop")).answer() is None
    failed = tap_of(delta("Par"), {"error": {"message": "upstream died"}})
    assert failed.answer() is None and failed.error == "upstream died"
    # A last line without its newline still counts; junk lines make it uncacheable.
    assert tap_of(delta("Paris."), tail=f"data: {json.dumps(delta(finish='stop'))}").answer()
    assert tap_of(delta("Paris."), delta(finish="stop"), tail="data: {oops\n\n").answer() is None


def test_answers_of_plain_replies_and_what_is_not_stored() -> None:
    def body(message: dict[str, Any], finish: str = "stop", **more: Any) -> dict[str, Any]:
        return {"model": "m", "choices": [{"message": message, "finish_reason": finish}], **more}

    plain = body({"content": "Paris."}, usage={"prompt_tokens": 4, "completion_tokens": 2})
    assert answers.answer_of(plain) == {
        "content": "Paris.",
        "finish_reason": "stop",
        "model": "m",
        "usage": {"prompt_tokens": 4, "completion_tokens": 2},
    }
    assert answers.answer_of(body({"content": "Par"}, "length")) is None
    assert answers.answer_of(body({"content": None, "tool_calls": [{"id": "x"}]})) is None
    assert answers.answer_of(body({"content": ""})) is None
    assert answers.answer_of({"error": {"message": "no"}}) is None
    assert answers.answer_of("tierwise could not answer: ...") is None
    two = {"choices": [{"message": {"content": "a"}}, {"message": {"content": "b"}}]}
    assert answers.answer_of(two) is None


def test_a_cached_answer_replays_as_a_stream_or_one_body() -> None:
    answer = {
        "content": "Paris is the capital of France, on the Seine, since the year 987 or so.",
        "finish_reason": "stop",
        "model": LOCAL,
        "usage": {"prompt_tokens": 9, "completion_tokens": 17},
    }
    events = answers.replay_events(answer, LOCAL)
    assert events[-1] == "data: [DONE]\n\n" and len(events) > 3  # a few words per chunk
    tap = answers.StreamTap()
    for event in events:
        tap.feed(event)
    # The replay reads back as the answer it came from (usage gains its total).
    assert tap.answer() == {**answer, "usage": {**answer["usage"], "total_tokens": 26}}
    body = answers.completion_body(answer, LOCAL)
    assert body["object"] == "chat.completion" and body["model"] == LOCAL
    assert body["choices"][0]["message"] == {"role": "assistant", "content": answer["content"]}
    assert body["usage"] == {"prompt_tokens": 9, "completion_tokens": 17, "total_tokens": 26}


def test_status_lines_for_a_cache_hit(ladder: Path) -> None:
    pipe = make_pipe(ladder)
    decision = pipe.router.router(pipe.router.setup(pipe.valves, INSTALLED).config).decide_text(
        EASY
    )
    similar = CacheHit("e1", {"content": "x"}, "local", 0.934, exact=False)
    line = status.cache_status(decision, similar, LOCAL, 3.2)
    assert line.startswith(
        f"cached answer from {LOCAL} (local) · similarity 0.93 · first token 3 ms"
    )
    assert line.endswith(f"score {decision.score:.2f} LOW")
    exact = CacheHit("e1", {"content": "x"}, "hpc", 1.0, exact=True)
    assert "(hpc) · exact repeat · score" in status.cache_status(decision, exact, HPC, None)


# -- the semantic cache in the pipe -----------------------------------------------------------


def test_a_paraphrase_is_answered_from_the_cache_streamed_or_not(
    ladder: Path, owui: FakeOpenWebUI
) -> None:
    pipe = make_pipe(ladder, semantic_cache=True)
    first = ask(pipe, EASY)
    assert first.text == f"[{LOCAL}] {EASY}" and len(owui.calls) == 1
    again = ask(pipe, PARAPHRASE)
    streamed = ask(pipe, "Which city is the capital of France?", stream=True)
    assert again.text == first.text and streamed.text == first.text
    assert len(owui.calls) == 1  # no model was called for either
    assert again.raw["object"] == "chat.completion"
    assert streamed.raw.done and streamed.raw.finish_reason == "stop"
    for reply in (again, streamed):
        # One status entry, not two: the cache's line, marked done.
        assert len(reply.statuses) == 1 and reply.statuses[-1]["done"] is True
        assert reply.statuses[-1]["description"].startswith(
            f"cached answer from {LOCAL} (local) · similarity 0.9"
        )


def test_streamed_answers_are_stored_only_when_complete(ladder: Path, owui: FakeOpenWebUI) -> None:
    pipe = make_pipe(ladder, semantic_cache=True)
    owui.finish_reason = "length"  # cut off: relayed, not stored
    assert ask(pipe, EASY, stream=True).text == f"[{LOCAL}] {EASY}"
    owui.finish_reason = "stop"
    stopped = ask(pipe, EASY, stream=True, stop_after=3)  # the user pressed Stop
    assert stopped.text != f"[{LOCAL}] {EASY}"
    owui.tool_call = True  # tool calls are never stored
    ask(pipe, EASY, stream=True)
    owui.tool_call = False
    assert len(owui.calls) == 3
    assert ask(pipe, EASY, stream=True).text == f"[{LOCAL}] {EASY}"  # complete: stored
    assert ask(pipe, EASY).text == f"[{LOCAL}] {EASY}"
    assert len(owui.calls) == 4


def test_cached_answers_stay_with_their_user(ladder: Path, owui: FakeOpenWebUI) -> None:
    pipe = make_pipe(ladder, semantic_cache=True)
    ask(pipe, EASY, user="ada")
    assert ask(pipe, EASY, user="uma").text == f"[{LOCAL}] {EASY}"
    assert [user for user, _ in owui.calls] == ["ada", "uma"]
    ask(pipe, PARAPHRASE, user="uma")  # now from Uma's own entry
    assert len(owui.calls) == 2


def test_an_answer_is_stamped_with_the_tier_that_served_it(
    ladder: Path, owui: FakeOpenWebUI
) -> None:
    pipe = make_pipe(ladder, semantic_cache=True)
    owui.failing = {CLOUD}
    assert ask(pipe, HARD).text == f"[{HPC}] {HARD}"  # decided cloud, served by hpc
    owui.failing = set()
    # The same question is decided cloud again: hpc's answer may not serve it.
    assert ask(pipe, HARD).text == f"[{CLOUD}] {HARD}"
    assert ask(pipe, HARD).text == f"[{CLOUD}] {HARD}"  # cloud's answer does
    assert [f["model"] for f in owui.chats()] == [CLOUD, HPC, CLOUD]


def test_a_failed_background_task_never_answers_with_the_error_text(
    ladder: Path, owui: FakeOpenWebUI
) -> None:
    owui.failing = {LOCAL, HPC, CLOUD}
    pipe = make_pipe(ladder)
    # Open WebUI would make the error its chat title; the task gets nothing and keeps its
    # default, while a chat still gets the reason in words.
    assert ask(pipe, EASY, task="title_generation").text == ""
    assert ask(pipe, EASY).text.startswith("tierwise could not answer: every tier")


def test_a_tier_that_is_down_is_not_called_not_permitted(ladder: Path, owui: FakeOpenWebUI) -> None:
    pipe = make_pipe(ladder)
    owui.failing = {HPC}
    for _ in range(3):  # opens hpc's breaker
        ask(pipe, HARD, user="uma")
    reply = ask(pipe, HARD, user="uma", stream=True)
    statuses = [s["description"] for s in reply.statuses]
    assert reply.text == f"[{LOCAL}] {HARD}"
    assert "health: hpc cooling down" in statuses[0]  # down, said as down ...
    assert "cloud is not permitted for your account (you may use up to hpc)" in statuses[0]
    assert "may use up to local" not in " ".join(statuses)  # ... never as a lower limit


def test_one_users_bad_requests_are_not_retried_and_open_no_breaker(
    ladder: Path, owui: FakeOpenWebUI
) -> None:
    owui.refusing = {LOCAL, HPC, CLOUD}
    pipe = make_pipe(ladder)
    bad = {"model": "auto", "messages": [{"role": "user", "content": EASY}], "temperature": 5}

    async def send(body: dict[str, Any], user: str) -> Any:
        return await pipe.pipe(body, __user__={"id": user})

    for _ in range(5):  # more than the breaker's max_failures
        reply = asyncio.run(send(dict(bad), "uma"))
        assert reply.startswith("tierwise could not answer: the model refused this request")
        assert "temperature must be <= 2" in reply
    # Each bad request reached the decided tier once and no dearer tier.
    assert [f["model"] for f in owui.chats()] == [LOCAL] * 5
    # Nobody else pays for it: the local tier is not cooling down for Ada, nor for Uma.
    assert ask(pipe, EASY, user="ada").text == f"[{LOCAL}] {EASY}"
    assert ask(pipe, EASY, user="uma").text == f"[{LOCAL}] {EASY}"


def test_background_tasks_neither_use_nor_fill_the_cache(ladder: Path, owui: FakeOpenWebUI) -> None:
    pipe = make_pipe(ladder, semantic_cache=True)
    ask(pipe, EASY, task="title_generation")
    ask(pipe, EASY, task="title_generation")
    ask(pipe, EASY)
    assert len(owui.calls) == 3


def test_a_cache_fault_never_breaks_a_chat(
    ladder: Path, owui: FakeOpenWebUI, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = make_pipe(ladder, semantic_cache=True)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(SemanticCache, "lookup", broken)
    monkeypatch.setattr(SemanticCache, "put", broken)
    before = plugin_errors("cache lookup"), plugin_errors("cache store")
    assert ask(pipe, EASY).text == f"[{LOCAL}] {EASY}"
    assert ask(pipe, EASY, stream=True).text == f"[{LOCAL}] {EASY}"
    assert plugin_errors("cache lookup") == before[0] + 2
    assert plugin_errors("cache store") == before[1] + 2
    monkeypatch.setattr(cache_replay, "open_cache", broken)  # even opening it
    pipe = make_pipe(ladder, semantic_cache=True)
    assert ask(pipe, EASY).text == f"[{LOCAL}] {EASY}"


def test_the_cache_is_off_with_its_valve(ladder: Path, owui: FakeOpenWebUI) -> None:
    pipe = make_pipe(ladder)
    ask(pipe, EASY)
    ask(pipe, EASY)
    assert len(owui.calls) == 2 and pipe.router.answers._cache is None


# -- summarization ----------------------------------------------------------------------------


def long_chat(question: str = "hi there", turns: int = 12) -> list[dict[str, Any]]:
    """About 23k tokens of earlier turns (the local window is 8k), then an easy question."""
    rng = random.Random(7)
    messages: list[dict[str, Any]] = []
    for turn in range(turns):
        text = " ".join(
            f"Node {rng.randrange(10**5)} logged {rng.randrange(10**4)} events." for _ in range(150)
        )
        messages.append({"role": "user", "content": f"Here are the logs of part {turn}: {text}"})
        messages.append({"role": "assistant", "content": f"Noted part {turn}: {text[:2000]}"})
    return [*messages, {"role": "user", "content": question}]


def test_a_long_chat_is_summarized_by_the_cheapest_model_and_stays_local(
    ladder: Path, owui: FakeOpenWebUI
) -> None:
    pipe = make_pipe(ladder, summarize=True)
    chat = long_chat()
    reply = ask(pipe, chat, user="uma", stream=True)
    assert reply.text == f"[{LOCAL}] hi there"
    (summarizer,) = owui.summarizer_calls()
    assert summarizer["model"] == LOCAL and summarizer["stream"] is False
    assert summarizer["max_tokens"] > 0
    assert [user for user, _ in owui.calls] == ["uma", "uma"]  # both calls as the user
    (sent,) = owui.chats()
    assert sent["model"] == LOCAL
    assert sent["messages"][0]["content"].startswith("[tierwise summary]")
    assert SUMMARY in sent["messages"][0]["content"]
    assert sent["messages"][-1] == chat[-1] and len(sent["messages"]) < len(chat)
    statuses = [s["description"] for s in reply.statuses]
    assert any(
        s.startswith("summarized 22 earlier messages for local (") and "1 summarizer call" in s
        for s in statuses
    )
    assert re.match(
        rf"{LOCAL} \(local\) · long prompt \(\d+ tokens\), summarized · first token ", statuses[-1]
    )
    # The next turn reuses the rolling summary: no second summarizer call.
    follow = [*chat, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "ok"}]
    ask(pipe, follow, user="uma")
    assert len(owui.summarizer_calls()) == 1
    assert owui.chats()[-1]["messages"][0]["content"].startswith("[tierwise summary]")


def test_a_failing_summarizer_leaves_old_turns_out_with_a_notice(
    ladder: Path, owui: FakeOpenWebUI
) -> None:
    owui.error_body = {LOCAL}  # Open WebUI's HTTP 200 error body from the summarizer's model
    pipe = make_pipe(ladder, summarize=True)
    reply = ask(pipe, long_chat(), user="uma")
    # The local model "fails" too (same error); the chat falls back to hpc, unsummarized.
    assert reply.text == f"[{HPC}] hi there"
    first, second = owui.chats()
    assert first["model"] == LOCAL and second["model"] == HPC
    assert first["messages"][0]["content"].startswith("[tierwise notice]")
    assert "summarizer failed" in first["messages"][0]["content"]
    assert second["messages"] == long_chat()  # it fits hpc as it is
    statuses = [s["description"] for s in reply.statuses]
    assert any("left out 22 earlier messages" in s for s in statuses)


def test_the_summarizer_raises_on_error_bodies_and_textless_replies() -> None:
    async def fails(request: Any, form: dict[str, Any], user: Any) -> host.Attempt:
        return host.Attempt(False, error="model not found")

    async def textless(request: Any, form: dict[str, Any], user: Any) -> host.Attempt:
        return host.Attempt(True, {"choices": [{"message": {"content": None}}]})

    from tierwise.summarize import SummaryJob

    job = SummaryJob(({"role": "user", "content": "x"},), max_tokens=64, tier="local", covered=2)
    for fake, words in ((fails, "model not found"), (textless, "without text")):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(host, "call_model", fake)
            with pytest.raises(summarizer.SummarizerError, match=words):
                asyncio.run(summarizer.summarizer_for(None, User("u"), LOCAL)(job))


def test_without_the_valve_a_long_chat_is_not_summarized(ladder: Path, owui: FakeOpenWebUI) -> None:
    reply = ask(make_pipe(ladder), long_chat())
    assert reply.text == f"[{HPC}] hi there"  # escalated for context, as before
    assert not owui.summarizer_calls() and owui.chats()[0]["messages"] == long_chat()


# -- telemetry --------------------------------------------------------------------------------


def test_one_row_per_finished_chat(ladder: Path, owui: FakeOpenWebUI) -> None:
    pipe = make_pipe(ladder, semantic_cache=True, summarize=True)
    ask(pipe, EASY, stream=True)
    ask(pipe, PARAPHRASE)
    owui.failing = {CLOUD}
    ask(pipe, HARD)
    owui.failing = set()
    ask(pipe, long_chat(), user="uma")
    ask(pipe, "stop me", stream=True, stop_after=2)
    ask(pipe, EASY, task="title_generation")
    owui.failing = {LOCAL, HPC, CLOUD}
    assert ask(pipe, "hello?").text.startswith("tierwise could not answer: every tier")
    db = Path(ladder).parent / "decisions.db"
    streamed, hit, fallback, summarized, stopped, task, failed = rows(pipe, db)
    assert streamed["tier"] == "local" and streamed["model"] == LOCAL and streamed["ok"] == 1
    assert streamed["ttft_ms"] is not None and streamed["latency_ms"] >= streamed["ttft_ms"]
    assert streamed["tokens_in"] == 11 and streamed["tokens_out"] == 7  # the reply's usage
    assert hit["tier"] == "cache" and hit["cache_hit"] == 1 and hit["routed_tier"] == "local"
    assert hit["model"] == LOCAL and hit["cost_usd"] == 0
    assert fallback["routed_tier"] == "cloud" and fallback["tier"] == "hpc"
    assert fallback["fallback"] == 1 and fallback["ttft_ms"] is None
    assert summarized["summarized"] == 1 and summarized["tier"] == "local"
    assert summarized["scope"] != streamed["scope"]
    assert stopped["ok"] == 1 and stopped["error"] == "stopped by the client"
    assert task["tier"] == "local" and task["reason"] == "default" and task["score"] is None
    assert failed["ok"] == 0 and "every tier" not in failed["error"]
    assert "local: HTTP 500" in failed["error"]


def test_routing_faults_are_counted(ladder: Path, owui: FakeOpenWebUI) -> None:
    pipe = make_pipe(ladder)
    ask(pipe, EASY)  # telemetry is set up by a first chat

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    pipe.router.route = broken  # type: ignore[method-assign]
    before = plugin_errors("route")
    assert ask(pipe, EASY).text.startswith("tierwise could not answer: internal error")
    assert plugin_errors("route") == before + 1


# -- valves ------------------------------------------------------------------------------------


@pytest.fixture
def saving(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(host, "saving_valves", lambda: True)
    monkeypatch.setattr(host, "live_models", lambda: INSTALLED)
    yield


def test_the_feature_valves_save_and_say_what_is_wrong(
    ladder: Path, tmp_path: Path, saving: None
) -> None:
    on = ar.Pipe.Valves(config_path=str(ladder), semantic_cache=True, summarize=True)
    assert on.semantic_cache and on.summarize
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    config = yaml.safe_load(ladder.read_text())
    config["cache"]["directory"] = str(blocked / "answers")
    for tier in config["tiers"]:
        tier["summary"] = {"enabled": False}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    with pytest.raises(SetupError, match=r"semantic_cache: cannot open the disk store"):
        ar.Pipe.Valves(config_path=str(bad), semantic_cache=True)
    with pytest.raises(SetupError, match="summarize: every tier in the config has summary"):
        ar.Pipe.Valves(config_path=str(bad), summarize=True)
    assert ar.Pipe.Valves(config_path=str(bad)).config_path == str(bad)  # both off: fine


def test_the_valves_switch_the_config_sections(ladder: Path) -> None:
    pipe = make_pipe(ladder, semantic_cache=True)
    config = pipe.router.setup(pipe.valves, INSTALLED).config
    assert config.cache.enabled and not config.summarize.enabled
    assert config.cache.directory == str(ladder.parent / "answers")  # the rest from the YAML


# -- the LLM judge ----------------------------------------------------------------------------

NEAR = "Write a function that parses a CSV file and computes column averages."


MODELS = {"local": LOCAL, "hpc": HPC, "cloud": CLOUD}


@dataclass
class Judged:
    ladder: Path
    below: str  # the model of the band under NEAR's nearest edge
    above: str  # ... and over it
    unjudged: str  # the model NEAR's own score routes to


@pytest.fixture
def judged(ladder: Path) -> Judged:
    """The ladder with a judge margin that reaches NEAR but not EASY (scored here, with the
    ladder's own scorer), and the models either side of NEAR's nearest band edge."""
    config = yaml.safe_load(ladder.read_text())
    settings = load_config(config)
    bands = settings.scoring.bands
    scorer = build_scorer(settings)
    near, far = (scorer.score(ChatRequest.from_text(t)).value for t in (NEAR, EASY))
    edge = nearest_edge(near, bands)
    margin = abs(near - edge) + 0.02
    assert abs(far - nearest_edge(far, bands)) > margin
    config["scoring"]["cascade"] = {"judge_margin": margin, "judge_timeout_s": 30}
    ladder.write_text(yaml.safe_dump(config))
    below, above = ("local", "hpc") if edge == bands.medium else ("hpc", "cloud")
    unjudged = above if near >= edge else below
    return Judged(ladder, MODELS[below], MODELS[above], MODELS[unjudged])


def test_the_judge_rates_near_edge_chats_as_the_user_and_the_verdict_routes(
    judged: Judged, owui: FakeOpenWebUI
) -> None:
    owui.access["bob"] = {LOCAL, HPC, CLOUD}
    pipe = make_pipe(judged.ladder, llm_judge=True)
    owui.judge_reply = "1"
    assert ask(pipe, NEAR).text == f"[{judged.below}] {NEAR}"
    ((user, form),) = owui.judge_calls()
    assert user == "ada"  # called as the user: Open WebUI's access control applies
    assert form["model"] == LOCAL and form["max_tokens"] == 16 and NEAR in str(form["messages"])
    reason = json.loads(rows(pipe, judged.ladder.parent / "decisions.db")[0]["reasons"])[0]
    assert reason.startswith("judge: ") and "rated 1/10" in reason
    owui.judge_reply = "Rating: 10"
    assert ask(pipe, NEAR, user="bob").text == f"[{judged.above}] {NEAR}"
    assert [u for u, _ in owui.judge_calls()] == ["ada", "bob"]  # no verdict crosses users
    assert ask(pipe, NEAR).text == f"[{judged.below}] {NEAR}"  # ada's own verdict, cached
    assert ask(pipe, EASY).text == f"[{LOCAL}] {EASY}"  # far from every edge
    assert len(owui.judge_calls()) == 2


def test_a_failing_judge_keeps_the_score_and_the_valve_turns_it_off(
    judged: Judged, owui: FakeOpenWebUI
) -> None:
    owui.judge_reply = "no idea, sorry"
    pipe = make_pipe(judged.ladder, llm_judge=True)
    assert ask(pipe, NEAR).text == f"[{judged.unjudged}] {NEAR}"
    reason = json.loads(rows(pipe, judged.ladder.parent / "decisions.db")[0]["reasons"])[0]
    assert reason.startswith("judge: unreadable or failed answer, kept ")
    calls = len(owui.judge_calls())
    assert ask(make_pipe(judged.ladder), NEAR).text == f"[{judged.unjudged}] {NEAR}"
    assert len(owui.judge_calls()) == calls  # the valve is off: no judge

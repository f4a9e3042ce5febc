"""Fitting a long chat to a tier: budgets, the rolling summary, the rules, and every fallback."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from typing import Any

import pytest

from tests.summarize_helpers import (
    SUMMARY,
    Recorder,
    chat,
    config,
    request,
    router,
    sent_tokens,
)
from tierwise.config import ConfigError, load_config
from tierwise.request import ChatRequest
from tierwise.router import TierRouter
from tierwise.rules import RoutingError
from tierwise.summarize import NOTICE_HEADER, SUMMARY_HEADER, SummaryCache, SummaryEntry


def _system_blocks(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "system"]


def test_a_chat_that_fits_is_sent_unchanged_without_a_call() -> None:
    recorder = Recorder()
    messages = chat(2)
    fitted = router(recorder).prepare(request(messages), "local")
    assert fitted.action == "fits" and not fitted.changed
    assert fitted.messages == messages
    assert recorder.jobs == []


def test_long_chat_is_summarized_into_a_marked_system_message() -> None:
    recorder = Recorder()
    messages = chat(12)
    req = request(messages)
    fitted = router(recorder).prepare(req, "local")
    assert fitted.action == "summarized"
    assert fitted.summarizer_calls == 1 and len(recorder.jobs) == 1
    # the system prompt stays first and verbatim; the summary follows it, clearly marked
    assert fitted.messages[0] == messages[0]
    assert fitted.messages[1]["role"] == "system"
    assert fitted.messages[1]["content"].startswith(SUMMARY_HEADER)
    assert SUMMARY in fitted.messages[1]["content"]
    # the latest user turn is last and untouched; kept turns start with a user message
    assert fitted.messages[-1] == messages[-1]
    assert fitted.messages[2]["role"] == "user"
    assert fitted.messages[2:] == messages[len(messages) - len(fitted.messages) + 2 :]
    # what is sent fits the tier, counted again from the messages themselves
    assert sent_tokens(fitted.messages) <= fitted.usable_tokens < req.prompt_tokens
    # the summarizer was asked with the transcript of exactly the messages that fell out
    transcript = recorder.jobs[0].messages[1]["content"]
    assert "What is 0 plus 0?" in transcript
    assert f"What is {12} plus" not in transcript
    assert recorder.jobs[0].max_tokens == config().tier("local").summary_tokens


def test_per_tier_budgets_differ_and_follow_the_window() -> None:
    tiers = {t.name: t for t in config().tiers}
    assert tiers["local"].summary_tokens < tiers["hpc"].summary_tokens
    assert tiers["local"].recent_turns < tiers["hpc"].recent_turns
    custom = config(local={"summary": {"summary_tokens": 300, "recent_turns": 1}})
    assert custom.tier("local").summary_tokens == 300
    assert custom.tier("local").recent_turns == 1
    fitted = TierRouter(custom, summarizer=Recorder()).prepare(request(chat(12)), "local")
    kept_users = [m for m in fitted.messages if m["role"] == "user"]
    assert len(kept_users) == 1  # recent_turns: 1 keeps only the latest turn verbatim


def test_hpc_keeps_more_verbatim_turns_than_local() -> None:
    r = router(Recorder(), hpc={"context_window": 16384, "output_reserve": 512})
    req = request(chat(24))
    local = r.prepare(req, "local")
    hpc = r.prepare(req, "hpc")
    count = lambda f: sum(1 for m in f.messages if m["role"] == "user")  # noqa: E731
    assert hpc.action == local.action == "summarized"
    assert count(hpc) > count(local) >= 1


def test_incremental_at_most_one_call_per_turn_and_none_when_nothing_fell_out() -> None:
    recorder = Recorder()
    r = router(recorder)
    messages = chat(4)
    calls_per_turn = []
    actions = []
    for turn in range(4, 30):
        before = len(recorder.jobs)
        fitted = r.prepare(request(messages), r.decide(request(messages)))
        calls_per_turn.append(len(recorder.jobs) - before)
        actions.append(fitted.action)
        assert sent_tokens(fitted.messages) <= fitted.usable_tokens
        # the same request again: nothing new fell out, so no call
        again = r.prepare(request(messages), "local")
        assert again.summarizer_calls == 0 and again.messages == fitted.messages
        messages = [
            *messages,
            {"role": "assistant", "content": f"{turn} + {turn} = {2 * turn}. " + "word " * 150},
            {"role": "user", "content": f"What is {turn + 1} plus {turn + 1}?"},
        ]
    assert max(calls_per_turn) == 1
    assert "cached" in actions  # turns after a summary reuse it
    assert sum(calls_per_turn) < len(calls_per_turn) / 2
    # each later call folds into the previous summary and reads only what newly fell out
    later = recorder.jobs[-1].messages[1]["content"]
    assert SUMMARY in later
    assert "What is 0 plus 0?" not in later


def test_summary_is_keyed_by_the_covered_prefix_and_scope() -> None:
    recorder = Recorder()
    r = router(recorder)
    messages = chat(12)
    r.prepare(request(messages), "local")
    r.prepare(request(messages), "local")
    assert len(recorder.jobs) == 1
    # another user with the same words does not see alice's summary
    r.prepare(request(messages, user="bob"), "local")
    assert len(recorder.jobs) == 2
    # editing an early message changes the prefix: the old summary no longer applies
    edited = [dict(m) for m in messages]
    edited[1]["content"] = "What is 100 plus 100?"
    r.prepare(request(edited), "local")
    assert len(recorder.jobs) == 3
    # a rewritten system prompt (hosts add dates, documents) does not invalidate it
    reworded = [{"role": "system", "content": "You are helpful. Today is Monday."}, *messages[1:]]
    r.prepare(request(reworded), "local")
    assert len(recorder.jobs) == 3


def test_system_messages_are_never_summarized() -> None:
    recorder = Recorder()
    messages = chat(12)
    messages.insert(5, {"role": "system", "content": "Mid-chat instruction: answer in French."})
    fitted = router(recorder).prepare(request(messages), "local")
    assert fitted.action == "summarized"
    blocks = _system_blocks(fitted.messages)
    assert "You are helpful." in blocks
    assert "Mid-chat instruction: answer in French." in blocks
    assert "Mid-chat instruction" not in recorder.jobs[0].messages[1]["content"]


def test_tool_call_pairs_are_never_split() -> None:
    recorder = Recorder()
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Use tools."}]
    for n in range(14):
        call_id = f"call_{n}"
        messages += [
            {"role": "user", "content": f"Look up item {n}."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "lookup", "arguments": f'{{"item": {n}}}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "content": "record " * 120},
            {"role": "assistant", "content": f"Item {n} is in stock. " + "detail " * 120},
        ]
    messages.append({"role": "user", "content": "And item 99?"})
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    req = request(messages, tools=tools)
    fitted = router(recorder).prepare(req, "local")
    assert fitted.action == "summarized"
    sent_calls = {c["id"] for m in fitted.messages if m.get("tool_calls") for c in m["tool_calls"]}
    results = [m["tool_call_id"] for m in fitted.messages if m["role"] == "tool"]
    assert results and all(r in sent_calls for r in results)
    assert len(sent_calls) == len(results)
    assert sent_tokens(fitted.messages, tools=tools) <= fitted.usable_tokens
    assert "[calls tool lookup(" in recorder.jobs[0].messages[1]["content"]
    assert "TOOL RESULT (call_0)" in recorder.jobs[0].messages[1]["content"]


def test_images_in_old_turns_become_a_short_note() -> None:
    recorder = Recorder()
    messages = chat(12)
    messages[1] = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ],
    }
    messages[-1] = {
        "role": "user",
        "content": [
            {"type": "text", "text": "And this one?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,BBBB"}},
        ],
    }
    r = router(recorder, local={"capabilities": ["vision", "tools"]})
    fitted = r.prepare(request(messages), "local")
    transcript = recorder.jobs[0].messages[1]["content"]
    assert "What is in this picture?" in transcript
    assert "[1 image attached here, not shown]" in transcript
    assert "AAAA" not in str(fitted.messages)
    assert fitted.messages[-1] == messages[-1]  # the latest turn keeps its image


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "   \n ",
        None,
        42,
        "ok",
        "#### @@@@ !!!! ???? %%%% ^^^^ &&&& **** (((( )))) ---- ++++ ====",
        "\x00\x01\x02\x03 binary \x04\x05\x06\x07\x08 junk \x0e\x0f\x10\x11\x12",
        "summary " * 60,
    ],
)
def test_empty_or_garbage_summary_falls_back_to_a_visible_notice(
    answer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    messages = chat(12)
    req = request(messages)
    with caplog.at_level(logging.WARNING, logger="tierwise.summarize"):
        fitted = router(Recorder(answer)).prepare(req, "local")
    assert fitted.action == "truncated"
    notice = fitted.messages[1]["content"]
    assert notice.startswith(NOTICE_HEADER) and "left out" in notice
    assert fitted.messages[-1] == messages[-1]  # never an empty prompt
    assert sent_tokens(fitted.messages) <= fitted.usable_tokens
    assert any("left out" in r.getMessage() for r in caplog.records)


def test_failing_summarizer_truncates_and_keeps_the_previous_summary() -> None:
    recorder = Recorder()
    r = router(recorder)
    messages = chat(10)
    assert r.prepare(request(messages), "local").action == "summarized"
    recorder.answer = RuntimeError("model server down")
    longer = chat(16)
    fitted = r.prepare(request(longer), "local")
    assert fitted.action == "truncated"
    block = fitted.messages[1]["content"]
    assert SUMMARY in block  # what the old summary covered is still there
    assert NOTICE_HEADER in block and "model server down" in block
    assert fitted.messages[-1] == longer[-1]


def test_summary_longer_than_the_budget_is_clipped() -> None:
    long_answer = " ".join(f"fact{n} was noted." for n in range(600))
    fitted = router(Recorder(long_answer)).prepare(request(chat(12)), "local")
    assert fitted.action == "summarized"
    assert sent_tokens(fitted.messages) <= fitted.usable_tokens
    assert "fact0 was noted." in fitted.messages[1]["content"]
    assert "fact599" not in fitted.messages[1]["content"]


def test_timeout_falls_back_without_waiting_for_the_summarizer() -> None:
    release = threading.Event()

    def hangs(job: Any) -> str:
        release.wait(30)
        return SUMMARY

    try:
        r = router(hangs, summarize={"timeout_s": 0.2})
        fitted = r.prepare(request(chat(12)), "local")
        assert fitted.action == "truncated"
        assert "timed out after 0.2s" in fitted.messages[1]["content"]
    finally:
        release.set()


def test_no_summarizer_truncates_with_a_notice_and_no_breaker_count() -> None:
    r = router(None)
    fitted = r.prepare(request(chat(12)), "local")
    assert fitted.action == "truncated" and fitted.summarizer_calls == 0
    assert "no summarizer configured" in fitted.messages[1]["content"]
    assert r.fitter.health.cooling_down("summarizer") == 0


def test_repeated_failures_open_a_breaker_that_skips_the_summarizer() -> None:
    recorder = Recorder(RuntimeError("boom"))
    r = router(recorder, summarize={"max_failures": 2, "cooldown_s": 60})
    for user in ("a", "b"):
        assert r.prepare(request(chat(12), user=user), "local").action == "truncated"
    assert len(recorder.jobs) == 2
    fitted = r.prepare(request(chat(12), user="c"), "local")
    assert len(recorder.jobs) == 2  # not called while cooling down
    assert "cooling down" in fitted.messages[1]["content"]


def test_async_prepare_with_async_and_sync_summarizers() -> None:
    calls: list[str] = []

    async def async_summarizer(job: Any) -> str:
        await asyncio.sleep(0)
        calls.append("async")
        return SUMMARY

    def sync_summarizer(job: Any) -> str:
        calls.append("sync")
        return SUMMARY

    async def slow(job: Any) -> str:
        await asyncio.sleep(30)
        return SUMMARY

    async def main() -> list[str]:
        actions = []
        for fn, user in ((async_summarizer, "a"), (sync_summarizer, "b")):
            fitted = await router(fn).aprepare(request(chat(12), user=user), "local")
            actions.append(fitted.action)
        timed = await router(slow, summarize={"timeout_s": 0.1}).aprepare(
            request(chat(12)), "local"
        )
        actions.append(timed.action)
        return actions

    assert asyncio.run(main()) == ["summarized", "summarized", "truncated"]
    assert calls == ["async", "sync"]


def test_catching_up_a_long_uncached_history_takes_one_call() -> None:
    recorder = Recorder()
    r = router(recorder)
    req = request(chat(60))  # about 15x what the local tier takes
    fitted = r.prepare(req, "local")
    assert fitted.action == "summarized" and fitted.summarizer_calls == 1
    job = recorder.jobs[0]
    transcript = job.messages[1]["content"]
    # every old question is still there (short messages stay whole); long answers shortened
    assert all(f"What is {n} plus {n}?" in transcript for n in range(58))
    assert "tokens left out" in transcript
    reading = ChatRequest.from_openai({"messages": job.as_messages()}).prompt_tokens
    local = config().tier("local")
    assert reading + job.max_tokens <= local.context_window


def test_a_summary_made_for_another_tier_seeds_the_fold() -> None:
    recorder = Recorder()
    r = router(recorder, hpc={"context_window": 9000, "output_reserve": 512})
    req = request(chat(30))
    r.prepare(req, "hpc")
    assert "What is 0 plus 0?" in recorder.jobs[0].messages[1]["content"]
    fitted = r.prepare(req, "local")
    assert SUMMARY in fitted.messages[1]["content"]  # built on hpc's summary...
    assert all("What is 0 plus 0?" not in j.messages[1]["content"] for j in recorder.jobs[1:])
    # ...so the old turns are not read again; a longer one is shortened by a call
    long_summary = " ".join(f"point{n} was agreed." for n in range(400))
    r2 = router(Recorder(long_summary), hpc={"context_window": 9000, "output_reserve": 512})
    r2.prepare(req, "hpc")
    shortener = Recorder()
    r2.summarizer = shortener
    fitted = r2.prepare(req, "local")
    assert fitted.action == "summarized" and len(shortener.jobs) == 1
    assert "point0 was agreed." in shortener.jobs[0].messages[1]["content"]
    assert "What is 0 plus 0?" not in shortener.jobs[0].messages[1]["content"]


def test_prepare_refuses_a_tier_that_cannot_hold_the_latest_turn() -> None:
    huge = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(RoutingError) as caught:
        router(Recorder()).prepare(request(huge), "local")
    message = str(caught.value)
    assert "local" in message and "4096" in message and caught.value.status_code == 400


def test_prepare_with_summarization_off_refuses_instead_of_overflowing() -> None:
    r = TierRouter(load_config({**config().model_dump(), "summarize": {"enabled": False}}))
    with pytest.raises(RoutingError, match="summarization is off"):
        r.prepare(request(chat(12)), "local")
    assert r.prepare(request(chat(12)), "hpc").action == "fits"


def test_unknown_tier_is_a_clear_error() -> None:
    with pytest.raises(RoutingError, match="unknown tier 'gpu'; configured tiers: local, hpc"):
        router().prepare(request(chat(2)), "gpu")


def test_random_chats_never_exceed_the_window() -> None:
    rng = random.Random(3)
    recorder = Recorder()
    r = router(recorder)
    for case in range(25):
        messages: list[dict[str, Any]] = []
        if rng.random() < 0.7:
            messages.append({"role": "system", "content": "sys " * rng.randint(1, 400)})
        for _ in range(rng.randint(1, 40)):
            messages.append({"role": "user", "content": "q " * rng.randint(1, 300)})
            messages.append({"role": "assistant", "content": "a " * rng.randint(1, 1500)})
        messages.append({"role": "user", "content": f"case {case} " + "z " * rng.randint(1, 900)})
        req = request(messages, user=f"u{case}")
        for tier in ("local", "hpc"):
            try:
                fitted = r.prepare(req, tier)
            except RoutingError:
                assert tier == "local"
                continue
            assert sent_tokens(fitted.messages) <= fitted.usable_tokens
            assert fitted.messages[-1] == messages[-1]


def test_cache_is_bounded_and_safe_across_threads() -> None:
    cache = SummaryCache(max_entries=50)

    def work(seed: int) -> None:
        for n in range(400):
            key = f"{seed}-{n}"
            cache.put(key, SummaryEntry(f"text {key}", n, 2))
            found = cache.first([key, "missing"])
            assert found is None or found[1].text == f"text {key}"

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 50
    assert cache.first(["7-399"]) is not None  # the most recent entries survive
    assert cache.first(["0-0"]) is None


def test_config_rejects_a_summary_budget_that_leaves_no_room() -> None:
    with pytest.raises(ConfigError) as caught:
        config(local={"summary": {"summary_tokens": 3000}})
    assert "tiers[0]" in str(caught.value) and "summary_tokens" in str(caught.value)
    with pytest.raises(ConfigError, match="unknown key"):
        config(local={"summary": {"tokens": 300}})
    with pytest.raises(ConfigError, match=r"summarize\.keep_ratio"):
        config(summarize={"keep_ratio": 0})

"""`tierwise eval-summarize`: the long-chat generator, the HTTP summarizer and the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.summarize_helpers import chat, config, request
from tierwise.cli import main
from tierwise.router import TierRouter
from tierwise.tokens import default_counter
from tierwise.training.http_summarizer import HttpSummarizer
from tierwise.training.long_chats import LongChat, generate

PROMPTS = [
    "What is the capital of France?",
    "Explain how vaccines train the immune system.",
    "Write a Python function that reverses a linked list.",
    "Prove that there are infinitely many primes.",
    "Summarize the causes of the First World War.",
]


def test_generator_is_reproducible_and_grows_chats_to_their_size() -> None:
    counter = default_counter()

    def make(seed: int) -> list[LongChat]:
        return generate(PROMPTS, chats=6, sizes=(2.0, 4.0), window=2048, counter=counter, seed=seed)

    first = make(3)
    assert first == make(3)
    assert first != make(4)
    assert [c.size for c in first] == [2.0, 4.0] * 3
    for long_chat in first:
        tokens = sum(counter.count(str(m.get("content") or "")) for t in long_chat.turns for m in t)
        assert tokens >= long_chat.size * 2048 * 0.9
        for turn in long_chat.turns:
            assert turn[0]["role"] == "user" and turn[0]["content"] in PROMPTS
            assert turn[-1]["role"] == "assistant" and turn[-1]["content"]
            calls = [c["id"] for m in turn for c in m.get("tool_calls") or ()]
            results = [m["tool_call_id"] for m in turn if m["role"] == "tool"]
            assert calls == results  # every tool call is answered inside its own turn
    assert any(c.uses_tools for c in first)


@pytest.mark.integration
def test_http_summarizer_calls_an_openai_compatible_server(stub_factory) -> None:  # type: ignore[no-untyped-def]
    stub = stub_factory("summarizer")
    stub.control(reply="The user asked about sums; the assistant answered each one.")
    summarizer = HttpSummarizer(f"{stub.url}/v1", "summarizer")
    try:
        router = TierRouter(config(), summarizer=summarizer)
        fitted = router.prepare(request(chat(12)), "local")
    finally:
        summarizer.close()
    assert fitted.action == "summarized"
    (received,) = stub.requests()
    body = received["body"]
    assert body["model"] == "summarizer" and body["max_tokens"] == 256
    assert body["messages"][0]["role"] == "system"
    assert "What is 0 plus 0?" in body["messages"][1]["content"]


@pytest.mark.integration
def test_eval_summarize_command_meets_the_targets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"text": t}) + "\n" for t in PROMPTS))
    out = tmp_path / "report.json"
    args = ["eval-summarize", "--prompts", str(prompts), "--chats", "3", "--sizes", "2,4"]
    code = main([*args, "--json", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "stay with" in printed and "local stand-in server" in printed
    report = json.loads(out.read_text())
    overall = report["overall"]
    assert overall["long_turns"] > 0
    assert overall["over_window_with"] == 0
    assert overall["max_calls_in_a_turn"] <= 1
    assert overall["summarizer_calls"] > 0
    assert overall["stay_with"]["share"] >= 0.95
    assert overall["stay_with"]["share"] >= overall["stay_without"]["share"]
    assert overall["actions"].get("truncated", 0) == 0
    assert len(report["turns"]) == overall["turns"]


def test_eval_summarize_bad_input_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval-summarize", "--prompts", str(tmp_path / "missing.jsonl")]) == 1
    assert "no such file" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"label": "LOW"}\n')
    assert main(["eval-summarize", "--prompts", str(empty)]) == 1
    assert "no lines with a 'text' string" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["eval-summarize", "--sizes", "2,0"])
    assert exit_info.value.code == 2
    assert "like 2,4,8" in capsys.readouterr().err

"""The normalized request view: parts, roles, tools, scope, and real-tokenizer counts."""

from __future__ import annotations

import pytest

from tierwise.request import IMAGE_TOKENS, ChatRequest, RequestError, Scope
from tierwise.tokens import TokenCounter, default_counter


def test_text_image_and_tool_parts_are_normalized() -> None:
    body = {
        "model": "auto",
        "stream": True,
        "temperature": 0.2,
        "user": "alice",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "first question"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "tool output"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                    {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}},
                ],
            },
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    }
    request = ChatRequest.from_openai(body)
    assert request.system_prompt == "Be terse."
    assert request.last_user_text == "What is this?"
    assert request.has_images and request.image_count == 1
    assert request.last_user is not None and request.last_user.audio == 1
    assert request.has_tools and len(request.tools) == 1
    assert request.messages[3].tool_call_id == "c1"
    assert request.stream and request.temperature == 0.2
    assert request.scope == Scope(user="alice")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": []}, "'messages' is empty"),
        ({}, "'messages' must be a list"),
        ({"messages": "hello"}, "'messages' must be a list"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "unknown role 'bot'; allowed: system"),
        ({"messages": ["hello"]}, "messages[0] must be an object"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content must be a string"),
        (
            {"messages": [{"role": "user", "content": [5]}]},
            "messages[0].content[0] must be an object",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
            "'temperature' must be a number",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "tools": "all"},
            "'tools' must be a list",
        ),
    ],
)
def test_bad_requests_say_what_is_wrong(body: dict[str, object], message: str) -> None:
    with pytest.raises(RequestError) as info:
        ChatRequest.from_openai(body)
    assert message in str(info.value)


def test_only_non_text_parts_is_routable() -> None:
    request = ChatRequest.from_openai(
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}
            ]
        }
    )
    assert request.last_user_text == ""
    assert request.prompt_tokens >= IMAGE_TOKENS


def test_token_counts_come_from_the_tokenizer_not_characters() -> None:
    counter = default_counter()
    assert counter.exact, "the encoder weights package (tokenizer.json) should be installed"
    text = "Tokenization splits unbelievably long words into pieces."
    ids = counter._tokenizer.encode(text, add_special_tokens=False).ids  # type: ignore[union-attr]
    assert counter.count(text) == len(ids)
    assert counter.count(text) != len(text) // 4
    request = ChatRequest.from_text(text)
    assert request.prompt_tokens == len(ids) + 4 + 3  # message framing + reply priming
    assert request.prompt_tokens <= request.prompt_tokens_upper_bound


def test_padding_is_off_so_short_texts_are_short() -> None:
    assert default_counter().count("hi") == 1


def test_huge_text_is_counted_by_sampling_close_to_exact() -> None:
    counter = default_counter()
    text = "the quick brown fox jumps over the lazy dog. " * 30_000  # 1.35 MB
    exact = len(counter._tokenizer.encode(text, add_special_tokens=False).ids)  # type: ignore[union-attr]
    assert abs(counter.count(text) - exact) / exact < 0.02


def test_missing_tokenizer_falls_back_to_an_estimate(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    counter = TokenCounter(tmp_path / "missing.json")
    assert not counter.exact
    assert "Install the encoder weights" in caplog.text
    assert 5 <= counter.count("one two three four five") <= 8


def test_scope_key_is_stable_and_does_not_reveal_the_key() -> None:
    a = Scope(user="u", team="t", api_key="sk-secret")
    assert a.key() == Scope(user="u", team="t", api_key="sk-secret").key()
    assert a.key() != Scope(user="u", team="t", api_key="sk-other").key()
    assert "secret" not in a.key()
    assert Scope().anonymous and not a.anonymous

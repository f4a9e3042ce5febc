"""Streaming and answers: reading a model's reply (streamed or not) and replaying a cached one.

No Open WebUI import and no I/O: a tap that reads an OpenAI-style SSE stream on the side
while the pipe relays it unchanged, the answer as the cache stores it, and a stored answer
turned back into a chat.completion body or SSE chunks.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

MAX_TAPPED_CHARS = 1_000_000  # longer streamed answers are relayed but not cached
REPLAY_WORDS = 8  # words per chunk when a cached answer is streamed back


class StreamTap:
    """Reads an OpenAI-style SSE stream on the side while it is relayed unchanged.

    Chunks may split lines anywhere (bytes or str). It collects the answer's text, the last
    finish reason, usage and any error event, and notes what makes an answer unfit to cache:
    tool calls, a second choice, a cut-off, or more text than MAX_TAPPED_CHARS. It never raises.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._parts: list[str] = []
        self._chars = 0
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.model = ""
        self.error = ""
        self.done = False  # saw `data: [DONE]`
        self.unfit = ""  # why this answer must not be cached ("" = fine)

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def feed(self, chunk: Any) -> None:
        try:
            if isinstance(chunk, str):
                chunk = chunk.encode("utf-8")
            self._buffer += bytes(chunk)
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                self._line(line.strip())
        except Exception as exc:  # an odd chunk must not break the relay
            self.unfit = f"unreadable stream ({type(exc).__name__})"

    def close(self) -> None:
        """The stream ended: read a last line that had no newline."""
        rest, self._buffer = self._buffer.strip(), b""
        if rest:
            try:
                self._line(rest)
            except Exception as exc:
                self.unfit = f"unreadable stream ({type(exc).__name__})"

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            event = json.loads(payload)
        except ValueError:
            self.unfit = "a stream line that is not JSON"
            return
        if not isinstance(event, Mapping):
            return
        if event.get("error"):
            self.error = describe(event["error"])
            return
        if isinstance(event.get("model"), str):
            self.model = event["model"]
        if isinstance(event.get("usage"), Mapping):
            self.usage = dict(event["usage"])
        for choice in event.get("choices") or ():
            if not isinstance(choice, Mapping):
                continue
            if choice.get("index", 0) != 0:
                self.unfit = "several choices"
            delta = choice.get("delta") or {}
            if delta.get("tool_calls") or delta.get("function_call"):
                self.unfit = "tool calls"
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._chars += len(content)
                if self._chars > MAX_TAPPED_CHARS:
                    self.unfit = f"longer than {MAX_TAPPED_CHARS} characters"
                else:
                    self._parts.append(content)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])

    def answer(self) -> dict[str, Any] | None:
        """The streamed answer as the cache stores it, or None when it must not be stored:
        an error, tool calls, a cut-off (finish reason other than stop), empty text."""
        text = self.text
        if self.error or self.unfit or self.finish_reason != "stop" or not text.strip():
            return None
        return {"content": text, "finish_reason": "stop", "model": self.model, "usage": self.usage}


def answer_of(response: Any) -> dict[str, Any] | None:
    """A non-streamed chat completion as the cache stores it, or None when it must not be
    stored (an error body, tool calls, several choices, a cut-off or empty answer)."""
    if not isinstance(response, Mapping) or response.get("error"):
        return None
    choices = response.get("choices") or []
    if len(choices) != 1 or not isinstance(choices[0], Mapping):
        return None
    message = choices[0].get("message") or {}
    content = message.get("content")
    if message.get("tool_calls") or message.get("function_call"):
        return None
    if not isinstance(content, str) or not content.strip():
        return None
    if (choices[0].get("finish_reason") or "stop") != "stop":
        return None
    usage = response.get("usage")
    return {
        "content": content,
        "finish_reason": "stop",
        "model": str(response.get("model") or ""),
        "usage": dict(usage) if isinstance(usage, Mapping) else {},
    }


def completion_body(answer: Mapping[str, Any], model: str) -> dict[str, Any]:
    """A cached answer as a chat.completion body (a non-streamed reply)."""
    return {
        "id": f"chatcmpl-tierwise-cache-{uuid.uuid4().hex[:16]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": str(answer["content"])},
                "finish_reason": answer.get("finish_reason") or "stop",
            }
        ],
        "usage": plain_usage(answer.get("usage")),
    }


def replay_events(answer: Mapping[str, Any], model: str) -> list[str]:
    """A cached answer as SSE chat.completion.chunk events, a few words each, then [DONE]."""
    ident, created = f"chatcmpl-tierwise-cache-{uuid.uuid4().hex[:16]}", int(time.time())

    def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        chunk = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    text = str(answer["content"])
    words = text.split(" ")
    pieces = [
        " ".join(words[i : i + REPLAY_WORDS]) + (" " if i + REPLAY_WORDS < len(words) else "")
        for i in range(0, len(words), REPLAY_WORDS)
    ]
    events = [event({"role": "assistant", "content": ""})]
    events += [event({"content": piece}) for piece in pieces if piece]
    finish = str(answer.get("finish_reason") or "stop")
    events.append(event({}, finish, usage=plain_usage(answer.get("usage"))))
    events.append("data: [DONE]\n\n")
    return events


def plain_usage(usage: Any) -> dict[str, int]:
    tokens_in, tokens_out = usage_tokens(usage)
    prompt, completion = tokens_in or 0, tokens_out or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def usage_of(response: Any) -> Any:
    return response.get("usage") if isinstance(response, Mapping) else None


def usage_tokens(usage: Any) -> tuple[int | None, int | None]:
    """(prompt, completion) tokens from an OpenAI- or Ollama-shaped usage; None if unknown."""
    if not isinstance(usage, Mapping):
        return None, None

    def first(*keys: str) -> int | None:
        for key in keys:
            value = usage.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                return int(value)
        return None

    return (
        first("prompt_tokens", "input_tokens", "prompt_eval_count"),
        first("completion_tokens", "output_tokens", "eval_count"),
    )


def describe(error: Any) -> str:
    """A short readable message out of whatever shape an upstream error has."""
    if isinstance(error, str):
        try:
            error = json.loads(error)
        except ValueError:
            return error[:300]
    if isinstance(error, Mapping):
        inner = error.get("error", error)
        if isinstance(inner, Mapping):
            return str(inner.get("message") or inner.get("detail") or inner)[:300]
        return str(inner)[:300]
    return str(error)[:300]

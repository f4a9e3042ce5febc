"""One normalized view of an OpenAI-style chat request, whatever host it came from."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tierwise.tokens import MESSAGE_OVERHEAD, REPLY_PRIMING, TokenCounter, default_counter

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
SYSTEM_ROLES = ("system", "developer")
TEXT_PART_TYPES = ("text", "input_text", "output_text", "refusal")
IMAGE_PART_TYPES = ("image_url", "input_image", "image")
AUDIO_PART_TYPES = ("input_audio", "audio")
FILE_PART_TYPES = ("file", "input_file")
# What an image costs in context, as OpenAI documents for a 1024x1024 image at high detail
# (85 base + 4 tiles x 170). Hosts that resize differently land near this.
IMAGE_TOKENS = 765


class RequestError(ValueError):
    """A request tierwise cannot route; the message names the field and what is allowed."""


@dataclass(frozen=True)
class Message:
    role: str
    text: str
    images: int = 0
    audio: int = 0
    files: int = 0
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    tool_call_id: str | None = None

    @property
    def has_media(self) -> bool:
        return bool(self.images or self.audio or self.files)


@dataclass(frozen=True)
class Scope:
    """Who a request belongs to; caches and logs are partitioned by it."""

    user: str | None = None
    team: str | None = None
    api_key: str | None = None

    def key(self) -> str:
        """A stable, non-reversible id of this scope (the raw key never leaves the process)."""
        raw = f"u={self.user or ''}|t={self.team or ''}|k={self.api_key or ''}"
        return hashlib.sha256(raw.encode()).hexdigest()[:24]

    @property
    def anonymous(self) -> bool:
        return not (self.user or self.team or self.api_key)


@dataclass
class ChatRequest:
    """The parts of a chat request that routing, caching and summarizing look at."""

    messages: tuple[Message, ...]
    tools: tuple[Mapping[str, Any], ...] = ()
    model: str = "auto"
    stream: bool = False
    temperature: float | None = None
    max_tokens: int | None = None
    scope: Scope = field(default_factory=Scope)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    counter: TokenCounter | None = field(default=None, repr=False, compare=False)
    # Per-request results computed once and shared between steps (token layout, the
    # semantic cache's vector of last_user_text).
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _prompt_tokens: int | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_openai(
        cls,
        body: Mapping[str, Any],
        scope: Scope | None = None,
        counter: TokenCounter | None = None,
    ) -> ChatRequest:
        """Validate and normalize an OpenAI chat-completions body."""
        if not isinstance(body, Mapping):
            raise RequestError("the request body must be a JSON object")
        raw_messages = body.get("messages")
        if not isinstance(raw_messages, Sequence) or isinstance(raw_messages, str | bytes):
            raise RequestError("'messages' must be a list of {role, content} objects")
        if not raw_messages:
            raise RequestError("'messages' is empty; send at least one user message")
        messages = tuple(_message(i, m) for i, m in enumerate(raw_messages))
        tools = body.get("tools") or body.get("functions") or ()
        if not isinstance(tools, Sequence) or isinstance(tools, str):
            raise RequestError("'tools' must be a list of tool definitions")
        return cls(
            messages=messages,
            tools=tuple(t for t in tools if isinstance(t, Mapping)),
            model=str(body.get("model") or "auto"),
            stream=bool(body.get("stream")),
            temperature=_number(body.get("temperature"), "temperature"),
            max_tokens=_int(body.get("max_tokens") or body.get("max_completion_tokens")),
            scope=scope or Scope(user=_str_or_none(body.get("user"))),
            raw=body,
            counter=counter,
        )

    @classmethod
    def from_text(cls, text: str, **kwargs: Any) -> ChatRequest:
        return cls(messages=(Message(role="user", text=text),), **kwargs)

    @property
    def system_prompt(self) -> str:
        return "\n".join(m.text for m in self.messages if m.role in SYSTEM_ROLES and m.text)

    @property
    def last_user(self) -> Message | None:
        for message in reversed(self.messages):
            if message.role == "user":
                return message
        return None

    @property
    def last_user_text(self) -> str:
        """The question being asked now; what the scorers judge."""
        last = self.last_user
        return last.text if last else ""

    @property
    def image_count(self) -> int:
        return sum(m.images for m in self.messages)

    @property
    def has_images(self) -> bool:
        return any(m.images for m in self.messages)

    @property
    def wants_json(self) -> bool:
        """response_format asks for JSON (json_object or json_schema): a `json` tier's job."""
        fmt = self.raw.get("response_format") if isinstance(self.raw, Mapping) else None
        return isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema")

    @property
    def has_tools(self) -> bool:
        return bool(self.tools) or any(m.tool_calls or m.role == "tool" for m in self.messages)

    @property
    def prompt_tokens_upper_bound(self) -> int:
        """A bound no exact count exceeds (a token spans at least one character); cheap."""
        counter = self.counter or default_counter()
        chars = sum(len(m.text) for m in self.messages)
        if self.tools:
            chars += len(_compact_json(self.tools))
        for m in self.messages:
            if m.tool_calls:
                chars += len(_compact_json(m.tool_calls))
        per_char = 1.0 if counter.exact else 1.3
        framing = MESSAGE_OVERHEAD * len(self.messages) + REPLY_PRIMING
        return int(chars * per_char) + 1 + framing + self.image_count * IMAGE_TOKENS

    @property
    def prompt_tokens(self) -> int:
        """Tokens the whole conversation occupies in a context window, tools and images included."""
        if self._prompt_tokens is None:
            self._prompt_tokens = sum(self.message_tokens) + self.tools_tokens + REPLY_PRIMING
        return self._prompt_tokens

    @property
    def message_tokens(self) -> tuple[int, ...]:
        """Each message's share of the window (text, framing, images, tool calls); counted once."""
        known = self.memo.get("message_tokens")
        if known is None:
            counter = self.counter or default_counter()
            known = tuple(message_tokens(m, counter) for m in self.messages)
            self.memo["message_tokens"] = known
        return known

    @property
    def tools_tokens(self) -> int:
        """What the tool definitions occupy in the window."""
        if not self.tools:
            return 0
        return (self.counter or default_counter()).count(_compact_json(self.tools))

    def openai_messages(self) -> list[dict[str, Any]]:
        """The messages as the host sent them (raw dicts, untouched), or rebuilt from text."""
        raw = self.raw.get("messages") if isinstance(self.raw, Mapping) else None
        if isinstance(raw, Sequence) and len(raw) == len(self.messages):
            return [dict(m) for m in raw]
        return [{"role": m.role, "content": m.text} for m in self.messages]


def message_tokens(message: Message, counter: TokenCounter) -> int:
    """Tokens one message occupies in a context window, framing included."""
    tokens = counter.count(message.text) + MESSAGE_OVERHEAD + message.images * IMAGE_TOKENS
    if message.tool_calls:
        tokens += counter.count(_compact_json(message.tool_calls))
    return tokens


def _message(index: int, raw: Any) -> Message:
    where = f"messages[{index}]"
    if not isinstance(raw, Mapping):
        raise RequestError(f"{where} must be an object with 'role' and 'content'")
    role = raw.get("role")
    if role not in ROLES:
        raise RequestError(f"{where}.role: unknown role {role!r}; allowed: {', '.join(ROLES)}")
    content = raw.get("content")
    texts: list[str] = []
    images = audio = files = 0
    if content is None or isinstance(content, str):
        texts.append(content or "")
    elif isinstance(content, Sequence):
        for j, part in enumerate(content):
            if isinstance(part, str):
                texts.append(part)
                continue
            if not isinstance(part, Mapping):
                raise RequestError(f"{where}.content[{j}] must be an object with a 'type'")
            kind = part.get("type")
            if kind in TEXT_PART_TYPES:
                texts.append(str(part.get("text") or part.get("refusal") or ""))
            elif kind in IMAGE_PART_TYPES:
                images += 1
            elif kind in AUDIO_PART_TYPES:
                audio += 1
            elif kind in FILE_PART_TYPES:
                files += 1
            # Other part types are new API surface: passed through untouched, not scored.
    else:
        raise RequestError(f"{where}.content must be a string or a list of content parts")
    tool_calls = raw.get("tool_calls") or ()
    if raw.get("function_call"):
        tool_calls = (raw["function_call"],)
    if not isinstance(tool_calls, Sequence):
        raise RequestError(f"{where}.tool_calls must be a list")
    return Message(
        role=str(role),
        text="\n".join(t for t in texts if t),
        images=images,
        audio=audio,
        files=files,
        tool_calls=tuple(c for c in tool_calls if isinstance(c, Mapping)),
        tool_call_id=_str_or_none(raw.get("tool_call_id")),
    )


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"'{name}' must be a number, got {value!r}")
    return float(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None

"""What the summarizer is asked, how its answer is checked, and what the model finally sees.

Text only: the summarizer gets a plain transcript (images, audio and files become short
notes), and its answer is accepted only if it reads like a summary; anything else falls back
to leaving the old turns out with a visible notice.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tierwise.request import Message
from tierwise.tokens import TokenCounter

# Part of every cache key: changing the instruction makes new summaries instead of reusing old.
PROMPT_VERSION = "1"
SUMMARY_HEADER = "[tierwise summary]"
NOTICE_HEADER = "[tierwise notice]"
# Words per token of English prose, to turn a token budget into a limit models follow.
WORDS_PER_TOKEN = 0.7

INSTRUCTION = (
    "You keep a running summary of a conversation between a user and an AI assistant, so the "
    "assistant can go on helping after the earlier turns are removed from its context. Merge "
    "the summary so far with the new messages into one updated summary of at most {words} "
    "words. Keep the user's goals and constraints, facts, names, numbers, decisions, code "
    "identifiers, file names, answers already given and open questions. Drop greetings and "
    "repetition. Write plain sentences or short bullet points and reply with the summary only."
)

_WORD = re.compile(r"[^\W_]{2,}")


class BadSummary(ValueError):
    """The summarizer answered, but not with a usable summary; the message says why."""


@dataclass(frozen=True)
class SummaryJob:
    """One summarizer call: an OpenAI-style chat to complete and the answer's token budget."""

    messages: tuple[dict[str, str], ...]
    max_tokens: int
    tier: str  # the tier the summary is made to fit
    covered: int  # non-system messages this call folds into the summary

    def as_messages(self) -> list[dict[str, str]]:
        return [dict(m) for m in self.messages]


def build_job(
    previous: str | None, transcript: str, *, max_tokens: int, tier: str, covered: int
) -> SummaryJob:
    words = max(20, int(max_tokens * WORDS_PER_TOKEN))
    earlier = previous.strip() if previous else "(none yet)"
    user = f"Summary so far:\n{earlier}\n\nNew messages to fold in:\n{transcript}"
    return SummaryJob(
        messages=(
            {"role": "system", "content": INSTRUCTION.format(words=words)},
            {"role": "user", "content": user},
        ),
        max_tokens=max_tokens,
        tier=tier,
        covered=covered,
    )


def instruction_tokens(counter: TokenCounter, max_tokens: int) -> int:
    """What a job costs besides its transcript and previous summary."""
    words = max(20, int(max_tokens * WORDS_PER_TOKEN))
    return counter.count(INSTRUCTION.format(words=words)) + 40


def render(message: Message) -> str:
    """One transcript line (or block) for the summarizer; media become short notes."""
    role = {"developer": "system", "function": "tool"}.get(message.role, message.role).upper()
    parts: list[str] = []
    if message.role in ("tool", "function"):
        role = f"TOOL RESULT ({message.tool_call_id})" if message.tool_call_id else "TOOL RESULT"
    if message.text:
        parts.append(message.text)
    for count, what in ((message.images, "image"), (message.audio, "audio clip")):
        if count:
            parts.append(f"[{count} {what}{'s' if count > 1 else ''} attached here, not shown]")
    if message.files:
        parts.append(f"[{message.files} file{'s' if message.files > 1 else ''} attached here]")
    for call in message.tool_calls:
        parts.append(f"[calls tool {_tool_call_text(call)}]")
    return f"{role}: " + "\n".join(parts)


def _tool_call_text(call: Any) -> str:
    function = call.get("function") if isinstance(call.get("function"), dict) else call
    name = function.get("name") or "tool"
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, default=str)
    return f"{name}({arguments})"


def check_summary(value: object) -> str:
    """The summary text, stripped; raises BadSummary for empty or garbled answers."""
    if not isinstance(value, str):
        raise BadSummary(f"returned {type(value).__name__}, not text")
    text = value.strip()
    if not text:
        raise BadSummary("returned an empty summary")
    words = _WORD.findall(text)
    if len(words) < 3:
        raise BadSummary(f"returned too little text to be a summary ({text[:40]!r})")
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\n\t")
    if printable < 0.97 * len(text):
        raise BadSummary("returned control characters or binary data")
    visible = [ch for ch in text if not ch.isspace()]
    if sum(ch.isalnum() for ch in visible) < 0.5 * len(visible):
        raise BadSummary("returned mostly symbols, not prose")
    if len(words) >= 20 and len({w.lower() for w in words}) < 0.2 * len(words):
        raise BadSummary("returned text that repeats itself")
    return text


def clip_head(text: str, max_tokens: int, counter: TokenCounter) -> str:
    """The longest start of `text` within `max_tokens`, cut at a word boundary where possible."""
    total = counter.count(text)
    if total <= max_tokens:
        return text
    cut = _offset(text, max_tokens - 2, total, counter)  # 2 tokens for the ellipsis
    while cut > 0:
        space = text.rfind(" ", 0, cut)
        piece = text[: space if space > cut * 0.8 else cut].rstrip() + " …"
        if counter.count(piece) <= max_tokens:
            return piece
        cut = int(cut * 0.9)
    return ""


def clip_middle(text: str, max_tokens: int, counter: TokenCounter) -> str:
    """Head and tail of `text` within `max_tokens`, with a note of how much was left out."""
    total = counter.count(text)
    if total <= max_tokens:
        return text
    marker = f"\n[... about {total - max_tokens} tokens left out ...]\n"
    room = max(0, max_tokens - counter.count(marker))
    starts = counter.token_starts(text)
    if starts is not None and room >= 2:
        head, tail = starts[room // 2], starts[len(starts) - (room - room // 2)]
        piece = text[:head] + marker + text[tail:]
        if counter.count(piece) <= max_tokens:
            return piece
    share = int(len(text) * room / total) // 2
    while share > 0:
        piece = text[:share] + marker + text[-share:]
        if counter.count(piece) <= max_tokens:
            return piece
        share = int(share * 0.9)
    return marker.strip()


def shorten_middle(text: str, keep_tokens: int, total_tokens: int) -> str:
    """Head and tail of `text` holding about `keep_tokens` of its `total_tokens`, estimated by
    characters (no tokenizer pass): for many messages at once, the caller counts the result."""
    if total_tokens <= keep_tokens:
        return text
    share = int(len(text) * max(0, keep_tokens) / total_tokens) // 2
    marker = f"\n[... about {total_tokens - keep_tokens} tokens left out ...]\n"
    return text[:share] + marker + (text[-share:] if share else "")


def _offset(text: str, tokens: int, total: int, counter: TokenCounter) -> int:
    """Character offset where token number `tokens` starts (estimated without a tokenizer)."""
    if tokens <= 0:
        return 0
    starts = counter.token_starts(text)
    if starts is not None and tokens < len(starts):
        return starts[tokens]
    return int(len(text) * tokens / total)


def summary_block(text: str, covered: int) -> str:
    """The injected system message that carries a summary."""
    noun = "message" if covered == 1 else "messages"
    return (
        f"{SUMMARY_HEADER} The {covered} earlier {noun} of this conversation are summarized "
        f"below to fit this model's context window; the latest messages follow verbatim.\n{text}"
    )


def notice_block(dropped: int, dropped_tokens: int | None, why: str) -> str:
    """The visible marker for turns left out without a summary."""
    noun = "message" if dropped == 1 else "messages"
    size = f" ({dropped_tokens} tokens)" if dropped_tokens else ""
    return (
        f"{NOTICE_HEADER} {dropped} earlier {noun} of this conversation{size} were left out "
        f"without a summary to fit this model's context window ({why})."
    )

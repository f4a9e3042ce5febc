"""A reproducible generator of long conversations built from the dev prompts.

Each chat is a run of turns: a user question drawn from the prompts, then an assistant reply
made of other prompts' text (200-900 tokens, so a chat outgrows a small window in a few
turns). Some turns call a tool, so tool-call / tool-result pairs are exercised. A chat grows
until it reaches its size: a multiple of the cheapest tier's window. The same seed, prompts
and sizes give the same chats.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tierwise.tokens import TokenCounter

REPLY_TOKENS = (200, 900)
TOOL_TURN_SHARE = 0.15
SYSTEM_PROMPTS = (
    "You are a helpful assistant. Answer precisely and say when you are unsure.",
    "You are a patient tutor. Explain step by step and check the student's understanding.",
    None,  # some chats have no system prompt
)
TOOLS: tuple[dict[str, Any], ...] = (
    {
        "type": "function",
        "function": {
            "name": "search_notes",
            "description": "Search the user's notes for a phrase.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    },
)


@dataclass(frozen=True)
class LongChat:
    """One generated conversation: the messages of every turn, in order."""

    chat_id: str
    size: float  # grown to this many times the cheapest tier's window
    system: str | None
    turns: tuple[tuple[dict[str, Any], ...], ...]  # each turn: user message first, then replies

    @property
    def uses_tools(self) -> bool:
        return any(m.get("tool_calls") for turn in self.turns for m in turn)


def generate(
    prompts: Sequence[str],
    *,
    chats: int,
    sizes: Sequence[float],
    window: int,
    counter: TokenCounter,
    seed: int = 7,
) -> list[LongChat]:
    """`chats` conversations, sizes assigned in turn, each grown to size x window tokens."""
    if not prompts:
        raise ValueError("no prompts to build chats from")
    rng = random.Random(seed)
    out = []
    for index in range(chats):
        size = sizes[index % len(sizes)]
        out.append(_chat(f"chat-{index:03d}", size, window, prompts, counter, rng))
    return out


def _chat(
    chat_id: str,
    size: float,
    window: int,
    prompts: Sequence[str],
    counter: TokenCounter,
    rng: random.Random,
) -> LongChat:
    system = rng.choice(SYSTEM_PROMPTS)
    total = counter.count(system) if system else 0
    turns: list[tuple[dict[str, Any], ...]] = []
    while total < size * window:
        question = rng.choice(prompts)
        turn: list[dict[str, Any]] = [{"role": "user", "content": question}]
        if rng.random() < TOOL_TURN_SHARE:
            call_id = f"call_{chat_id[-3:]}_{len(turns)}"
            query = " ".join(question.split()[:6])
            turn.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {
                                "name": "search_notes",
                                "arguments": json.dumps({"query": query}),
                            },
                        }
                    ],
                }
            )
            turn.append(
                {
                    "role": "tool",
                    "tool_call_id": call_id,
                    "content": _text(prompts, 120, rng, counter),
                }
            )
        reply = _text(prompts, rng.randint(*REPLY_TOKENS), rng, counter)
        turn.append({"role": "assistant", "content": reply})
        total += sum(counter.count(str(m.get("content") or "")) + 4 for m in turn)
        turns.append(tuple(turn))
    return LongChat(chat_id, size, system, tuple(turns))


def _text(prompts: Sequence[str], tokens: int, rng: random.Random, counter: TokenCounter) -> str:
    """About `tokens` tokens of prose stitched from the prompts."""
    parts: list[str] = []
    have = 0
    while have < tokens:
        piece = rng.choice(prompts)
        parts.append(piece)
        have += counter.count(piece) + 1
    return "\n\n".join(parts)

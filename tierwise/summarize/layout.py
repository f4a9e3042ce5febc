"""Where a conversation may be cut, and what each part of it costs in a context window.

A cut `b` splits the non-system messages into old ones (index < b), which a summary may
replace, and kept ones (index >= b), sent verbatim. Cuts lie only at user messages (the start
of a turn), at or before the latest one: so the latest user turn is never summarized, a tool
call and its results (which sit inside one turn) are never split, and the kept messages start
with a user message, as strict chat templates want. System messages are never summarized.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tierwise.config import TierConfig
from tierwise.request import SYSTEM_ROLES, ChatRequest
from tierwise.tokens import REPLY_PRIMING

# Room the injected message needs besides the summary text: its header, a notice of turns left
# out without a summary (about 50 tokens), and message framing.
SUMMARY_FRAMING = 112
# Smallest summary worth asking for; with less room the old turns are left out with a notice.
MIN_SUMMARY_TOKENS = 96


@dataclass(frozen=True)
class Layout:
    """Token costs and legal cut points of one request's messages."""

    tokens: tuple[int, ...]  # per message, framing included
    roles: tuple[str, ...]
    latest: int  # index of the latest user message (the turn that is never summarized)
    cuts: tuple[int, ...]  # legal cuts, ascending; the last one is `latest`
    fixed: int  # tool definitions and reply priming
    suffix_tokens: tuple[int, ...]  # [i]: tokens of the non-system messages from i on
    suffix_turns: tuple[int, ...]  # [i]: user messages from i on

    @classmethod
    def of(cls, request: ChatRequest) -> Layout:
        """Built once per request and shared by the context rule and prepare()."""
        known = request.memo.get("layout")
        if isinstance(known, Layout):
            return known
        roles = tuple(m.role for m in request.messages)
        latest = next(
            (i for i in range(len(roles) - 1, -1, -1) if roles[i] == "user"), len(roles) - 1
        )
        cuts = tuple(b for b in range(latest + 1) if roles[b] == "user")
        tokens = request.message_tokens
        suffix_tokens = [0] * (len(roles) + 1)
        suffix_turns = [0] * (len(roles) + 1)
        for i in range(len(roles) - 1, -1, -1):
            own = 0 if roles[i] in SYSTEM_ROLES else tokens[i]
            suffix_tokens[i] = suffix_tokens[i + 1] + own
            suffix_turns[i] = suffix_turns[i + 1] + (roles[i] == "user")
        layout = cls(
            tokens=tokens,
            roles=roles,
            latest=latest,
            cuts=cuts or (latest,),
            fixed=request.tools_tokens + REPLY_PRIMING,
            suffix_tokens=tuple(suffix_tokens),
            suffix_turns=tuple(suffix_turns),
        )
        request.memo["layout"] = layout
        return layout

    def is_system(self, index: int) -> bool:
        return self.roles[index] in SYSTEM_ROLES

    @property
    def system_tokens(self) -> int:
        return sum(t for t, r in zip(self.tokens, self.roles, strict=True) if r in SYSTEM_ROLES)

    @property
    def total(self) -> int:
        return sum(self.tokens) + self.fixed

    def tail(self, cut: int) -> int:
        """Tokens of the non-system messages kept verbatim from `cut` on."""
        return self.suffix_tokens[cut]

    def turns(self, cut: int) -> int:
        """User turns kept verbatim from `cut` on (the latest one included)."""
        return self.suffix_turns[cut]

    def old(self, start: int, end: int) -> list[int]:
        """Indices of the non-system messages in [start, end): what a summary covers."""
        return [i for i in range(start, end) if not self.is_system(i)]

    @property
    def mandatory(self) -> int:
        """What no fitting can remove: system messages, the latest turn, tools, priming."""
        return self.system_tokens + self.tail(self.latest) + self.fixed

    def cuts_from(self, start: int) -> tuple[int, ...]:
        return self.cuts[bisect_left(self.cuts, start) :]

    def can_summarize_into(self, tier: TierConfig, margin: float) -> bool:
        """Whether a summary of the old turns beside the mandatory part fits `tier`."""
        room = tier.usable(margin) - self.mandatory - SUMMARY_FRAMING
        return room >= min(MIN_SUMMARY_TOKENS, tier.summary_tokens)


def prefix_digests(
    messages: Sequence[Mapping[str, Any]], layout: Layout, salt: str
) -> dict[int, str]:
    """A digest of the non-system messages before each legal cut, salted (e.g. by scope).

    System messages are left out: hosts rewrite them between turns (dates, retrieved
    documents), and a summary never covers them, so they must not invalidate it.
    """
    running = hashlib.sha256(salt.encode())
    digests: dict[int, str] = {}
    wanted = set(layout.cuts)
    for index in range(layout.latest + 1):
        if index in wanted:
            digests[index] = running.hexdigest()
        if not layout.is_system(index):
            running.update(_canonical(messages[index]))
    return digests


def _canonical(message: Mapping[str, Any]) -> bytes:
    """The parts of a message that define it; host-added ids and metadata are left out."""
    content = message.get("content")
    if isinstance(content, str) and not any(k in message for k in _STRUCTURED):
        return f"{message.get('role')}\x1f{content}\x1e".encode("utf-8", "surrogatepass")
    core = {k: message.get(k) for k in ("role", "content", *_STRUCTURED)}
    return json.dumps(core, sort_keys=True, separators=(",", ":"), default=str).encode() + b"\x1e"


_STRUCTURED = ("tool_calls", "tool_call_id", "name")

"""What users read: the status line above a reply and the words that replace a failed one.

Open WebUI shows a message's last status collapsed to one line, and every status the message
got when expanded. So a chat first gets the details (score, band, the deciding rule, any
access limit or fitting), and ends on one short line: model, tier, the reason in a few
words, the first-token time. Each entry is sent once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tierwise.cache import CacheHit
from tierwise.decision import Decision
from tierwise.summarize import Fitted

log = logging.getLogger("tierwise.openwebui")
Emitter = Callable[[dict[str, Any]], Awaitable[Any]]

# Rules that move a chat off its tier for the tier's own sake, in a few words.
_TIER_TROUBLE = {"health": "{tier} is down", "sla": "{tier} is slow", "vram": "{tier} GPU is busy"}


def brief_reason(decision: Decision) -> str:
    """Why this tier, in a few words: 'easy question', 'long prompt (9000 tokens)', ..."""
    for reason in decision.reasons:
        rule, _, rest = reason.partition(":")
        if rule in _TIER_TROUBLE and rest.split():
            return _TIER_TROUBLE[rule].format(tier=rest.split()[0])
    rule, _, rest = decision.short_reason().partition(":")
    if rule == "context":
        tokens = f" ({decision.prompt_tokens} tokens)" if decision.prompt_tokens else ""
        return f"long prompt{tokens}"
    if rule == "capability":
        return f"needs {rest.split()[0]}" if rest.split() else "needs a capability"
    band = decision.band.lower()
    return {"low": "easy question", "high": "hard question"}.get(band, f"{band} question")


def status_text(
    decision: Decision, model: str, limit: str = "", wanted: Decision | None = None
) -> str:
    """The detailed line: model, tier, score, the deciding rule (and a tier's trouble that
    moved the chat), and any access limit. With `wanted` (the full ladder's decision when the
    user may not use its tier), its rule is shown: it says where the chat would have gone."""
    reasons = [r for r in decision.reasons if r.partition(":")[0] in _TIER_TROUBLE]
    reasons.append((wanted or decision).short_reason())
    text = (
        f"auto → {model} ({decision.tier}) · score {decision.score:.2f} {decision.band} · "
        + " · ".join(dict.fromkeys(reasons))
    )
    return f"{text} · {limit}" if limit else text


def short_status(model: str, tier: str, reason: str, first_token_ms: float | None) -> str:
    """The one line left shown when the answer is done."""
    line = f"{model} ({tier}) · {reason}"
    return f"{line} · first token {first_token_ms:.0f} ms" if first_token_ms is not None else line


def cache_status(
    decision: Decision, hit: CacheHit, model: str, first_token_ms: float | None
) -> str:
    """The status of a chat answered from the cache (its only entry)."""
    how = "exact repeat" if hit.exact else f"similarity {hit.similarity:.2f}"
    return short_status(f"cached answer from {model}", hit.tier, how, first_token_ms) + (
        f" · score {decision.score:.2f} {decision.band}"
    )


def fit_note(fitted: Fitted) -> str:
    """What fitting did: 'summarized 12 earlier messages for local ...'."""
    return fitted.reason.removeprefix("context: ")


def error_reply(problem: str, task: str | None) -> str:
    """The text a user gets instead of an answer when routing cannot proceed.

    A background task (title, tags, follow-ups) gets no text: Open WebUI would make the
    error its chat title; it keeps its default instead.
    """
    return "" if task else f"tierwise could not answer: {problem}"


class StatusEmitter:
    """Sends status events when Open WebUI gave an emitter (chats, not API calls or tasks)."""

    def __init__(self, emitter: Emitter | None) -> None:
        self.emitter = emitter

    async def detail(self, description: str) -> None:
        """An entry seen when the status is expanded (or until the final line comes)."""
        await self._send(description, done=False)

    async def final(self, description: str) -> None:
        """The line left shown on the finished reply."""
        await self._send(description, done=True)

    async def _send(self, description: str, done: bool) -> None:
        if self.emitter is None:
            return
        try:
            await self.emitter(
                {"type": "status", "data": {"description": description, "done": done}}
            )
        except Exception:  # a closed socket must not fail the chat
            log.debug("status event not delivered", exc_info=True)

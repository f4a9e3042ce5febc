"""tierwise's own model calls through Open WebUI, as the user: the summarizer (the cheapest
tier's model fits long chats to the chosen tier's window) and the LLM judge (the judge tier's
model rates a request whose score sits near a band edge)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from openwebui_pipe import host
from tierwise.request import ChatRequest
from tierwise.scoring.judge import AskJudge
from tierwise.summarize import SummaryJob

JUDGE_TOKENS = 16  # a rating, or "Rating: 7" from a chattier model


class SummarizerError(Exception):
    """A model call of tierwise's own failed; the core then does without its answer."""


Summarizer = Callable[[SummaryJob], Awaitable[str]]


async def complete(
    request: Any, user: Any, model: str, messages: list[dict[str, str]], max_tokens: int
) -> str:
    """The text `model` answers, called through Open WebUI as this user (not streamed).

    Open WebUI answers many errors with HTTP 200 and an error body; those raise here, so the
    core's fallback applies instead of a garbage answer.
    """
    form = {"model": model, "messages": messages, "max_tokens": max_tokens, "stream": False}
    attempt = await host.call_model(request, form, user)
    if not attempt.ok:
        raise SummarizerError(f"{model}: {attempt.error}")
    choices = attempt.response.get("choices") if isinstance(attempt.response, Mapping) else None
    message = (choices[0] or {}).get("message") if choices else None
    content = message.get("content") if isinstance(message, Mapping) else None
    if not isinstance(content, str):
        raise SummarizerError(f"{model} answered without text: {str(attempt.response)[:200]}")
    return content


def summarizer_for(request: Any, user: Any, model: str) -> Summarizer:
    """Summaries from `model` (the cheapest tier), called through Open WebUI as this user."""

    async def summarize(job: SummaryJob) -> str:
        return await complete(request, user, model, job.as_messages(), job.max_tokens)

    return summarize


def judge_for(request: Any, user: Any, model: str) -> AskJudge:
    """The LLM judge's call for this chat: `model` (the judge tier's), as this user."""

    async def ask(messages: list[dict[str, str]], chat: ChatRequest) -> str:
        return await complete(request, user, model, messages, JUDGE_TOKENS)

    return ask

"""Summarization: the cheapest tier's model, called through Open WebUI as the user, as the
core's summarizer for chats longer than the chosen tier's window."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from openwebui_pipe import host
from tierwise.summarize import SummaryJob


class SummarizerError(Exception):
    """The summarizer's model call failed; the core then leaves old turns out with a notice."""


Summarizer = Callable[[SummaryJob], Awaitable[str]]


def summarizer_for(request: Any, user: Any, model: str) -> Summarizer:
    """Summaries from `model` (the cheapest tier), called through Open WebUI as this user.

    Open WebUI answers many errors with HTTP 200 and an error body; those raise here, so the
    core's fallback (old turns left out with a notice) applies instead of a garbage summary.
    """

    async def summarize(job: SummaryJob) -> str:
        form = {
            "model": model,
            "messages": job.as_messages(),
            "max_tokens": job.max_tokens,
            "stream": False,
        }
        attempt = await host.call_model(request, form, user)
        if not attempt.ok:
            raise SummarizerError(f"{model}: {attempt.error}")
        choices = attempt.response.get("choices") if isinstance(attempt.response, Mapping) else None
        message = (choices[0] or {}).get("message") if choices else None
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, str):
            raise SummarizerError(f"{model} answered without text: {str(attempt.response)[:200]}")
        return content

    return summarize

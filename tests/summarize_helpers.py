"""Building blocks for the summarization tests: configs, long chats, recording summarizers."""

from __future__ import annotations

import threading
from typing import Any

from tests.conftest import three_tiers
from tierwise.config import TierwiseConfig, load_config
from tierwise.request import ChatRequest, Scope
from tierwise.router import TierRouter
from tierwise.summarize import SummaryJob

FILLER = (
    "The committee reviewed the quarterly figures, compared them with the forecast and noted "
    "where spending on equipment, travel and training differed from the plan. "
)
SUMMARY = "The user asked arithmetic questions; the assistant answered each and explained."


def config(summarize: dict[str, Any] | None = None, **tiers: Any) -> TierwiseConfig:
    data = three_tiers(**tiers)
    data["summarize"] = {"enabled": True, **(summarize or {})}
    return load_config(data)


def chat(turns: int, reply_repeats: int = 30, system: str | None = "You are helpful.") -> list:
    """A chat of `turns` easy questions with long answers, ending on a new question."""
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    for n in range(turns):
        messages.append({"role": "user", "content": f"What is {n} plus {n}?"})
        messages.append(
            {"role": "assistant", "content": f"{n} + {n} = {2 * n}. " + FILLER * reply_repeats}
        )
    messages.append({"role": "user", "content": f"What is {turns} plus {turns}?"})
    return messages


def request(messages: list, user: str = "alice", **body: Any) -> ChatRequest:
    return ChatRequest.from_openai(
        {"model": "auto", "messages": messages, **body}, scope=Scope(user=user)
    )


class Recorder:
    """A summarizer that records its jobs and answers with a fixed (or given) text."""

    def __init__(self, answer: Any = SUMMARY) -> None:
        self.answer = answer
        self.jobs: list[SummaryJob] = []
        self.lock = threading.Lock()

    def __call__(self, job: SummaryJob) -> Any:
        with self.lock:
            self.jobs.append(job)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def router(summarizer: Any = None, **kwargs: Any) -> TierRouter:
    return TierRouter(config(**kwargs), summarizer=summarizer)


def sent_tokens(fitted_messages: list, **body: Any) -> int:
    """Recount what would be sent, independently of the fitter's own arithmetic."""
    return ChatRequest.from_openai({"messages": fitted_messages, **body}).prompt_tokens

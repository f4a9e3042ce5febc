"""Tier-aware summarization in the proxy: fit each attempt's messages to that tier's window.

Runs as a built-in per-attempt step (when `summarize.enabled`), so a fallback to another
tier is fitted again for that tier. The summarizer is the cheapest tier's own deployment,
called through the proxy's router (litellm_plugin/tier_call.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from litellm_plugin.metadata import metadata_of
from litellm_plugin.steps import Attempt, Step
from litellm_plugin.tier_call import ask_tier
from tierwise.summarize import SummaryJob

if TYPE_CHECKING:
    from litellm_plugin.engine import Engine


class FitContext(Step):
    name = "fit-context"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def before_attempt(self, attempt: Attempt) -> None:
        metadata = metadata_of(attempt.kwargs) or {}
        body = {**attempt.kwargs, "model": self.engine.settings.model_group}
        request = self.engine.request_view(body, metadata)
        fitted = await self.engine.router.aprepare(
            request, attempt.tier.name, summarizer=self.summarize
        )
        if not fitted.changed:
            return
        attempt.kwargs["messages"] = fitted.messages
        attempt.decision.setdefault("context", {})[attempt.tier.name] = fitted.as_dict()

    async def summarize(self, job: SummaryJob) -> str:
        """Ask the cheapest tier's deployments in turn; the core falls back if all fail."""
        cheapest = self.engine.setup.config.ranked_tiers[0].name
        return await ask_tier(
            self.engine.settings.model_group,
            cheapest,
            job.as_messages(),
            job.max_tokens,
            "summarize",
        )

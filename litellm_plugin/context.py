"""Tier-aware summarization in the proxy: fit each attempt's messages to that tier's window.

Runs as a built-in per-attempt step (when `summarize.enabled`), so a fallback to another
tier is fitted again for that tier. The summarizer is the cheapest tier's own deployment,
called through the proxy's router (its keys, retries and cooldowns apply); it is marked
internal so the plugin neither routes nor learns latency from it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from litellm_plugin.metadata import metadata_of
from litellm_plugin.settings import TIER_KEY
from litellm_plugin.steps import Attempt, Step
from tierwise.summarize import SummaryJob

if TYPE_CHECKING:
    from litellm_plugin.engine import Engine

log = logging.getLogger("tierwise.litellm")
INTERNAL_KEY = "tierwise_internal"


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
        router = _proxy_router()
        if router is None:
            raise RuntimeError("no LiteLLM router to call the summarizer through")
        cheapest = self.engine.setup.config.ranked_tiers[0].name
        deployments = [
            d
            for d in router.get_model_list() or []
            if d.get("model_name") == self.engine.settings.model_group
            and (d.get("model_info") or {}).get(TIER_KEY) == cheapest
        ]
        if not deployments:
            raise RuntimeError(f"no deployment of tier {cheapest} to summarize with")
        last: Exception | None = None
        for deployment in deployments:
            try:
                response = await router.acompletion(
                    model=deployment["model_info"]["id"],  # this one deployment, by its id
                    messages=job.as_messages(),
                    max_tokens=job.max_tokens,
                    temperature=0,
                    metadata={INTERNAL_KEY: "summarize"},
                )
                return str(response.choices[0].message.content or "")
            except Exception as exc:  # the next replica, else the core's truncation
                last = exc
                log.warning("tierwise: summarizer call to %s failed: %s", cheapest, exc)
        assert last is not None
        raise last


def is_internal(metadata: dict[str, Any] | None) -> bool:
    return bool((metadata or {}).get(INTERNAL_KEY))


def _proxy_router() -> Any:
    try:
        from litellm.proxy import proxy_server
    except ImportError:
        return None
    return proxy_server.llm_router

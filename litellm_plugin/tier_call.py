"""tierwise's own calls to a tier (the summarizer, the LLM judge), through the proxy's router.

Each goes to one deployment of the tier at a time, by its id, so LiteLLM's keys, retries,
cooldowns, cost tracking and logging callbacks apply as to any call; the metadata marks it
internal, so the plugin neither routes it nor learns latency from it.
"""

from __future__ import annotations

import logging
from typing import Any

from litellm_plugin.settings import TIER_KEY

log = logging.getLogger("tierwise.litellm")
INTERNAL_KEY = "tierwise_internal"


async def ask_tier(
    model_group: str,
    tier: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    purpose: str,
    **options: Any,
) -> str:
    """The first answer of the tier's deployments, tried in turn; raises the last error.
    `options` go to the router's acompletion as they are (e.g. num_retries)."""
    router = _proxy_router()
    if router is None:
        raise RuntimeError(f"no LiteLLM router to call the {purpose} through")
    deployments = [
        d
        for d in router.get_model_list() or []
        if d.get("model_name") == model_group and (d.get("model_info") or {}).get(TIER_KEY) == tier
    ]
    if not deployments:
        raise RuntimeError(f"no deployment of tier {tier} to call the {purpose} on")
    last: Exception | None = None
    for deployment in deployments:
        try:
            response = await router.acompletion(
                model=deployment["model_info"]["id"],  # this one deployment, by its id
                messages=messages,
                max_tokens=max_tokens,
                temperature=0,
                metadata={INTERNAL_KEY: purpose},
                **options,
            )
            return str(response.choices[0].message.content or "")
        except Exception as exc:  # the next replica, else the caller's fallback
            last = exc
            log.warning("tierwise: %s call to %s failed: %s", purpose, tier, exc)
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

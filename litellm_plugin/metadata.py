"""Where tierwise's record travels in a LiteLLM request: its metadata and spend-log entry.

Shared by the hooks, the cache backend, context fitting and the routing strategy, so none
of them needs the engine to read a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RECORD_KEY = "tierwise"


def metadata_of(kwargs: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """LiteLLM keeps request metadata under `litellm_metadata` on some routes, else `metadata`."""
    if not kwargs:
        return None
    for key in ("litellm_metadata", "metadata"):
        value = kwargs.get(key)
        if isinstance(value, dict):
            return value
    return None


def record_in(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    spend = (metadata or {}).get("spend_logs_metadata")
    record = spend.get(RECORD_KEY) if isinstance(spend, Mapping) else None
    return record if isinstance(record, dict) and "tier" in record else None

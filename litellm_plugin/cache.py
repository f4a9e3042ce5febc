"""tierwise's semantic cache as a LiteLLM cache backend, for the `auto` group only.

Plugging in at LiteLLM's cache layer (rather than answering from a hook) keeps every host
behaviour of a cache hit: the answer streams back as proper SSE chunks when the client
asked for a stream, the spend logs mark it `cache_hit` with zero cost, and a streamed answer
is assembled and stored by LiteLLM itself. Other model groups go to the backend the proxy
already had (or to none): their caching is exactly as before.

The lookup runs after routing, so the decided tier is known (the tier stamp); the question's
embedding is computed once per request and kept in its memo for the store after a miss.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import litellm
from litellm.caching.base_cache import BaseCache
from litellm.caching.caching import Cache, LiteLLMCacheType

from litellm_plugin.engine import Engine
from litellm_plugin.metadata import metadata_of, record_in
from litellm_plugin.settings import TIER_KEY
from tierwise.cache import SemanticCache
from tierwise.request import ChatRequest, RequestError

log = logging.getLogger("tierwise.litellm")
OPT_OUT_HEADER = "x-tierwise-no-cache"
CHAT_CALLS: list[Any] = ["acompletion", "completion"]


class TierwiseCacheBackend(BaseCache):
    """`auto` requests: tierwise's cache. Everything else: the proxy's own backend, if any."""

    def __init__(self, engine: Engine, semantic: SemanticCache, original: BaseCache | None):
        super().__init__()
        self.engine = engine
        self.semantic = semantic
        self.original = original

    # -- LiteLLM's BaseCache interface -------------------------------------------------------

    def get_cache(self, key: str, **kwargs: Any) -> Any:
        if not self._ours(kwargs):
            return self.original.get_cache(key, **kwargs) if self.original else None
        return self._lookup(kwargs)

    async def async_get_cache(self, key: str, **kwargs: Any) -> Any:
        if not self._ours(kwargs):
            return await self.original.async_get_cache(key, **kwargs) if self.original else None
        return await asyncio.to_thread(self._lookup, kwargs)  # may embed: off the event loop

    def set_cache(self, key: str, value: Any, **kwargs: Any) -> None:
        if not self._ours(kwargs):
            if self.original:
                self.original.set_cache(key, value, **kwargs)
            return
        self._store(value, kwargs)

    async def async_set_cache(self, key: str, value: Any, **kwargs: Any) -> None:
        if not self._ours(kwargs):
            if self.original:
                await self.original.async_set_cache(key, value, **kwargs)
            return
        await asyncio.to_thread(self._store, value, kwargs)

    async def async_set_cache_pipeline(self, cache_list: list[Any], **kwargs: Any) -> None:
        if self.original:
            await self.original.async_set_cache_pipeline(cache_list, **kwargs)

    async def batch_cache_write(self, key: str, value: Any, **kwargs: Any) -> None:
        await self.async_set_cache(key, value, **kwargs)

    async def disconnect(self) -> None:
        if self.original:
            await self.original.disconnect()

    # -- tierwise's side -----------------------------------------------------------------------

    def _ours(self, kwargs: Mapping[str, Any]) -> bool:
        metadata = metadata_of(kwargs) or {}
        return self.engine.is_ours(metadata.get("model_group"))

    def _request(self, kwargs: Mapping[str, Any]) -> tuple[ChatRequest, dict[str, Any]] | None:
        """The request as the router saw it (model = the group), and its decision record."""
        metadata = metadata_of(kwargs) or {}
        record = record_in(metadata)
        if record is None:
            return None
        body = {**kwargs, "model": self.engine.settings.model_group}
        try:
            request = self.engine.request_view(body, metadata)
        except RequestError:
            return None
        request.memo.update(self.engine.memo_of(kwargs.get("litellm_call_id")))
        return request, record

    def _lookup(self, kwargs: Mapping[str, Any]) -> Any:
        try:
            found = self._request(kwargs)
            if found is None:
                return None
            request, record = found
            tier_order = self.engine.setup.config.tier(str(record["tier"])).order
            hit = self.semantic.lookup(request, tier_order, opt_out=_opted_out(kwargs))
        except Exception as exc:  # a cache fault must never fail the request
            self.engine.fail_open(exc, "cache lookup")
            return None
        if hit is None:
            return None
        record["cache"] = {
            "hit": True,
            "exact": hit.exact,
            "similarity": round(hit.similarity, 4),
            "answered_by": hit.tier,
        }
        self.engine.count("cache_hit")
        return {"timestamp": time.time(), "response": _model_response(hit.response)}

    def _store(self, value: Any, kwargs: Mapping[str, Any]) -> None:
        try:
            found = self._request(kwargs)
            if found is None:
                return
            request, _ = found
            info = kwargs.get("model_info") or (metadata_of(kwargs) or {}).get("model_info")
            tier = info.get(TIER_KEY) if isinstance(info, Mapping) else None
            answer = _answer(value)
            if not isinstance(tier, str) or answer is None:
                return
            order = self.engine.setup.config.tier(tier).order
            self.semantic.put(request, answer, tier, order, opt_out=_opted_out(kwargs))
        except Exception as exc:
            self.engine.fail_open(exc, "cache store")


def _opted_out(kwargs: Mapping[str, Any]) -> bool:
    metadata = metadata_of(kwargs) or {}
    headers = metadata.get("headers") or {}
    if isinstance(headers, Mapping):
        lowered = {str(k).lower(): v for k, v in headers.items()}
        if str(lowered.get(OPT_OUT_HEADER, "")).lower() in ("1", "true", "yes", "on"):
            return True
    return False


def _answer(value: Any) -> dict[str, Any] | None:
    """The parts of a LiteLLM ModelResponse worth replaying: text, finish reason, usage."""
    response = value.get("response") if isinstance(value, Mapping) else value
    if isinstance(response, str):
        response = json.loads(response)
    if not isinstance(response, Mapping):
        return None
    choices = response.get("choices") or []
    if len(choices) != 1:
        return None
    message = choices[0].get("message") or {}
    content = message.get("content")
    if not isinstance(content, str) or not content or message.get("tool_calls"):
        return None
    return {
        "content": content,
        "finish_reason": choices[0].get("finish_reason") or "stop",
        "model": response.get("model"),
        "usage": response.get("usage") or {},
    }


def _model_response(answer: Mapping[str, Any]) -> dict[str, Any]:
    """A chat.completion body LiteLLM turns into a response (or a stream) on a cache hit."""
    usage = answer.get("usage") or {}
    return {
        "id": f"chatcmpl-tierwise-cache-{int(time.time() * 1000)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.get("model") or "auto",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer["content"]},
                "finish_reason": answer.get("finish_reason") or "stop",
            }
        ],
        "usage": {
            "prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0),
            "total_tokens": int(usage.get("total_tokens") or 0),
        },
    }


def install(engine: Engine, semantic: SemanticCache) -> None:
    """Put the backend in front of whatever cache the proxy has.

    Idempotent and cheap when already in place: the pre-call hook calls it on every `auto`
    request, because the proxy may set up its own cache after loading the callbacks.
    """
    cache = litellm.cache
    if cache is not None and isinstance(cache.cache, TierwiseCacheBackend):
        return
    if cache is None:
        cache = litellm.cache = Cache(type=LiteLLMCacheType.LOCAL, supported_call_types=CHAT_CALLS)
        original: BaseCache | None = None
    else:
        original = cache.cache
        if not set(CHAT_CALLS) <= set(cache.supported_call_types or []):
            log.warning(
                "tierwise: the proxy's cache does not cover chat completions "
                "(cache_params.supported_call_types); tierwise's semantic cache stays off"
            )
            return
    cache.cache = TierwiseCacheBackend(engine, semantic, original)
    cache._native_cache = None  # the native runtime would bypass the Python backend
    log.info("tierwise: semantic cache on for %s", engine.settings.model_group)

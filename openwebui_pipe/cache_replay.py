"""Cache replay: look a chat up in the semantic cache, store complete answers, replay hits.

Scoped to the user and stamped with the tier that answered (the core's cache does both). A
cache fault never breaks a chat: it is logged and counted, and the chat goes on to a model
as if the cache were off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from openwebui_pipe.answers import completion_body, replay_events
from openwebui_pipe.chat import Chat
from openwebui_pipe.recording import Recorder
from openwebui_pipe.status import StatusEmitter, cache_status
from tierwise.cache import CacheHit, SemanticCache, cache_encoder
from tierwise.config import CacheConfig, TierwiseConfig
from tierwise.telemetry import CACHE_TIER

log = logging.getLogger("tierwise.openwebui")
_open_lock = threading.Lock()


def open_cache(config: TierwiseConfig) -> SemanticCache:
    """The semantic cache for these settings (its encoder loads here: call off the loop)."""
    with _open_lock:
        settings: CacheConfig = config.cache.model_copy(update={"enabled": True})
        return SemanticCache(settings, cache_encoder(config))


class AnswerCache:
    """The pipe's semantic cache: one per cache settings, shared by every user's ladder."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self._cache: tuple[CacheConfig, str, SemanticCache] | None = None
        self._lock = asyncio.Lock()

    async def lookup(self, chat: Chat) -> CacheHit | None:
        """An earlier answer for this chat's question (None: a miss, a task, or a fault)."""
        route = chat.route
        if route.request is None or route.decision is None:
            return None
        try:
            cache = await self._open(route.config)
            order = route.config.tier(route.decision.tier).order
            return await asyncio.to_thread(cache.lookup, route.request, order)
        except Exception:
            log.exception("tierwise auto: cache lookup failed (the chat goes on without it)")
            self.recorder.count_error("cache lookup")
            return None

    async def store(self, chat: Chat, tier: str, answer: Mapping[str, Any]) -> None:
        """Keep a complete answer for later paraphrases (never for tasks; faults are logged)."""
        request, config = chat.route.request, chat.route.config
        if request is None or chat.route.decision is None:
            return
        try:
            cache = await self._open(config)
            order = config.tier(tier).order
            await asyncio.to_thread(cache.put, request, dict(answer), tier, order)
        except Exception:
            log.exception("tierwise auto: cache store failed (the answer was still sent)")
            self.recorder.count_error("cache store")

    async def replay(
        self, body: Mapping[str, Any], chat: Chat, hit: CacheHit, emit: StatusEmitter
    ) -> Any:
        """Answer from the cache: streamed when the chat asked for a stream, else one body.

        The status is sent once, when the answer is complete (one entry, not two).
        """
        from starlette.responses import StreamingResponse

        route = chat.route
        decision = route.decision
        assert decision is not None
        answer = hit.response
        model = str(answer.get("model") or route.model_for(hit.tier))

        async def finish() -> None:
            self.recorder.finish(
                chat,
                CACHE_TIER,
                ok=True,
                usage=answer.get("usage"),
                answer=answer,
                hit=True,
                model=model,
            )
            await emit.final(cache_status(decision, hit, model, chat.first_token_ms()))

        if not body.get("stream"):
            await finish()
            return completion_body(answer, model)

        async def chunks() -> AsyncIterator[str]:
            for event in replay_events(answer, model):
                if chat.first_chunk is None:
                    chat.first_chunk = time.perf_counter()
                yield event
            await finish()

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def _open(self, config: TierwiseConfig) -> SemanticCache:
        """One cache per cache settings, opened (and its encoder loaded) off the event loop."""
        current = self._cache
        if current is not None and current[0] is config.cache:  # every user's ladder shares it
            return current[2]
        key = json.dumps(
            [config.cache.model_dump(mode="json"), config.encoder.model_dump(mode="json")]
        )
        async with self._lock:
            current = self._cache
            if current is not None and current[1] == key:
                self._cache = (config.cache, key, current[2])
                return current[2]
            cache = await asyncio.to_thread(open_cache, config)
            self._cache = (config.cache, key, cache)
        if current is not None:
            current[2].close()
        return cache

"""The pipe's work for one chat: route it, try its tiers in order, stream the answer back.

`auto_router.py` (the file users paste) holds only the valves and delegates here, so this
logic is importable, typed and tested like the rest of the package. Open WebUI itself is
reached only through `openwebui_pipe.host`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from openwebui_pipe import host, regenerations
from openwebui_pipe.answers import StreamTap, answer_of, describe, usage_of
from openwebui_pipe.cache_replay import AnswerCache
from openwebui_pipe.chat import Chat, Route
from openwebui_pipe.ladder import (
    Setup,
    SetupError,
    base_config,
    build_setup,
    model_tags,
    parse_thresholds,
    parse_tier_models,
    restrict,
    with_switches,
)
from openwebui_pipe.ratings import answer_id
from openwebui_pipe.recording import Recorder
from openwebui_pipe.status import Emitter, StatusEmitter, error_reply, fit_note
from openwebui_pipe.summarizer import Summarizer, judge_for, summarizer_for
from tierwise.adapt.store import log_path
from tierwise.config import TierwiseConfig
from tierwise.decision import Decision
from tierwise.faults import Fault, caller_of, classify
from tierwise.request import ChatRequest, RequestError, Scope
from tierwise.router import TierRouter
from tierwise.rules import RoutingError, Signals
from tierwise.scoring.judge import AskJudge
from tierwise.summarize import Fitted

log = logging.getLogger("tierwise.openwebui")

ROUTER_CACHE_SIZE = 32


class ValveSettings(Protocol):
    """The pipe's valves as the engine reads them (Open WebUI reloads them every call)."""

    tier_models: str
    thresholds: str
    config_path: str
    fallback: bool
    semantic_cache: bool
    summarize: bool
    llm_judge: bool
    show_status: bool

    def model_dump(self) -> dict[str, Any]: ...


@dataclass
class Judging:
    """What the LLM judge's call needs from this chat: Open WebUI's request and the user."""

    request: Any
    user: Any

    def ask(self, config: TierwiseConfig) -> AskJudge | None:
        if not config.scoring.judge.enabled:
            return None
        names = {t.name for t in config.tiers}
        wanted = config.scoring.judge.tier
        tier = config.tier(wanted) if wanted in names else config.ranked_tiers[0]
        return judge_for(self.request, self.user, tier.models[0])


class AutoRouter:
    """State kept across chats: routers per ladder (sharing one set of signals), the ladder
    for the current valves and models, the semantic cache and telemetry."""

    def __init__(self) -> None:
        self.signals = Signals()  # latency and health, shared by every router below
        self.recorder = Recorder(self.signals)
        self.answers = AnswerCache(self.recorder)
        self._routers: dict[str, TierRouter] = {}
        self._setup_cache: tuple[str, Setup] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    async def pipe(
        self,
        valves: ValveSettings,
        body: dict[str, Any],
        user_info: Mapping[str, Any] | None,
        request: Any,
        emitter: Emitter | None,
        task: str | None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Any:
        """Route one chat (or background task) to an installed model and stream it back.

        `metadata` is Open WebUI's `__metadata__`: its chat and message ids name the answer
        in the decision log, so a rating of that message can find its decision.
        """
        started = time.perf_counter()
        quiet = task or not valves.show_status
        emit = StatusEmitter(None if quiet else emitter)
        try:
            user = await host.user_of(user_info)
            installed = await host.installed_models(request, user, own_id=_own_id(body))
            allowed = await host.allowed_ids(installed, user)
            judge = Judging(request, user)
            route = await self.route(valves, body, installed, allowed, user.id, task, judge)
        except (SetupError, RequestError, RoutingError) as exc:
            await emit.final(f"tierwise: {exc}")
            return error_reply(str(exc), task)
        except Exception as exc:  # a bug must still reach the user as words, not a blank
            log.exception("tierwise auto: routing failed")
            self.recorder.count_error("route")
            await emit.final(f"tierwise: internal error ({exc!r})")
            return error_reply(f"internal error ({exc!r}); the server log has the details", task)
        chat = Chat(route, self.recorder.telemetry_for(route.ladder or route.config), started)
        chat.caller = caller_of(Scope(user=str(user.id)))
        if not task:  # a background task's message id is the chat answer's: never rated
            chat.request_id = answer_id(metadata)
            self._note_regeneration(chat, metadata, str(user.id))
        if valves.semantic_cache:
            hit = await self.answers.lookup(chat)
            if hit is not None:
                return await self.answers.replay(body, chat, hit, emit)
        await emit.detail(route.status)
        return await self._serve(valves, body, chat, request, user, emit)

    def _note_regeneration(
        self, chat: Chat, metadata: Mapping[str, Any] | None, user_id: str
    ) -> None:
        """Beside the chat, not before it: an answer of ours it replaces is a weak "not good"."""
        config = chat.route.ladder or chat.route.config
        if not chat.request_id or metadata is None or not config.telemetry.log:
            return
        noted = asyncio.create_task(regenerations.note(metadata, user_id, log_path(config)))
        self._background.add(noted)  # a reference, so the task is not collected mid-way
        noted.add_done_callback(self._background.discard)

    async def route(
        self,
        valves: ValveSettings,
        body: Mapping[str, Any],
        installed: list[Mapping[str, Any]],
        allowed: set[str],
        user_id: str,
        task: str | None,
        judging: Judging | None = None,
    ) -> Route:
        """The tiers to try for this chat, narrowed to the models this user may use.

        With the LLM judge on, a score near a band edge is rated by the judge tier's model
        (the cheapest this user may use when the judge tier is not theirs), as this user."""
        setup = self.setup(valves, installed)
        mine = restrict(setup.config, allowed)
        if mine is None:
            everyone = sorted(m for t in setup.config.tiers for m in t.models)
            raise SetupError(
                "your account may not use any model behind auto "
                f"({', '.join(everyone)}); ask an administrator for access"
            )
        if task:  # titles, tags, follow-ups: the cheapest tier this user may use first
            ladder = [t.name for t in mine.ranked_tiers]
            tiers = ladder if valves.fallback else ladder[:1]
            return Route(mine, None, None, tiers, ladder=setup.config)
        request = ChatRequest.from_openai(body, scope=Scope(user=user_id))
        ask = judging.ask(mine) if judging is not None else None
        decision = await self.router(mine).adecide(request, ask)
        wanted = None
        if len(mine.tiers) < len(setup.config.tiers):  # this user may not use every tier
            full = await self.router(setup.config).adecide(request, ask)
            if full.tier not in {t.name for t in mine.tiers}:
                wanted = full
        tiers = [decision.tier]
        if valves.fallback:
            tiers += list(decision.fallback_chain)
        return Route(mine, decision, wanted, tiers, setup.notes, request, setup.config)

    async def _serve(
        self,
        valves: ValveSettings,
        body: dict[str, Any],
        chat: Chat,
        request: Any,
        user: Any,
        emit: StatusEmitter,
    ) -> Any:
        """Call the route's tiers in order until one answers; the last status stays shown.

        Before each tier is called, the chat is fitted to that tier's window (summarize).
        """
        route = chat.route
        failures: list[str] = []
        router = self.router(route.config)
        summarizer = summarizer_for(
            request, user, route.model_for(route.config.ranked_tiers[0].name)
        )
        for i, tier in enumerate(route.tiers):
            model = route.model_for(tier)
            if i:
                chat.fell_back = f"{route.tiers[i - 1]} failed ({failures[-1]})"
                await emit.detail(f"{chat.fell_back}; trying {model} ({tier})")
            form = {**body, "model": model}
            try:
                target = tier if i else route.decision
                fitted = await self._fit_context(valves, route, target, summarizer)
            except RoutingError as exc:  # this tier cannot hold the chat even summarized
                failures.append(f"does not fit: {exc}")
                continue
            chat.fitted = fitted
            if fitted is not None and fitted.changed:
                form["messages"] = fitted.messages
                await emit.detail(fit_note(fitted))
            attempt_started = time.perf_counter()
            attempt = await host.call_model(request, form, user)
            if not attempt.ok:
                fault = classify(attempt.status, sent=True)
                router.record(tier, ok=False, error=attempt.error, fault=fault, caller=chat.caller)
                if fault is Fault.REQUEST:  # the caller's own error: no dearer tier, no breaker
                    return await self._refused(chat, tier, attempt.error, emit)
                failures.append(attempt.error)
                continue
            if host.is_stream(attempt.response):
                return self._stream_back(
                    valves, attempt.response, chat, tier, attempt_started, emit
                )
            router.record(tier, ok=True, caller=chat.caller)
            answer = answer_of(attempt.response)
            if answer is not None and valves.semantic_cache:
                await self.answers.store(chat, tier, answer)
            self.recorder.finish(
                chat, tier, ok=True, usage=usage_of(attempt.response), answer=answer
            )
            await emit.final(chat.summary(tier))
            return attempt.response
        problem = "; ".join(f"{t}: {e}" for t, e in zip(route.tiers, failures, strict=False))
        self.recorder.finish(chat, route.tiers[len(failures) - 1], ok=False, error=problem)
        await emit.final(f"tierwise: every tier failed ({problem})")
        task = "task" if route.decision is None else None  # background tasks get no text
        return error_reply(f"every tier this chat could use failed ({problem})", task)

    async def _refused(self, chat: Chat, tier: str, error: str, emit: StatusEmitter) -> str:
        """A request fault (the upstream refused this request as malformed): said once, to
        this caller only; no other tier is tried and no shared signal moves."""
        self.recorder.finish(chat, tier, ok=False, error=error)
        await emit.final(f"tierwise: {tier} refused this request ({error}); not retried")
        task = "task" if chat.route.decision is None else None
        problem = f"the model refused this request ({error}); change the request and try again"
        return error_reply(problem, task)

    def _stream_back(
        self,
        valves: ValveSettings,
        upstream: Any,
        chat: Chat,
        tier: str,
        attempt_started: float,
        emit: StatusEmitter,
    ) -> Any:
        """Pass the model's stream through untouched; on the side, time its first chunk (for
        the SLA rule) and read its text, so a complete answer can be cached and recorded."""
        from starlette.responses import StreamingResponse

        router = self.router(chat.route.config)

        async def chunks() -> AsyncIterator[Any]:
            tap = StreamTap()
            first: float | None = None
            try:
                async for chunk in upstream.body_iterator:
                    if first is None:
                        chat.first_chunk = time.perf_counter()
                        first = (chat.first_chunk - attempt_started) * 1000
                    tap.feed(chunk)
                    yield chunk
            except Exception as exc:
                router.record(tier, ok=False, error=describe(exc), caller=chat.caller)
                self.recorder.finish(chat, tier, ok=False, error=describe(exc), tap=tap)
                raise
            except BaseException:  # the client stopped reading (Stop, closed tab)
                self.recorder.finish(chat, tier, ok=True, error="stopped by the client", tap=tap)
                raise
            finally:
                if upstream.background is not None:
                    await upstream.background()
            tap.close()
            ok = not tap.error
            router.record(
                tier, ok=ok, ttft_ms=first if ok else None, error=tap.error, caller=chat.caller
            )
            answer = tap.answer()
            if answer is not None and valves.semantic_cache:
                await self.answers.store(chat, tier, answer)
            self.recorder.finish(chat, tier, ok=ok, error=tap.error, tap=tap)
            await emit.final(chat.summary(tier))

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def _fit_context(
        self,
        valves: ValveSettings,
        route: Route,
        target: Decision | str | None,
        summarizer: Summarizer,
    ) -> Fitted | None:
        """Fit the chat to one tier's window when the summarize valve is on (None: off).

        `target` is the decision for the chosen tier, or a fallback tier's name. The
        summarizer calls the cheapest tier's model as this user; if it fails, the core
        leaves the old turns out with a visible notice. Raises RoutingError when even the
        latest turn cannot fit the tier. A fault of tierwise's own sends the chat unchanged.
        """
        if not valves.summarize or route.request is None or target is None:
            return None
        try:
            return await self.router(route.config).aprepare(
                route.request, target, summarizer=summarizer
            )
        except RoutingError:
            raise
        except Exception:
            log.exception("tierwise auto: fitting the chat failed; sending it unchanged")
            self.recorder.count_error("summarize")
            return None

    def setup(self, valves: ValveSettings, installed: list[Mapping[str, Any]]) -> Setup:
        """The ladder for these valves and models; rebuilt only when either changes."""
        path = valves.config_path.strip()
        stamp = Path(path).stat().st_mtime_ns if path and Path(path).is_file() else 0
        key = json.dumps(
            [valves.model_dump(), stamp, [[m["id"], sorted(model_tags(m))] for m in installed]],
            default=str,
        )
        if self._setup_cache is None or self._setup_cache[0] != key:
            setup = build_setup(
                with_switches(
                    base_config(path), valves.semantic_cache, valves.summarize, valves.llm_judge
                ),
                parse_tier_models(valves.tier_models),
                parse_thresholds(valves.thresholds),
                installed,
            )
            self._setup_cache = (key, setup)
        return self._setup_cache[1]

    def router(self, config: TierwiseConfig) -> TierRouter:
        """One router per distinct ladder; all share the latency and health signals."""
        key = config.model_dump_json()
        router = self._routers.get(key)
        if router is None:
            if len(self._routers) >= ROUTER_CACHE_SIZE:
                self._routers.clear()
            router = self._routers[key] = TierRouter(config, signals=self.signals)
        return router


def _own_id(body: Mapping[str, Any]) -> str:
    return str(body.get("model") or "auto").split(".", 1)[0]

"""
title: tierwise auto router
author: tierwise
version: 0.1.0
license: Apache-2.0
description: Model `auto`: each chat goes to the cheapest tier (local, HPC, cloud) fit for it
requirements: tierwise[learned]>=0.1.0
"""

# One self-contained Open WebUI Pipe. Paste it into Admin -> Functions (id `auto`), or run
# `tierwise openwebui install --url ... --token ...`. It needs the `tierwise` package in Open
# WebUI's Python environment. Open WebUI's loader rewrites a few import spellings in function
# files, so this file never uses them (tests/test_openwebui_pipe_unit.py checks).

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from tierwise.config import ConfigError, TierwiseConfig, load_config
from tierwise.decision import Decision
from tierwise.request import ChatRequest, RequestError, Scope
from tierwise.router import TierRouter
from tierwise.rules import RoutingError, Signals

log = logging.getLogger("tierwise.openwebui")

TAG_PREFIX = "tierwise:"  # a model tagged `tierwise:<tier>` in Open WebUI joins that tier
ROUTER_CACHE_SIZE = 32
Emitter = Callable[[dict[str, Any]], Awaitable[Any]]


class SetupError(Exception):
    """The valves or the installed models cannot form a usable ladder; says what to change."""


# ---------------------------------------------------------------------------------------------
# Valve text formats: `local=llama3.2:1b, qwen2.5:7b; cloud=gpt-4o` and `hpc=0.3; cloud=0.7`.


def parse_tier_models(text: str) -> dict[str, tuple[str, ...]]:
    """Parse the tier_models valve; raises ValueError naming the bad entry."""
    mapping: dict[str, tuple[str, ...]] = {}
    for entry in _entries(text):
        tier, sep, models = entry.partition("=")
        tier = tier.strip()
        ids = tuple(m.strip() for m in models.split(",") if m.strip())
        if not sep or not tier or not ids:
            raise ValueError(
                f"tier_models: {entry!r} is not 'tier=model[,model...]' "
                "(example: 'local=llama3.2:1b; cloud=gpt-4o')"
            )
        if tier in mapping:
            raise ValueError(f"tier_models: tier {tier!r} is listed twice")
        odd = [m for m in ids if "=" in m or any(c.isspace() for c in m)]
        if odd:
            raise ValueError(
                f"tier_models: {odd[0]!r} is not a model id; separate tiers with ';' "
                "(example: 'local=llama3.2:1b; cloud=gpt-4o')"
            )
        mapping[tier] = ids
    return mapping


def parse_thresholds(text: str) -> dict[str, float]:
    """Parse the thresholds valve (lowest score per tier, 0..1); raises ValueError."""
    values: dict[str, float] = {}
    for entry in _entries(text):
        tier, sep, raw = entry.partition("=")
        tier = tier.strip()
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not sep or not tier or not 0.0 <= value <= 1.0:
            raise ValueError(
                f"thresholds: {entry!r} is not 'tier=number' with the number in 0..1 "
                "(example: 'hpc=0.33; cloud=0.67')"
            )
        values[tier] = value
    return values


def _entries(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ";").split(";") if part.strip()]


# ---------------------------------------------------------------------------------------------
# From valves + the install's models to the ladder one user may climb.


@dataclass(frozen=True)
class Setup:
    """The effective tiers for everyone: each tier holds only installed models."""

    config: TierwiseConfig
    notes: tuple[str, ...] = ()


def is_routable(model: Mapping[str, Any], own_id: str) -> bool:
    """Models `auto` may hand a chat to: real connections' models, not pipes or arenas."""
    return not (
        model.get("pipe") or model.get("arena") or model.get("owned_by") == "arena"
    ) and str(model.get("id")) not in ("", own_id)


def model_tags(model: Mapping[str, Any]) -> set[str]:
    """Tag names on a model: its connection's tags and the ones set in Admin -> Models."""
    raw: list[Any] = list(model.get("tags") or [])
    info = model.get("info") or {}
    raw += list((info.get("meta") or {}).get("tags") or [])
    names = set()
    for tag in raw:
        name = tag.get("name") if isinstance(tag, Mapping) else tag
        if isinstance(name, str):
            names.add(name.strip().lower())
    return names


def base_config(config_path: str) -> TierwiseConfig:
    """The tierwise config the valves start from: a YAML file on the server, or the default."""
    try:
        return load_config(config_path.strip() or None)
    except ConfigError as exc:
        raise SetupError(f"config_path: {exc}") from None


def build_setup(
    config: TierwiseConfig,
    tier_models: Mapping[str, Sequence[str]],
    thresholds: Mapping[str, float],
    installed: Sequence[Mapping[str, Any]],
) -> Setup:
    """Fill each tier with installed models and apply threshold overrides.

    A tier named in tier_models gets exactly those models. Any other tier is mapped
    automatically: models tagged `tierwise:<tier>`, then the tier's own `models` from the
    config; Ollama models fill the cheapest tier if nothing else does. Tiers left without
    an installed model are dropped; mapped models that are not installed become notes.
    """
    names = {t.name for t in config.tiers}
    for label, keys in (("tier_models", tier_models), ("thresholds", thresholds)):
        unknown = sorted(set(keys) - names)
        if unknown:
            raise SetupError(
                f"{label}: unknown tier {', '.join(map(repr, unknown))}; "
                f"the tiers are {', '.join(t.name for t in config.ranked_tiers)}"
            )
    ids = [str(m["id"]) for m in installed]
    present = set(ids)
    notes: list[str] = []
    claimed: set[str] = set()
    chosen: dict[str, list[str]] = {}
    for tier in config.ranked_tiers:
        if tier.name in tier_models:
            picked = [m for m in tier_models[tier.name] if m in present]
            missing = [m for m in tier_models[tier.name] if m not in present]
            if missing:
                notes.append(f"{tier.name}: {', '.join(missing)} not installed")
        else:
            tagged = [
                str(m["id"]) for m in installed if f"{TAG_PREFIX}{tier.name}" in model_tags(m)
            ]
            picked = _unique(tagged + [m for m in tier.models if m in present])
        chosen[tier.name] = picked
        claimed.update(picked)
    cheapest = config.ranked_tiers[0].name
    if not chosen[cheapest] and cheapest not in tier_models:
        ollama = [str(m["id"]) for m in installed if m.get("owned_by") == "ollama"]
        chosen[cheapest] = [m for m in ollama if m not in claimed]
    tiers = []
    for tier in config.ranked_tiers:
        if not chosen[tier.name]:
            log.debug("tier %s has no installed model; skipped", tier.name)
            continue
        data = tier.model_dump(mode="json")
        data["models"] = chosen[tier.name]
        if tier.name in thresholds:
            data["min_score"] = thresholds[tier.name]
        tiers.append(data)
    if not tiers:
        raise SetupError(
            "no tier has an installed model: set the tier_models valve (for example "
            f"'{cheapest}=<model id>') or tag models '{TAG_PREFIX}<tier>' in Admin -> Models"
            + (f"; installed: {', '.join(ids[:20])}" if ids else "; no models are installed")
        )
    data = config.model_dump(mode="json")
    data["tiers"] = tiers
    try:
        return Setup(load_config(data), tuple(notes))
    except ConfigError as exc:
        raise SetupError(str(exc).replace("<mapping>: ", "")) from None


def restrict(config: TierwiseConfig, allowed: set[str]) -> TierwiseConfig | None:
    """The tiers one user may use: each keeps only models the user has access to."""
    tiers = []
    for tier in config.ranked_tiers:
        models = [m for m in tier.models if m in allowed]
        if models:
            tiers.append(tier.model_copy(update={"models": tuple(models)}))
    if not tiers:
        return None
    return config.model_copy(update={"tiers": tuple(tiers)})


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# ---------------------------------------------------------------------------------------------
# What the user sees.


def status_text(decision: Decision, model: str, wanted: Decision | None = None) -> str:
    """One status line: model, tier, score and the reason (and any access limit)."""
    text = f"auto → {model} ({decision.tier}) · score {decision.score:.2f} {decision.band}"
    if wanted is not None and wanted.tier != decision.tier:
        return f"{text} · {wanted.short_reason()} · your account may use up to {decision.tier}"
    return f"{text} · {decision.short_reason()}"


def error_reply(problem: str) -> str:
    """The text a user gets instead of an answer when routing cannot proceed."""
    return f"tierwise could not answer: {problem}"


# ---------------------------------------------------------------------------------------------
# Valve checks that need the live Open WebUI (installed models, features of this tierwise).


def saving_valves() -> bool:
    """Whether Open WebUI is building Valves to save them (not to load them for a call).

    Open WebUI constructs Valves both when an admin saves them and before every call, with
    no hook that tells the two apart. Only a save should refuse a model that is not
    installed right now: at load time a model missing because its connection is down must
    not take `auto` off the model list (the call then reports it). So the install check
    looks for Open WebUI's save handler on the call stack.
    """
    frame = sys._getframe(1)
    for _ in range(40):
        if frame is None:
            return False
        if frame.f_code.co_name == "update_function_valves_by_id":
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def live_models() -> list[Mapping[str, Any]]:
    """The models Open WebUI lists right now (empty before its first model listing)."""
    main = sys.modules.get("open_webui.main")
    models = getattr(getattr(getattr(main, "app", None), "state", None), "MODELS", None)
    if not models:
        return []
    return [m for _, m in models.items()]


# The core features this pipe calls at its extension points (Pipe._cache_lookup,
# Pipe._fit_context). Empty until tierwise.cache and TierRouter.prepare land and are wired.
WIRED_FEATURES: frozenset[str] = frozenset()


def missing_features(semantic_cache: bool, summarize: bool) -> list[str]:
    """Switches that this tierwise, or this version of the pipe, cannot honour yet."""
    problems = []
    if semantic_cache and "semantic_cache" not in WIRED_FEATURES:
        if importlib.util.find_spec("tierwise.cache") is None:
            problems.append(
                "semantic_cache: this tierwise has no semantic cache (tierwise.cache) yet; "
                "leave it off or upgrade tierwise"
            )
        else:
            problems.append(
                "semantic_cache: this auto function does not use tierwise.cache yet; "
                "update the function (tierwise openwebui install)"
            )
    if summarize and "summarize" not in WIRED_FEATURES:
        if not hasattr(TierRouter, "prepare"):
            problems.append(
                "summarize: this tierwise has no context summarization (TierRouter.prepare) "
                "yet; leave it off or upgrade tierwise"
            )
        else:
            problems.append(
                "summarize: this auto function does not use TierRouter.prepare yet; "
                "update the function (tierwise openwebui install)"
            )
    return problems


# ---------------------------------------------------------------------------------------------


@dataclass
class Attempt:
    """What one call to an installed model gave back."""

    ok: bool
    response: Any = None
    error: str = ""


@dataclass
class Route:
    """The tiers to try for one chat, in order, with the models and status to show."""

    config: TierwiseConfig
    decision: Decision | None
    wanted: Decision | None
    tiers: list[str] = field(default_factory=list)
    notes: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        model = self.model_for(self.tiers[0])
        if self.decision is None:
            return f"auto → {model} ({self.tiers[0]}) · background task"
        line = status_text(self.decision, model, self.wanted)
        return f"{line} · {'; '.join(self.notes)}" if self.notes else line

    def model_for(self, tier: str) -> str:
        return self.config.tier(tier).models[0]


class Pipe:
    class Valves(BaseModel):
        tier_models: str = Field(
            "",
            description=(
                "Tier -> installed model ids, e.g. 'local=llama3.2:1b; cloud=gpt-4o'. Tiers "
                "not named here are mapped automatically: models tagged 'tierwise:<tier>', "
                "then the config's model names; Ollama models fill the cheapest tier."
            ),
        )
        thresholds: str = Field(
            "",
            description="Lowest score (0..1) per tier, e.g. 'hpc=0.33; cloud=0.67'.",
        )
        config_path: str = Field(
            "",
            description="A tierwise YAML file on this server; empty: the built-in ladder.",
        )
        fallback: bool = Field(
            True, description="When a tier fails, try the next tier the user may use."
        )
        semantic_cache: bool = Field(
            False, description="Answer paraphrases of recent questions from the cache."
        )
        summarize: bool = Field(
            False, description="Summarize long chats to fit the chosen tier's window."
        )
        show_status: bool = Field(True, description="Show tier, score and reason above replies.")

        @model_validator(mode="after")
        def _check(self) -> Any:
            # Shape errors are always refused; install-dependent ones only when saving.
            try:
                tier_models = parse_tier_models(self.tier_models)
                thresholds = parse_thresholds(self.thresholds)
            except ValueError as exc:
                raise SetupError(str(exc)) from None
            if not saving_valves():
                return self
            problems = missing_features(self.semantic_cache, self.summarize)
            installed = [m for m in live_models() if is_routable(m, "auto")]
            config = base_config(self.config_path)
            ids = {str(m["id"]) for m in installed}
            if installed:
                unknown = [m for ms in tier_models.values() for m in ms if m not in ids]
                if unknown:
                    problems.append(
                        f"tier_models: unknown model id {', '.join(map(repr, unknown))}; "
                        f"installed: {', '.join(sorted(ids))}"
                    )
                else:
                    try:
                        build_setup(config, tier_models, thresholds, installed)
                    except SetupError as exc:
                        problems.append(str(exc))
            if problems:
                raise SetupError("; ".join(problems))
            return self

    def __init__(self) -> None:
        self.valves = self.Valves()
        self.signals = Signals()  # latency and health, shared by every router below
        self._routers: dict[str, TierRouter] = {}
        self._setup_cache: tuple[str, Setup] | None = None

    # -- the call ---------------------------------------------------------------------------

    async def pipe(
        self,
        body: dict[str, Any],
        __user__: dict[str, Any] | None = None,
        __request__: Any = None,
        __event_emitter__: Emitter | None = None,
        __task__: str | None = None,
    ) -> Any:
        """Route one chat (or background task) to an installed model and stream it back."""
        quiet = __task__ or not self.valves.show_status
        emit = _Status(None if quiet else __event_emitter__)
        try:
            user = await _user(__user__)
            installed = await _installed_models(__request__, user, own_id=_own_id(body))
            allowed = await _allowed_ids(installed, user)
            route = self._route(body, installed, allowed, user.id, task=__task__)
        except (SetupError, RequestError, RoutingError) as exc:
            await emit(f"tierwise: {exc}", True)
            return error_reply(str(exc))
        except Exception as exc:  # a bug must still reach the user as words, not a blank
            log.exception("tierwise auto: routing failed")
            await emit(f"tierwise: internal error ({exc!r})", True)
            return error_reply(f"internal error ({exc!r}); the server log has the details")
        await emit(route.status)
        return await self._serve(body, route, __request__, user, emit)

    def _route(
        self,
        body: Mapping[str, Any],
        installed: list[Mapping[str, Any]],
        allowed: set[str],
        user_id: str,
        task: str | None,
    ) -> Route:
        setup = self._setup(installed)
        mine = restrict(setup.config, allowed)
        if mine is None:
            everyone = sorted(m for t in setup.config.tiers for m in t.models)
            raise SetupError(
                "your account may not use any model behind auto "
                f"({', '.join(everyone)}); ask an administrator for access"
            )
        if task:  # titles, tags, follow-ups: the cheapest tier this user may use first
            ladder = [t.name for t in mine.ranked_tiers]
            return Route(mine, None, None, ladder if self.valves.fallback else ladder[:1])
        request = ChatRequest.from_openai(body, scope=Scope(user=user_id))
        decision = self._router(mine).decide(request)
        wanted = None
        if len(mine.tiers) < len(setup.config.tiers):  # this user may not use every tier
            full = self._router(setup.config).decide(request)
            if _order(setup.config, full.tier) > _order(setup.config, decision.tier):
                wanted = full
        tiers = [decision.tier]
        if self.valves.fallback:
            tiers += list(decision.fallback_chain)
        self._cache_lookup(request, decision)
        self._fit_context(request, decision)
        return Route(mine, decision, wanted, tiers, setup.notes)

    async def _serve(
        self, body: dict[str, Any], route: Route, request: Any, user: Any, emit: _Status
    ) -> Any:
        """Call the route's tiers in order until one answers; the last status stays shown."""
        failures: list[str] = []
        router = self._router(route.config)
        line = route.status
        for i, tier in enumerate(route.tiers):
            model = route.model_for(tier)
            if i:
                line = f"{route.tiers[i - 1]} failed ({failures[-1]}); trying {model} ({tier})"
                await emit(line)
            started = time.perf_counter()
            attempt = await _call_model(request, {**body, "model": model}, user)
            if not attempt.ok:
                router.record(tier, ok=False, error=attempt.error)
                failures.append(attempt.error)
                continue
            if _is_stream(attempt.response):
                return _relay(attempt.response, router, tier, started, emit, line)
            router.record(tier, ok=True)
            await emit(line, True)
            return attempt.response
        problem = "; ".join(f"{t}: {e}" for t, e in zip(route.tiers, failures, strict=False))
        await emit(f"tierwise: every tier failed ({problem})", True)
        return error_reply(f"every tier this chat could use failed ({problem})")

    # -- extension points: semantic cache and summarization (issue 8, item 4) -----------------

    def _cache_lookup(self, request: ChatRequest, decision: Decision) -> None:
        """Where the semantic cache answers before any model is called (semantic_cache).

        When tierwise.cache lands: look the request up (scoped by user, stamped with the
        tier), replay a hit as the reply, and store answers from _relay. Until then the valve
        cannot be saved as on (missing_features), and a stale 'on' is reported, not ignored.
        """
        if self.valves.semantic_cache:
            raise SetupError("; ".join(missing_features(True, False)))

    def _fit_context(self, request: ChatRequest, decision: Decision) -> None:
        """Where tier-aware summarization fits the chat into the chosen tier's window.

        When TierRouter.prepare lands it is called here with the decision and a summarizer
        that calls the cheapest tier through Open WebUI. Until then, as _cache_lookup.
        """
        if self.valves.summarize:
            raise SetupError("; ".join(missing_features(False, True)))

    # -- cached pieces --------------------------------------------------------------------------

    def _setup(self, installed: list[Mapping[str, Any]]) -> Setup:
        """The ladder for these valves and models; rebuilt only when either changes."""
        valves = self.valves
        path = valves.config_path.strip()
        stamp = Path(path).stat().st_mtime_ns if path and Path(path).is_file() else 0
        key = json.dumps(
            [valves.model_dump(), stamp, [[m["id"], sorted(model_tags(m))] for m in installed]],
            default=str,
        )
        if self._setup_cache is None or self._setup_cache[0] != key:
            setup = build_setup(
                base_config(path),
                parse_tier_models(valves.tier_models),
                parse_thresholds(valves.thresholds),
                installed,
            )
            self._setup_cache = (key, setup)
        return self._setup_cache[1]

    def _router(self, config: TierwiseConfig) -> TierRouter:
        """One router per distinct ladder; all share the latency and health signals."""
        key = config.model_dump_json()
        router = self._routers.get(key)
        if router is None:
            if len(self._routers) >= ROUTER_CACHE_SIZE:
                self._routers.clear()
            router = self._routers[key] = TierRouter(config, signals=self.signals)
        return router


# ---------------------------------------------------------------------------------------------
# Open WebUI glue. Its modules are imported inside these functions, so the logic above can be
# imported (and unit-tested) without Open WebUI installed.


class _Status:
    """Sends status events when Open WebUI gave an emitter (chats, not API calls)."""

    def __init__(self, emitter: Emitter | None) -> None:
        self.emitter = emitter

    async def __call__(self, description: str, done: bool = False) -> None:
        if self.emitter is None:
            return
        try:
            await self.emitter(
                {"type": "status", "data": {"description": description, "done": done}}
            )
        except Exception:  # a closed socket must not fail the chat
            log.debug("status event not delivered", exc_info=True)


def _own_id(body: Mapping[str, Any]) -> str:
    return str(body.get("model") or "auto").split(".", 1)[0]


def _order(config: TierwiseConfig, tier: str) -> int:
    try:
        return config.tier(tier).order
    except KeyError:
        return -1


async def _user(raw: Mapping[str, Any] | None) -> Any:
    from open_webui.models.users import Users

    user = await Users.get_user_by_id(str((raw or {}).get("id") or ""))
    if user is None:
        raise SetupError("no signed-in user came with this request")
    return user


async def _installed_models(request: Any, user: Any, own_id: str) -> list[Mapping[str, Any]]:
    models = request.app.state.MODELS
    if not models:
        from open_webui.utils.models import get_all_models

        await get_all_models(request, user=user)
        models = request.app.state.MODELS
    return [m for _, m in models.items() if is_routable(m, own_id)]


async def _allowed_ids(installed: list[Mapping[str, Any]], user: Any) -> set[str]:
    """Models this user may use, by Open WebUI's own access rules."""
    from open_webui.utils.models import get_filtered_models

    return {str(m["id"]) for m in await get_filtered_models(list(installed), user)}


def _is_stream(response: Any) -> bool:
    from starlette.responses import StreamingResponse

    return isinstance(response, StreamingResponse)


async def _call_model(request: Any, form_data: dict[str, Any], user: Any) -> Attempt:
    """Call one installed model as this user; never bypasses Open WebUI's access control."""
    from open_webui.utils.chat import generate_chat_completion
    from starlette.responses import Response, StreamingResponse

    try:
        response = await generate_chat_completion(request, form_data, user, bypass_filter=False)
    except Exception as exc:
        return Attempt(False, error=_describe(getattr(exc, "detail", None) or exc))
    if isinstance(response, StreamingResponse):
        return Attempt(True, response)
    if isinstance(response, Response):
        if response.status_code >= 400:
            body = bytes(response.body).decode("utf-8", "replace")
            return Attempt(False, error=f"HTTP {response.status_code}: {_describe(body)}")
        try:
            return Attempt(True, json.loads(bytes(response.body)))
        except ValueError:
            return Attempt(False, error=f"unreadable reply: {bytes(response.body)[:200]!r}")
    if isinstance(response, Mapping) and response.get("error"):
        return Attempt(False, error=_describe(response["error"]))
    return Attempt(True, response)


def _describe(error: Any) -> str:
    """A short readable message out of whatever shape an upstream error has."""
    if isinstance(error, str):
        try:
            error = json.loads(error)
        except ValueError:
            return error[:300]
    if isinstance(error, Mapping):
        inner = error.get("error", error)
        if isinstance(inner, Mapping):
            return str(inner.get("message") or inner.get("detail") or inner)[:300]
        return str(inner)[:300]
    return str(error)[:300]


def _relay(
    upstream: Any, router: TierRouter, tier: str, started: float, emit: _Status, line: str
) -> Any:
    """Pass the model's stream through untouched, timing its first chunk for the SLA rule."""
    from starlette.responses import StreamingResponse

    async def chunks() -> AsyncIterator[Any]:
        first: float | None = None
        try:
            async for chunk in upstream.body_iterator:
                if first is None:
                    first = (time.perf_counter() - started) * 1000
                yield chunk
        except Exception as exc:
            router.record(tier, ok=False, error=_describe(exc))
            raise
        finally:
            if upstream.background is not None:
                await upstream.background()
        router.record(tier, ok=True, ttft_ms=first)
        await emit(f"{line} · first token {first:.0f} ms" if first is not None else line, True)

    return StreamingResponse(chunks(), media_type="text/event-stream")

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
# files, so this file never uses them (tests/test_openwebui_pipe.py checks).

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from tierwise.cache import CacheHit, SemanticCache, cache_encoder
from tierwise.config import CacheConfig, ConfigError, TelemetryConfig, TierwiseConfig, load_config
from tierwise.decision import Decision
from tierwise.request import ChatRequest, RequestError, Scope
from tierwise.router import TierRouter
from tierwise.rules import RoutingError, Signals
from tierwise.summarize import Fitted, SummaryJob
from tierwise.telemetry import CACHE_TIER, Telemetry
from tierwise.telemetry.log import DecisionLog, default_path
from tierwise.tokens import default_counter

log = logging.getLogger("tierwise.openwebui")

HOST = "openwebui"  # the host label in telemetry
TAG_PREFIX = "tierwise:"  # a model tagged `tierwise:<tier>` in Open WebUI joins that tier
ROUTER_CACHE_SIZE = 32
REPLAY_WORDS = 8  # words per chunk when a cached answer is streamed back
MAX_TAPPED_CHARS = 1_000_000  # longer streamed answers are relayed but not cached
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


def with_switches(config: TierwiseConfig, semantic_cache: bool, summarize: bool) -> TierwiseConfig:
    """The config with the valves' switches applied: the valves turn the semantic cache and
    summarization on or off; the config's `cache:` and `summarize:` sections give the rest."""
    return config.model_copy(
        update={
            "cache": config.cache.model_copy(update={"enabled": semantic_cache}),
            "summarize": config.summarize.model_copy(update={"enabled": summarize}),
        }
    )


def feature_problems(config: TierwiseConfig, semantic_cache: bool, summarize: bool) -> list[str]:
    """What keeps the switched-on features from working with this config (checked on save)."""
    problems = []
    if semantic_cache:
        probe = SemanticCache(config.cache.model_copy(update={"enabled": True}), encoder=None)
        try:
            if not probe.enabled:
                problems.append(
                    f"semantic_cache: {probe.disabled_reason}; set cache.directory (or "
                    "cache.redis_url) in the config_path file to a place this server can write"
                )
        finally:
            probe.close()
    if summarize and not any(t.summary.enabled for t in config.tiers):
        problems.append(
            "summarize: every tier in the config has summary.enabled: false, so there is "
            "nothing to summarize into; enable it for a tier or leave the valve off"
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

    config: TierwiseConfig  # the tiers this user may use
    decision: Decision | None  # None for background tasks
    wanted: Decision | None
    tiers: list[str] = field(default_factory=list)
    notes: tuple[str, ...] = ()
    request: ChatRequest | None = None  # the core's view of the chat (None for tasks)
    ladder: TierwiseConfig | None = None  # every user's tiers (prices for telemetry)

    @property
    def status(self) -> str:
        model = self.model_for(self.tiers[0])
        if self.decision is None:
            return f"auto → {model} ({self.tiers[0]}) · background task"
        line = status_text(self.decision, model, self.wanted)
        return f"{line} · {'; '.join(self.notes)}" if self.notes else line

    def model_for(self, tier: str) -> str:
        return self.config.tier(tier).models[0]

    def logged(self) -> Decision:
        """The decision telemetry records; a background task's names the cheapest tier."""
        if self.decision is not None:
            return self.decision
        first = self.config.tier(self.tiers[0])
        return Decision(
            tier=first.name,
            models=first.models,
            score=float("nan"),
            band="",
            reasons=("background task: the cheapest tier first",),
            fallback_chain=tuple(self.tiers[1:]),
            scorer="none",
        )


@dataclass
class Chat:
    """One chat on its way through the pipe, recorded once when it finishes."""

    route: Route
    telemetry: Telemetry | None
    started: float
    fitted: Fitted | None = None  # how the chat was fitted to the tier last tried
    first_chunk: float | None = None  # when the first streamed chunk went out
    recorded: bool = False


# ---------------------------------------------------------------------------------------------
# Answers: reading a model's reply (streamed or not), replaying a cached one, status lines.


class StreamTap:
    """Reads an OpenAI-style SSE stream on the side while it is relayed unchanged.

    Chunks may split lines anywhere (bytes or str). It collects the answer's text, the last
    finish reason, usage and any error event, and notes what makes an answer unfit to cache:
    tool calls, a second choice, a cut-off, or more text than MAX_TAPPED_CHARS. It never raises.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._parts: list[str] = []
        self._chars = 0
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.model = ""
        self.error = ""
        self.done = False  # saw `data: [DONE]`
        self.unfit = ""  # why this answer must not be cached ("" = fine)

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def feed(self, chunk: Any) -> None:
        try:
            if isinstance(chunk, str):
                chunk = chunk.encode("utf-8")
            self._buffer += bytes(chunk)
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                self._line(line.strip())
        except Exception as exc:  # an odd chunk must not break the relay
            self.unfit = f"unreadable stream ({type(exc).__name__})"

    def close(self) -> None:
        """The stream ended: read a last line that had no newline."""
        rest, self._buffer = self._buffer.strip(), b""
        if rest:
            try:
                self._line(rest)
            except Exception as exc:
                self.unfit = f"unreadable stream ({type(exc).__name__})"

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            event = json.loads(payload)
        except ValueError:
            self.unfit = "a stream line that is not JSON"
            return
        if not isinstance(event, Mapping):
            return
        if event.get("error"):
            self.error = _describe(event["error"])
            return
        if isinstance(event.get("model"), str):
            self.model = event["model"]
        if isinstance(event.get("usage"), Mapping):
            self.usage = dict(event["usage"])
        for choice in event.get("choices") or ():
            if not isinstance(choice, Mapping):
                continue
            if choice.get("index", 0) != 0:
                self.unfit = "several choices"
            delta = choice.get("delta") or {}
            if delta.get("tool_calls") or delta.get("function_call"):
                self.unfit = "tool calls"
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._chars += len(content)
                if self._chars > MAX_TAPPED_CHARS:
                    self.unfit = f"longer than {MAX_TAPPED_CHARS} characters"
                else:
                    self._parts.append(content)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])

    def answer(self) -> dict[str, Any] | None:
        """The streamed answer as the cache stores it, or None when it must not be stored:
        an error, tool calls, a cut-off (finish reason other than stop), empty text."""
        text = self.text
        if self.error or self.unfit or self.finish_reason != "stop" or not text.strip():
            return None
        return {"content": text, "finish_reason": "stop", "model": self.model, "usage": self.usage}


def answer_of(response: Any) -> dict[str, Any] | None:
    """A non-streamed chat completion as the cache stores it, or None when it must not be
    stored (an error body, tool calls, several choices, a cut-off or empty answer)."""
    if not isinstance(response, Mapping) or response.get("error"):
        return None
    choices = response.get("choices") or []
    if len(choices) != 1 or not isinstance(choices[0], Mapping):
        return None
    message = choices[0].get("message") or {}
    content = message.get("content")
    if message.get("tool_calls") or message.get("function_call"):
        return None
    if not isinstance(content, str) or not content.strip():
        return None
    if (choices[0].get("finish_reason") or "stop") != "stop":
        return None
    usage = response.get("usage")
    return {
        "content": content,
        "finish_reason": "stop",
        "model": str(response.get("model") or ""),
        "usage": dict(usage) if isinstance(usage, Mapping) else {},
    }


def completion_body(answer: Mapping[str, Any], model: str) -> dict[str, Any]:
    """A cached answer as a chat.completion body (a non-streamed reply)."""
    return {
        "id": f"chatcmpl-tierwise-cache-{uuid.uuid4().hex[:16]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": str(answer["content"])},
                "finish_reason": answer.get("finish_reason") or "stop",
            }
        ],
        "usage": _plain_usage(answer.get("usage")),
    }


def replay_events(answer: Mapping[str, Any], model: str) -> list[str]:
    """A cached answer as SSE chat.completion.chunk events, a few words each, then [DONE]."""
    ident, created = f"chatcmpl-tierwise-cache-{uuid.uuid4().hex[:16]}", int(time.time())

    def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        chunk = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    text = str(answer["content"])
    words = text.split(" ")
    pieces = [
        " ".join(words[i : i + REPLAY_WORDS]) + (" " if i + REPLAY_WORDS < len(words) else "")
        for i in range(0, len(words), REPLAY_WORDS)
    ]
    events = [event({"role": "assistant", "content": ""})]
    events += [event({"content": piece}) for piece in pieces if piece]
    finish = str(answer.get("finish_reason") or "stop")
    events.append(event({}, finish, usage=_plain_usage(answer.get("usage"))))
    events.append("data: [DONE]\n\n")
    return events


def _plain_usage(usage: Any) -> dict[str, int]:
    tokens_in, tokens_out = _usage_tokens(usage)
    prompt, completion = tokens_in or 0, tokens_out or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _usage_of(response: Any) -> Any:
    return response.get("usage") if isinstance(response, Mapping) else None


def _usage_tokens(usage: Any) -> tuple[int | None, int | None]:
    """(prompt, completion) tokens from an OpenAI- or Ollama-shaped usage; None if unknown."""
    if not isinstance(usage, Mapping):
        return None, None

    def first(*keys: str) -> int | None:
        for key in keys:
            value = usage.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                return int(value)
        return None

    return (
        first("prompt_tokens", "input_tokens", "prompt_eval_count"),
        first("completion_tokens", "output_tokens", "eval_count"),
    )


def cache_status(decision: Decision, hit: CacheHit, model: str) -> str:
    """The status line of a chat answered from the cache."""
    how = "exact repeat" if hit.exact else f"similarity {hit.similarity:.2f}"
    return (
        f"auto → cached answer from {model} ({hit.tier}) · {how} · score {decision.score:.2f} "
        f"{decision.band} · {decision.short_reason()}"
    )


def fit_note(fitted: Fitted) -> str:
    """What fitting did, for the status line: 'summarized 12 earlier messages for local ...'."""
    return fitted.reason.removeprefix("context: ")


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
        attempt = await _call_model(request, form, user)
        if not attempt.ok:
            raise SummarizerError(f"{model}: {attempt.error}")
        choices = attempt.response.get("choices") if isinstance(attempt.response, Mapping) else None
        message = (choices[0] or {}).get("message") if choices else None
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, str):
            raise SummarizerError(f"{model} answered without text: {str(attempt.response)[:200]}")
        return content

    return summarize


_open_lock = threading.Lock()


def open_cache(config: TierwiseConfig) -> SemanticCache:
    """The semantic cache for these settings (its encoder loads here: call off the loop)."""
    with _open_lock:
        settings: CacheConfig = config.cache.model_copy(update={"enabled": True})
        return SemanticCache(settings, cache_encoder(config))


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
            installed = [m for m in live_models() if is_routable(m, "auto")]
            config = base_config(self.config_path)
            problems = feature_problems(config, self.semantic_cache, self.summarize)
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
        self._cache: tuple[CacheConfig, str, SemanticCache] | None = None
        self._cache_lock = asyncio.Lock()
        self._telemetry: tuple[TierwiseConfig, Telemetry] | None = None
        self._decision_logs: dict[str, DecisionLog] = {}

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
        started = time.perf_counter()
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
            self._count_error("route")
            await emit(f"tierwise: internal error ({exc!r})", True)
            return error_reply(f"internal error ({exc!r}); the server log has the details")
        chat = Chat(route, self._telemetry_for(route.ladder or route.config), started)
        if route.request is not None and route.decision is not None:
            hit = await self._cache_lookup(chat, route.request, route.decision)
            if hit is not None:
                return await self._replay(body, chat, hit, emit)
        await emit(route.status)
        return await self._serve(body, chat, __request__, user, emit)

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
            tiers = ladder if self.valves.fallback else ladder[:1]
            return Route(mine, None, None, tiers, ladder=setup.config)
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
        return Route(mine, decision, wanted, tiers, setup.notes, request, setup.config)

    async def _serve(
        self, body: dict[str, Any], chat: Chat, request: Any, user: Any, emit: _Status
    ) -> Any:
        """Call the route's tiers in order until one answers; the last status stays shown.

        Before each tier is called, the chat is fitted to that tier's window (summarize).
        """
        route = chat.route
        failures: list[str] = []
        router = self._router(route.config)
        line = route.status
        summarizer = summarizer_for(
            request, user, route.model_for(route.config.ranked_tiers[0].name)
        )
        for i, tier in enumerate(route.tiers):
            model = route.model_for(tier)
            if i:
                line = f"{route.tiers[i - 1]} failed ({failures[-1]}); trying {model} ({tier})"
                await emit(line)
            form = {**body, "model": model}
            try:
                fitted = await self._fit_context(route, tier if i else route.decision, summarizer)
            except RoutingError as exc:  # this tier cannot hold the chat even summarized
                failures.append(f"does not fit: {exc}")
                continue
            chat.fitted = fitted
            if fitted is not None and fitted.changed:
                form["messages"] = fitted.messages
                line = f"{line} · {fit_note(fitted)}"
                await emit(line)
            attempt_started = time.perf_counter()
            attempt = await _call_model(request, form, user)
            if not attempt.ok:
                router.record(tier, ok=False, error=attempt.error)
                failures.append(attempt.error)
                continue
            if _is_stream(attempt.response):
                return self._stream_back(attempt.response, chat, tier, attempt_started, emit, line)
            router.record(tier, ok=True)
            answer = answer_of(attempt.response)
            if answer is not None:
                await self._cache_store(chat, tier, answer)
            self._finish(chat, tier, ok=True, usage=_usage_of(attempt.response), answer=answer)
            await emit(line, True)
            return attempt.response
        problem = "; ".join(f"{t}: {e}" for t, e in zip(route.tiers, failures, strict=False))
        self._finish(chat, route.tiers[len(failures) - 1], ok=False, error=problem)
        await emit(f"tierwise: every tier failed ({problem})", True)
        return error_reply(f"every tier this chat could use failed ({problem})")

    def _stream_back(
        self,
        upstream: Any,
        chat: Chat,
        tier: str,
        attempt_started: float,
        emit: _Status,
        line: str,
    ) -> Any:
        """Pass the model's stream through untouched; on the side, time its first chunk (for
        the SLA rule) and read its text, so a complete answer can be cached and recorded."""
        from starlette.responses import StreamingResponse

        router = self._router(chat.route.config)

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
                router.record(tier, ok=False, error=_describe(exc))
                self._finish(chat, tier, ok=False, error=_describe(exc), tap=tap)
                raise
            except BaseException:  # the client stopped reading (Stop, closed tab)
                self._finish(chat, tier, ok=True, error="stopped by the client", tap=tap)
                raise
            finally:
                if upstream.background is not None:
                    await upstream.background()
            tap.close()
            ok = not tap.error
            router.record(tier, ok=ok, ttft_ms=first if ok else None, error=tap.error)
            answer = tap.answer()
            if answer is not None:
                await self._cache_store(chat, tier, answer)
            self._finish(chat, tier, ok=ok, error=tap.error, tap=tap)
            done = f"{line} · first token {first:.0f} ms" if first is not None else line
            await emit(done, True)

        return StreamingResponse(chunks(), media_type="text/event-stream")

    # -- semantic cache -----------------------------------------------------------------------

    async def _cache_lookup(
        self, chat: Chat, request: ChatRequest, decision: Decision
    ) -> CacheHit | None:
        """An earlier answer for this question, when the semantic_cache valve is on.

        Scoped to this user and stamped with the tier that answered: it serves only chats
        decided for that tier or a cheaper one. Any fault is logged and counted, and the chat
        goes on to a model as if the cache were off.
        """
        if not self.valves.semantic_cache:
            return None
        try:
            cache = await self._semantic_cache(chat.route.config)
            order = chat.route.config.tier(decision.tier).order
            return await asyncio.to_thread(cache.lookup, request, order)
        except Exception:
            log.exception("tierwise auto: cache lookup failed (the chat goes on without it)")
            self._count_error("cache lookup")
            return None

    async def _cache_store(self, chat: Chat, tier: str, answer: Mapping[str, Any]) -> None:
        """Keep a complete answer for later paraphrases (never for tasks; faults are logged)."""
        request, config = chat.route.request, chat.route.config
        if not self.valves.semantic_cache or request is None or chat.route.decision is None:
            return
        try:
            cache = await self._semantic_cache(config)
            order = config.tier(tier).order
            await asyncio.to_thread(cache.put, request, dict(answer), tier, order)
        except Exception:
            log.exception("tierwise auto: cache store failed (the answer was still sent)")
            self._count_error("cache store")

    async def _replay(
        self, body: Mapping[str, Any], chat: Chat, hit: CacheHit, emit: _Status
    ) -> Any:
        """Answer from the cache: streamed when the chat asked for a stream, else one body."""
        from starlette.responses import StreamingResponse

        route = chat.route
        assert route.decision is not None
        answer = hit.response
        model = str(answer.get("model") or route.model_for(hit.tier))
        line = cache_status(route.decision, hit, model)

        async def finish() -> None:
            self._finish(
                chat,
                CACHE_TIER,
                ok=True,
                usage=answer.get("usage"),
                answer=answer,
                hit=True,
                model=model,
            )
            await emit(line, True)

        if not body.get("stream"):
            await finish()
            return completion_body(answer, model)

        async def chunks() -> AsyncIterator[str]:
            for event in replay_events(answer, model):
                if chat.first_chunk is None:
                    chat.first_chunk = time.perf_counter()
                yield event
            await finish()

        await emit(line)
        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def _semantic_cache(self, config: TierwiseConfig) -> SemanticCache:
        """One cache per cache settings, opened (and its encoder loaded) off the event loop."""
        current = self._cache
        if current is not None and current[0] is config.cache:  # every user's ladder shares it
            return current[2]
        key = json.dumps(
            [config.cache.model_dump(mode="json"), config.encoder.model_dump(mode="json")]
        )
        async with self._cache_lock:
            current = self._cache
            if current is not None and current[1] == key:
                self._cache = (config.cache, key, current[2])
                return current[2]
            cache = await asyncio.to_thread(open_cache, config)
            self._cache = (config.cache, key, cache)
        if current is not None:
            current[2].close()
        return cache

    # -- summarization ------------------------------------------------------------------------

    async def _fit_context(
        self, route: Route, target: Decision | str | None, summarizer: Summarizer
    ) -> Fitted | None:
        """Fit the chat to one tier's window when the summarize valve is on (None: off).

        `target` is the decision for the chosen tier, or a fallback tier's name. The
        summarizer calls the cheapest tier's model as this user; if it fails, the core
        leaves the old turns out with a visible notice. Raises RoutingError when even the
        latest turn cannot fit the tier. A fault of tierwise's own sends the chat unchanged.
        """
        if not self.valves.summarize or route.request is None or target is None:
            return None
        try:
            return await self._router(route.config).aprepare(
                route.request, target, summarizer=summarizer
            )
        except RoutingError:
            raise
        except Exception:
            log.exception("tierwise auto: fitting the chat failed; sending it unchanged")
            self._count_error("summarize")
            return None

    # -- telemetry ------------------------------------------------------------------------------

    def _finish(
        self,
        chat: Chat,
        tier: str,
        *,
        ok: bool,
        error: str = "",
        usage: Any = None,
        answer: Mapping[str, Any] | None = None,
        tap: StreamTap | None = None,
        hit: bool = False,
        model: str | None = None,
    ) -> None:
        """Record the finished chat once: served tier, timings, tokens, cache and summary."""
        if chat.recorded or chat.telemetry is None:
            return
        chat.recorded = True
        try:
            now = time.perf_counter()
            if tap is not None:
                usage = tap.usage
                content = tap.text
            else:
                content = str((answer or {}).get("content") or "")
            tokens_in, tokens_out = _usage_tokens(usage)
            if tokens_in is None and chat.fitted is not None:
                tokens_in = chat.fitted.prompt_tokens  # what was sent, after fitting
            if tokens_out is None:
                tokens_out = default_counter().count(content) if content else 0
            if model is None and tier != CACHE_TIER:
                model = chat.route.model_for(tier)
            first = chat.first_chunk
            chat.telemetry.request(
                chat.route.logged(),
                scope=chat.route.request.scope if chat.route.request else None,
                tier=tier,
                model=model,
                ok=ok,
                error=error,
                latency_ms=(now - chat.started) * 1000,
                ttft_ms=(first - chat.started) * 1000 if first is not None else None,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                cache_hit=hit,
                summarized=chat.fitted is not None and chat.fitted.changed,
            )
        except Exception:
            log.exception("tierwise auto: recording the chat failed (ignored)")
            self._count_error("telemetry")

    def _count_error(self, where: str) -> None:
        """Count an error inside tierwise that the pipe caught (the chat went on)."""
        if self._telemetry is not None:
            self._telemetry[1].error(where)

    def _telemetry_for(self, config: TierwiseConfig) -> Telemetry | None:
        """Decision log and metrics for this ladder (prices per tier); None if they fail.

        Rebuilt only when the ladder is (the Setup, and so its config object, is cached).
        """
        if self._telemetry is None or self._telemetry[0] is not config:
            try:
                settings = config.telemetry
                decision_log = self._decision_log(settings) if settings.log else None
                metrics = None
                if settings.metrics:
                    from tierwise.telemetry.metrics import metrics_for

                    metrics = metrics_for()
                telemetry = Telemetry(
                    config, HOST, signals=self.signals, decision_log=decision_log, metrics=metrics
                )
            except Exception:
                log.exception("tierwise auto: telemetry could not start (chats go on without it)")
                return None
            self._telemetry = (config, telemetry)
        return self._telemetry[1]

    def _decision_log(self, settings: TelemetryConfig) -> DecisionLog:
        """One writer per log file and settings, kept across ladder changes: a stream still
        running when the valves change must not lose its row to a closed log."""
        path = Path(settings.path).expanduser() if settings.path else default_path()
        key = json.dumps([str(path), settings.retention_days, settings.queue_size])
        found = self._decision_logs.get(key)
        if found is None:
            found = self._decision_logs[key] = DecisionLog(
                path, retention_days=settings.retention_days, queue_size=settings.queue_size
            )
        return found

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
                with_switches(base_config(path), valves.semantic_cache, valves.summarize),
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

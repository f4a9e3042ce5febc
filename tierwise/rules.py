"""The rule chain: each rule narrows the candidate tiers or sets the complexity floor.

State flows through the rules in the configured order; every rule that acts says so in
`reasons`, so a decision can always be explained. After the chain, the chosen tier is the
cheapest remaining candidate at or above the floor; the others form the fallback chain.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tierwise.config import ConfigError, TierConfig, TierwiseConfig
from tierwise.faults import caller_of
from tierwise.request import ChatRequest
from tierwise.scoring.base import Score
from tierwise.signals.health import HealthTracker
from tierwise.signals.latency import LatencyTracker
from tierwise.signals.vram import GpuState, nvml_key
from tierwise.summarize.layout import Layout

log = logging.getLogger(__name__)


class RoutingError(Exception):
    """No tier can take this request; the message says why and what would fix it."""

    status_code = 400


@dataclass
class Signals:
    """Live state the rules read; shared by every decision of one router."""

    latency: LatencyTracker = field(default_factory=LatencyTracker)
    health: HealthTracker = field(default_factory=HealthTracker)
    gpu: GpuState = field(default_factory=GpuState)


@dataclass
class RoutingState:
    """What the rules see and change while one request is routed."""

    request: ChatRequest
    score: Score
    config: TierwiseConfig
    signals: Signals
    candidates: list[TierConfig]
    floor: int | None = None  # lowest tier order the complexity asks for
    reasons: list[str] = field(default_factory=list)
    probe: str | None = None  # tier kept only as a latency-recovery probe
    notes: dict[str, Any] = field(default_factory=dict)

    def pick(self) -> TierConfig:
        """Cheapest candidate at or above the floor; else the strongest one below it."""
        if not self.candidates:
            raise RoutingError("no tier is left to serve this request")
        floor = self.floor if self.floor is not None else -1
        at_or_above = [t for t in self.candidates if t.order >= floor]
        return at_or_above[0] if at_or_above else self.candidates[-1]

    def remove(self, tier: TierConfig, reason: str) -> None:
        self.candidates = [t for t in self.candidates if t.name != tier.name]
        self.reasons.append(reason)


class Rule(Protocol):
    name: str

    def apply(self, state: RoutingState) -> None: ...


class CapabilityRule:
    """Images need a vision tier; tool definitions need a tool-capable tier."""

    name = "capability"

    def apply(self, state: RoutingState) -> None:
        needs = []
        if state.request.has_images:
            needs.append("vision")
        if state.request.tools:
            needs.append("tools")
        for need in needs:
            able = [t for t in state.candidates if need in t.capabilities]
            if not able:
                raise RoutingError(
                    f"the request needs '{need}' but no tier lists it in capabilities; add "
                    f"'{need}' to a tier that supports it"
                )
            dropped = [t.name for t in state.candidates if t not in able]
            state.candidates = able
            if dropped:
                state.reasons.append(f"capability: {need} needed; skipped {', '.join(dropped)}")


class ContextRule:
    """Drop tiers whose window cannot hold the conversation plus the answer's reserve.

    With `summarize.enabled`, a tier that cannot hold the whole conversation stays a candidate
    when a summary of the old turns beside the latest one fits it: the complexity floor then
    decides, so an easy question in a long chat stays on its cheap tier ("summarize and stay")
    instead of escalating to a larger window. The router's prepare() does the summarizing.
    """

    name = "context"

    def apply(self, state: RoutingState) -> None:
        margin = state.config.rules.context_margin
        smallest = min(state.candidates, key=lambda t: t.context_window)
        if smallest.fits(state.request.prompt_tokens_upper_bound, margin):
            return  # fits everywhere: skip exact counting
        tokens = state.request.prompt_tokens
        state.notes["prompt_tokens"] = tokens
        fitting = [t for t in state.candidates if t.fits(tokens, margin)]
        summarizable: list[TierConfig] = []
        if state.config.summarize.enabled:
            layout = Layout.of(state.request)
            summarizable = [
                t
                for t in state.candidates
                if t not in fitting and t.summary.enabled and layout.can_summarize_into(t, margin)
            ]
        if not fitting and not summarizable:
            raise RoutingError(_too_large(state, tokens, margin))
        too_small = [t for t in state.candidates if t not in fitting and t not in summarizable]
        state.candidates = [t for t in state.candidates if t in fitting or t in summarizable]
        state.notes["context_dropped"] = [t.name for t in too_small]
        state.notes["summarize_tiers"] = [t.name for t in summarizable]
        if too_small:
            state.reasons.append(
                f"context: {tokens} tokens do not fit {', '.join(t.name for t in too_small)}"
            )
        if summarizable:
            state.reasons.append(
                f"context: {tokens} tokens fit {', '.join(t.name for t in summarizable)} only "
                "with old turns summarized"
            )


def _too_large(state: RoutingState, tokens: int, margin: float) -> str:
    """Name the limit and every tier's window, and what would help."""
    windows = ", ".join(
        f"{t.name}={t.context_window} ({t.usable(margin)} usable)" for t in state.candidates
    )
    layout = Layout.of(state.request)
    if not any(layout.can_summarize_into(t, margin) for t in state.candidates):
        return (
            f"the latest message needs {layout.mandatory} tokens with the system prompt and "
            f"tool definitions, more than any tier can take (context windows, and the tokens "
            f"usable after each output reserve: {windows}); shorten the message or add a tier "
            "with a larger context_window"
        )
    fix = (
        "turn on summarization (summarize: {enabled: true})"
        if not state.config.summarize.enabled
        else "allow summarization on a tier (summary: {enabled: true})"
    )
    return (
        f"the conversation is {tokens} tokens, more than any tier can take (context windows, "
        f"and the tokens usable after each output reserve: {windows}); shorten it or {fix}"
    )


def context_outcome(state: RoutingState, chosen: TierConfig) -> str | None:
    """After the pick: say whether a long chat stayed (summarized) or escalated for context."""
    tokens = state.notes.get("prompt_tokens")
    if tokens is None:
        return None
    margin = state.config.rules.context_margin
    if chosen.name in state.notes.get("summarize_tiers", ()):
        return (
            f"context: summarize and stay on {chosen.name}: {tokens} tokens exceed its "
            f"{chosen.usable(margin)} usable, so older turns are summarized to fit"
        )
    floor = state.floor if state.floor is not None else -1
    skipped = [
        name
        for name in state.notes.get("context_dropped", ())
        if floor <= state.config.tier(name).order < chosen.order
    ]
    if skipped:
        return (
            f"context: escalated to {chosen.name} for context: {', '.join(skipped)} cannot "
            f"hold {tokens} tokens"
        )
    return None


class ComplexityRule:
    """Map the score to the lowest tier whose min_score it reaches."""

    name = "complexity"

    def apply(self, state: RoutingState) -> None:
        thresholds = state.config.thresholds()
        target = None
        for tier in state.config.ranked_tiers:
            if state.score.value >= thresholds[tier.name]:
                target = tier
        if target is None:
            target = state.config.ranked_tiers[0]
        state.floor = target.order
        drivers = f" ({', '.join(state.score.drivers)})" if state.score.drivers else ""
        state.reasons.append(
            f"complexity: score {state.score.value:.2f} {state.score.band.value}{drivers} -> "
            f"{target.name}"
        )


class VramRule:
    """Skip a GPU tier whose card is too full or whose server queue is too long."""

    name = "vram"

    def apply(self, state: RoutingState) -> None:
        for tier in list(state.candidates):
            settings = tier.vram
            if settings is None:
                continue
            key = nvml_key(settings.device) if settings.source == "nvml" else tier.name
            reading = state.signals.gpu.get(key)
            if reading is None:
                continue
            why = ""
            if reading.free_gb is not None and reading.free_gb < settings.min_free_gb:
                why = f"{reading.free_gb:.1f} GB free < {settings.min_free_gb:g} GB headroom"
            elif (
                reading.kv_cache_usage is not None
                and reading.kv_cache_usage > settings.max_kv_cache_usage
            ):
                why = f"KV cache {reading.kv_cache_usage:.0%} > {settings.max_kv_cache_usage:.0%}"
            elif (
                settings.max_waiting is not None
                and reading.waiting is not None
                and reading.waiting > settings.max_waiting
            ):
                why = f"{reading.waiting} requests waiting > {settings.max_waiting}"
            if why:
                _demote(state, tier, f"vram: {tier.name} {why}")


class SlaRule:
    """Skip tiers whose latency EMA breaks their SLA, except for periodic recovery probes."""

    name = "sla"

    def apply(self, state: RoutingState) -> None:
        latency = state.signals.latency
        slow: dict[str, str] = {}
        for tier in state.candidates:
            if tier.sla is None:
                continue
            seed = tier.sla.seed_ms or tier.sla.max_ttft_ms / 2
            ema = latency.ema_ms(tier.name, seed)
            if ema > tier.sla.max_ttft_ms:
                slow[tier.name] = f"EMA {ema:.0f} ms > {tier.sla.max_ttft_ms:.0f} ms"
        if not slow:
            return
        # Only the tier that would actually serve counts toward probing; slow tiers that
        # would not serve anyway just leave the fallback chain.
        while state.candidates:
            intended = state.pick()
            if intended.name not in slow:
                break
            assert intended.sla is not None
            if latency.should_probe(intended.name, intended.sla.probe_every):
                state.probe = intended.name
                state.reasons.append(
                    f"sla: {intended.name} {slow.pop(intended.name)}; sent as recovery probe "
                    f"(1 in {intended.sla.probe_every})"
                )
                break
            if not _demote(state, intended, f"sla: {intended.name} {slow.pop(intended.name)}"):
                break
        for tier in list(state.candidates):
            if tier.name in slow and tier.name != state.probe:
                state.candidates = [t for t in state.candidates if t.name != tier.name]


class HealthRule:
    """Skip a tier that failed repeatedly (for everyone, or for this caller) until it cools down."""

    name = "health"

    def apply(self, state: RoutingState) -> None:
        caller = caller_of(state.request.scope)
        for tier in list(state.candidates):
            left = state.signals.health.cooling_down(tier.name, caller)
            if left > 0:
                error = state.signals.health.last_error(tier.name)
                detail = f" (last error: {error})" if error else ""
                _demote(state, tier, f"health: {tier.name} cooling down {left:.0f}s{detail}")


def _demote(state: RoutingState, tier: TierConfig, reason: str) -> bool:
    """Remove `tier` unless it is the last candidate (serving slowly beats not serving)."""
    if len(state.candidates) == 1:
        state.reasons.append(f"{reason}; kept: no other tier can serve")
        return False
    state.remove(tier, f"{reason}; skipped")
    return True


CustomRuleFn = Callable[[RoutingState], None]


class CustomRules:
    """User rules from dotted paths: callables taking the RoutingState (or objects with apply)."""

    name = "custom"

    def __init__(self, paths: tuple[str, ...]) -> None:
        self.rules: list[tuple[str, CustomRuleFn]] = [(p, load_custom_rule(p)) for p in paths]

    def apply(self, state: RoutingState) -> None:
        for path, rule in self.rules:
            before = len(state.reasons)
            try:
                rule(state)
            except RoutingError:
                raise
            except Exception as exc:  # a broken user rule must not take routing down
                log.exception("custom rule %s failed", path)
                state.reasons.append(f"custom: {path} failed ({exc!r}); ignored")
                continue
            if len(state.reasons) == before:
                continue
            state.reasons[before:] = [f"custom: {r}" for r in state.reasons[before:]]
        if not state.candidates:
            raise RoutingError("custom rules removed every tier")


def load_custom_rule(path: str) -> CustomRuleFn:
    module_name, _, attr = path.replace(":", ".").rpartition(".")
    try:
        target: Any = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"rules.custom: cannot load {path!r}: {exc}") from None
    if isinstance(target, type):
        target = target()
    apply = getattr(target, "apply", None)
    if callable(apply):
        return apply
    if callable(target):
        return target
    raise ConfigError(f"rules.custom: {path!r} is neither callable nor has an apply() method")


def build_chain(config: TierwiseConfig) -> list[Rule]:
    builtins: dict[str, Callable[[], Rule]] = {
        "capability": CapabilityRule,
        "context": ContextRule,
        "complexity": ComplexityRule,
        "vram": VramRule,
        "sla": SlaRule,
        "health": HealthRule,
        "custom": lambda: CustomRules(config.rules.custom),
    }
    return [builtins[name]() for name in config.rules.order]

"""The facade adapters call: decide() and prepare() before the host call, record() after it."""

from __future__ import annotations

import asyncio
import logging
import random
import time

from tierwise.adapt import background
from tierwise.adapt.explore import explore
from tierwise.adapt.scorer import ADAPT_NOTE, AdaptedScorer
from tierwise.adapt.store import store_for
from tierwise.config import TierConfig, TierwiseConfig, load_config
from tierwise.decision import Decision
from tierwise.faults import Fault
from tierwise.request import ChatRequest
from tierwise.rules import RoutingError, RoutingState, Signals, build_chain, context_outcome
from tierwise.scoring.base import Score, Scorer
from tierwise.scoring.cascade import Judge
from tierwise.scoring.factory import build_scorer
from tierwise.scoring.judge import AskJudge, JudgeOutcome, LLMJudge
from tierwise.signals.shared import signals_for
from tierwise.signals.vram import NvmlMonitor
from tierwise.summarize import (
    ContextFitter,
    ContextOverflow,
    Fitted,
    Fitting,
    Summarizer,
    fit_async,
    fit_sync,
)

log = logging.getLogger(__name__)


class TierRouter:
    """Turns chat requests into tier decisions and learns from how each tier performed."""

    def __init__(
        self,
        config: TierwiseConfig | None = None,
        *,
        scorer: Scorer | None = None,
        signals: Signals | None = None,
        judge: Judge | None = None,
        summarizer: Summarizer | None = None,
        fitter: ContextFitter | None = None,
        ask_judge: AskJudge | None = None,
    ) -> None:
        """`judge`: a sync LLM judge for the cascade scorer (see scoring/cascade.py).
        `ask_judge`: an async host's call to its judge tier, used by adecide() when
        `scoring.judge.enabled` and the call brings none of its own (see scoring/judge.py)."""
        self.config = config or load_config()
        self.scorer = scorer or build_scorer(self.config, judge=judge)
        adapt = self.config.adapt
        if adapt.enabled:  # the install's own correction over whatever the scorer says
            config = self.config
            tenants = (lambda key: store_for(config, key)) if adapt.scope == "tenant" else None
            self.scorer = AdaptedScorer(
                self.scorer, store_for(config), adapt.reload_s, tenant_store=tenants
            )
            background.watch(self.config)  # refits off the request path, one per directory
        self._explore = adapt.explore if adapt.enabled else 0.0
        self._rng = random.Random()
        self.signals = signals or signals_for(self.config)
        self.chain = build_chain(self.config)
        # The adapter's summarizer (e.g. the local tier's model, called through the host);
        # prepare() falls back to leaving old turns out with a notice when there is none.
        self.summarizer = summarizer
        self.fitter = fitter or ContextFitter(self.config)
        self._nvml: NvmlMonitor | None = None
        self.llm_judge = LLMJudge(self.config) if self.config.scoring.judge.enabled else None
        self._ask_judge = ask_judge

    async def adecide(self, request: ChatRequest, ask_judge: AskJudge | None = None) -> Decision:
        """decide() for async hosts, with the LLM judge when `scoring.judge.enabled`: score
        on a thread, await the judge (bounded by its timeout) if the score is near a band
        edge, then run the rules on the judged score. Never blocks the event loop.

        `ask_judge`: this request's call to the judge tier (e.g. as its user), else the
        router's own; with neither, no judge is asked."""
        judge, ask = self.llm_judge, ask_judge or self._ask_judge
        if judge is None or ask is None:
            return await asyncio.to_thread(self.decide, request)
        started = time.perf_counter()
        score = await asyncio.to_thread(self.scorer.score, request)
        score, outcome = await judge.review(request, score, ask)
        return await asyncio.to_thread(
            self.decide, request, score=score, judged=outcome, started=started
        )

    def decide(
        self,
        request: ChatRequest,
        *,
        score: Score | None = None,
        judged: JudgeOutcome | None = None,
        started: float | None = None,
    ) -> Decision:
        """Score the request (unless `score` is given) and run the rule chain; raises
        RoutingError if no tier can serve. `judged`: what the LLM judge did (adecide)."""
        started = time.perf_counter() if started is None else started
        score = self.scorer.score(request) if score is None else score
        state = RoutingState(
            request=request,
            score=score,
            config=self.config,
            signals=self.signals,
            candidates=list(self.config.ranked_tiers),
        )
        if ADAPT_NOTE in request.memo:
            state.notes[ADAPT_NOTE] = request.memo[ADAPT_NOTE]
        if judged is not None:
            state.reasons.append(judged.reason)
        for rule in self.chain:
            rule.apply(state)
        chosen = state.pick()
        if state.floor is not None and chosen.order < state.floor:
            state.reasons.append(
                f"chosen: {chosen.name}, the strongest tier left (none at or above the floor)"
            )
        elif state.floor is not None and chosen.order > state.floor:
            state.reasons.append(f"chosen: {chosen.name}, the cheapest tier left above the floor")
        chosen = explore(state, chosen, self._explore, self._rng)
        outcome = context_outcome(state, chosen)
        if outcome:
            state.reasons.append(outcome)
        above = [t.name for t in state.candidates if t.order > chosen.order]
        below = [t.name for t in reversed(state.candidates) if t.order < chosen.order]
        return Decision(
            tier=chosen.name,
            models=chosen.models,
            score=score.value,
            band=score.band.value,
            reasons=tuple(state.reasons),
            fallback_chain=tuple(above + below),
            scorer=score.source,
            drivers=score.drivers,
            probe=state.probe == chosen.name,
            needs_fit=chosen.name in state.notes.get("summarize_tiers", ()),
            prompt_tokens=state.notes.get("prompt_tokens"),
            decided_in_ms=(time.perf_counter() - started) * 1000,
            task_kind=score.task_kind,
            notes=state.notes,
            judge=judged.as_dict() if judged is not None else None,
        )

    def decide_text(self, text: str) -> Decision:
        return self.decide(ChatRequest.from_text(text))

    def prepare(
        self,
        request: ChatRequest,
        target: Decision | str,
        *,
        summarizer: Summarizer | None = None,
    ) -> Fitted:
        """Fit the messages to the chosen tier (or a fallback tier, by name) before sending.

        Returns the request unchanged when it fits; otherwise reuses or extends the rolling
        summary (at most one summarizer call on an ongoing chat), or leaves old turns out with
        a visible notice if the summarizer fails. Raises RoutingError when even the latest
        turn cannot fit the tier. Blocks for at most the configured timeout per call.
        """
        fitting = self._fitting(request, target)
        if fitting is None:
            return self._unchanged(request, target)
        return fit_sync(fitting, summarizer or self.summarizer, self.config.summarize.timeout_s)

    async def aprepare(
        self,
        request: ChatRequest,
        target: Decision | str,
        *,
        summarizer: Summarizer | None = None,
    ) -> Fitted:
        """prepare() for async hosts: the summarizer may be sync or async; the loop never blocks."""
        fitting = self._fitting(request, target)
        if fitting is None:
            return self._unchanged(request, target)
        return await fit_async(
            fitting, summarizer or self.summarizer, self.config.summarize.timeout_s
        )

    def _tier(self, target: Decision | str) -> TierConfig:
        name = target.tier if isinstance(target, Decision) else target
        try:
            return self.config.tier(name)
        except KeyError:
            known = ", ".join(t.name for t in self.config.ranked_tiers)
            raise RoutingError(f"unknown tier {name!r}; configured tiers: {known}") from None

    def _fitting(self, request: ChatRequest, target: Decision | str) -> Fitting | None:
        """The fitting to drive, or None when the request fits the tier as it is."""
        tier = self._tier(target)
        margin = self.config.rules.context_margin
        if tier.fits(request.prompt_tokens_upper_bound, margin):
            return None
        if not (self.config.summarize.enabled and tier.summary.enabled):
            if tier.fits(request.prompt_tokens, margin):
                return None
            raise RoutingError(
                f"the conversation is {request.prompt_tokens} tokens, more than tier "
                f"{tier.name} can take ({tier.usable(margin)} of its {tier.context_window}-token "
                "window after the output reserve) and summarization is off for it"
            )
        try:
            fitting = self.fitter.start(request, tier)
        except ContextOverflow as exc:
            raise RoutingError(str(exc)) from None
        return fitting

    def _unchanged(self, request: ChatRequest, target: Decision | str) -> Fitted:
        tier = self._tier(target)
        usable = tier.usable(self.config.rules.context_margin)
        tokens = request.prompt_tokens_upper_bound
        if not tier.fits(tokens, self.config.rules.context_margin):
            tokens = request.prompt_tokens
        return Fitted(
            tier=tier.name,
            messages=request.openai_messages(),
            action="fits",
            prompt_tokens=tokens,
            original_tokens=tokens,
            usable_tokens=usable,
            reason=f"context: fits {tier.name} (at most {tokens} of {usable} tokens)",
        )

    def record(
        self,
        tier: str,
        *,
        ok: bool,
        ttft_ms: float | None = None,
        error: str = "",
        fault: Fault = Fault.TIER,
        caller: str | None = None,
    ) -> None:
        """Feed what happened on `tier` back into the latency EMA and the health breaker.

        `fault` is the adapter's `faults.classify()` verdict on a failure: a request fault
        moves no signal at all. `caller` (`faults.caller_of(scope)`) lets the breaker refuse
        to open for everyone on one caller's failures alone.
        """
        try:
            settings = self.config.tier(tier)
        except KeyError:
            log.debug("record() for unknown tier %r ignored", tier)
            return
        if ok:
            self.signals.health.record_success(tier, caller)
            if ttft_ms is not None and settings.sla is not None:
                seed = settings.sla.seed_ms or settings.sla.max_ttft_ms / 2
                self.signals.latency.observe(tier, ttft_ms, settings.sla.alpha, seed)
            return
        if fault is Fault.REQUEST:
            log.debug("request fault on tier %s not counted: %s", tier, error)
            return
        health = self.config.rules.health
        if self.signals.health.record_failure(
            tier, health.max_failures, health.cooldown_s, error, caller
        ):
            log.warning(
                "tier %s failed %d times in a row; cooling down %.0fs",
                tier,
                health.max_failures,
                health.cooldown_s,
            )

    def start_monitors(self, nvml: object | None = None, interval_s: float = 1.0) -> None:
        """Start the NVML thread for tiers that watch a local GPU (no-op without one)."""
        devices = [
            t.vram.device
            for t in self.config.tiers
            if t.vram is not None and t.vram.source == "nvml"
        ]
        if not devices or self._nvml is not None:
            return
        self._nvml = NvmlMonitor(self.signals.gpu, devices, interval_s=interval_s, nvml=nvml)
        self._nvml.start()

    def close(self) -> None:
        if self._nvml is not None:
            self._nvml.stop()
            self._nvml = None

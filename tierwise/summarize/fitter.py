"""Fit one request to one tier's window: reuse, extend or (on failure) replace a rolling summary.

Free of I/O, like a protocol state machine: `Fitting` says which summarizer calls it needs
(`next_job()`), is told their answers (`feed()` / `fail()`), and then builds the messages
(`result()`). The sync and async drivers in `tierwise.summarize.run` make the calls.

Per turn the plan is:
1. The conversation fits: send it unchanged.
2. The longest prefix with a cached summary, plus everything after it, fits: reuse it (no call).
3. Otherwise choose a new cut that keeps the latest turns verbatim but fills only `keep_ratio`
   of the room, so the next turns fit without another call, and fold what newly fell out of
   the window into the cached summary: one call, always. A history no summary covers yet
   (a new process, a switch of tier) is caught up in that one call, each message shortened
   to an equal share of what the summarizer can read.
4. If the summarizer fails, times out or answers garbage: leave the uncovered turns out with
   a visible notice, log it, and keep whatever summary there was.

Longer than 400 lines because the plan above is one state machine: its steps share the
fitting state and read best in order, in one file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tierwise.config import TierConfig, TierwiseConfig
from tierwise.request import IMAGE_TOKENS, ChatRequest
from tierwise.signals.health import HealthTracker
from tierwise.summarize.cache import SummaryCache, SummaryEntry
from tierwise.summarize.layout import (
    MIN_SUMMARY_TOKENS,
    SUMMARY_FRAMING,
    Layout,
    prefix_digests,
)
from tierwise.summarize.prompt import (
    PROMPT_VERSION,
    BadSummary,
    SummaryJob,
    build_job,
    check_summary,
    clip_head,
    clip_middle,
    instruction_tokens,
    notice_block,
    render,
    shorten_middle,
    summary_block,
)
from tierwise.tokens import MESSAGE_OVERHEAD, TokenCounter, default_counter

log = logging.getLogger(__name__)

Action = Literal["fits", "cached", "summarized", "truncated"]
BREAKER = "summarizer"
MIN_TRANSCRIPT_TOKENS = 256
# Below this share per message a catch-up transcript is clipped as a whole instead.
MIN_SHARE_TOKENS = 32
# A transcript line's role label, separator and media notes.
RENDER_OVERHEAD = 12
NOTHING_NEW = "(no new messages: only shorten the summary so far)"
MARKER_TOKENS = 12  # the "[... about N tokens left out ...]" note in a shortened message


class ContextOverflow(ValueError):
    """Even the parts that are never summarized do not fit the tier; the message says so."""


@dataclass(frozen=True)
class Fitted:
    """The messages to send to the tier, and what was done to make them fit."""

    tier: str
    messages: list[dict[str, Any]]
    action: Action
    prompt_tokens: int  # exact, or a safe upper bound when that already showed a fit
    original_tokens: int
    usable_tokens: int  # what the tier takes: window less margin and output reserve
    covered: int = 0  # earlier messages replaced by the summary or the notice
    summarizer_calls: int = 0
    summarizer_ms: float = 0.0
    reason: str = ""

    @property
    def changed(self) -> bool:
        return self.action != "fits"

    def as_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "action": self.action,
            "prompt_tokens": self.prompt_tokens,
            "original_tokens": self.original_tokens,
            "usable_tokens": self.usable_tokens,
            "covered": self.covered,
            "summarizer_calls": self.summarizer_calls,
            "summarizer_ms": round(self.summarizer_ms, 3),
            "reason": self.reason,
        }


class ContextFitter:
    """Fits requests to tier windows; owns the summary cache and the summarizer's breaker."""

    def __init__(
        self,
        config: TierwiseConfig,
        *,
        cache: SummaryCache | None = None,
        health: HealthTracker | None = None,
    ) -> None:
        self.config = config
        self.cache = cache or SummaryCache(config.summarize.cache_entries)
        self.health = health or HealthTracker()

    def start(self, request: ChatRequest, tier: TierConfig) -> Fitting:
        """Plan the fit of `request` to `tier`; raises ContextOverflow if it cannot fit."""
        return Fitting(self, request, tier)


@dataclass
class Fitting:
    """One request being fitted to one tier. Drive it: next_job() -> call -> feed() / fail()."""

    fitter: ContextFitter
    request: ChatRequest
    tier: TierConfig
    layout: Layout = field(init=False)
    _done: Fitted | None = field(default=None, init=False)
    _transcript: str | None = field(default=None, init=False)  # the one call still to make
    _cut: int = field(default=0, init=False)  # where the kept messages start
    _covered_to: int = field(default=0, init=False)  # the summary covers messages before this
    _summary: SummaryEntry | None = field(default=None, init=False)
    _failure: str = field(default="", init=False)
    _calls: int = field(default=0, init=False)
    _elapsed_ms: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        config = self.fitter.config
        self.counter: TokenCounter = self.request.counter or default_counter()
        self.layout = Layout.of(self.request)
        self.usable = self.tier.usable(config.rules.context_margin)
        self.raw = self.request.openai_messages()
        total = self.layout.total
        if total <= self.usable:
            self._done = self._fitted(self.raw, "fits", total, 0, f"fits {self.tier.name}")
            return
        if self.layout.mandatory + SUMMARY_FRAMING > self.usable:
            raise ContextOverflow(
                f"the latest turn needs {self.layout.mandatory} tokens (system prompt, latest "
                f"message and tool definitions), more than tier {self.tier.name} can take: "
                f"{self.usable} of its {self.tier.context_window}-token window after the "
                f"{self.tier.output_reserve}-token output reserve"
            )
        self.budget = min(
            self.tier.summary_tokens, self.usable - self.layout.mandatory - SUMMARY_FRAMING
        )
        salt = f"{PROMPT_VERSION}|{self.request.scope.key()}"
        self.digests = prefix_digests(self.raw, self.layout, salt)
        if self._reuse():
            self._done = self._assemble("cached")
            return
        self._cut = self._choose_cut(config.summarize.keep_ratio)
        self._seed_from_other_tiers()
        left = self.fitter.health.cooling_down(BREAKER)
        if self.budget < MIN_SUMMARY_TOKENS:
            self._failure = f"only {self.budget} tokens of room for a summary"
        elif left > 0:
            self._failure = f"summarizer cooling down for {left:.0f}s after failures"
        elif self._covered_to < self._cut or self._over_budget():
            self._transcript = self._render(self._covered_to, self._cut)
        elif self._summary is not None:  # another tier's summary covers it all and fits
            self.fitter.cache.put(self._key(self.tier.summary_tokens, self._cut), self._summary)

    def _over_budget(self) -> bool:
        return self._summary is not None and self._summary.tokens > self.budget

    # -- driving ---------------------------------------------------------------------------

    def next_job(self) -> SummaryJob | None:
        """The summarizer call to make, or None when the result is ready (at most one call)."""
        if self._done is not None or self._failure or self._transcript is None:
            return None
        return build_job(
            self._summary.text if self._summary else None,
            self._transcript,
            max_tokens=self.budget,
            tier=self.tier.name,
            covered=len(self.layout.old(self._covered_to, self._cut)),
        )

    def feed(self, answer: object, elapsed_ms: float = 0.0) -> None:
        """The summarizer's answer to the job from next_job()."""
        self._calls += 1
        self._elapsed_ms += elapsed_ms
        self._transcript = None
        try:
            text = clip_head(check_summary(answer), self.budget, self.counter)
        except BadSummary as exc:
            self._fail(f"summarizer {exc}")
            return
        covered = len(self.layout.old(0, self._cut))
        entry = SummaryEntry(text, covered, self.counter.count(text))
        self.fitter.cache.put(self._key(self.tier.summary_tokens, self._cut), entry)
        self.fitter.health.record_success(BREAKER)
        self._summary, self._covered_to = entry, self._cut

    def fail(self, reason: str, elapsed_ms: float = 0.0, *, called: bool = True) -> None:
        """The job could not be done (error, timeout, no summarizer): fall back to a notice."""
        if called:
            self._calls += 1
            self._elapsed_ms += elapsed_ms
        self._transcript = None
        self._fail(reason, count=called)

    def _fail(self, reason: str, count: bool = True) -> None:
        self._failure = reason
        if count:
            settings = self.fitter.config.summarize
            self.fitter.health.record_failure(
                BREAKER, settings.max_failures, settings.cooldown_s, reason
            )

    def result(self) -> Fitted:
        """The fitted messages; call when next_job() returns None."""
        if self._done is not None:
            return self._done
        if self._covered_to < self._cut:
            return self._assemble("truncated")
        return self._assemble("summarized" if self._calls else "cached")

    # -- planning --------------------------------------------------------------------------

    def _key(self, budget: int, cut: int) -> str:
        return f"{budget}|{self.digests[cut]}"

    def _lookup(self, pairs: list[tuple[int, int]]) -> tuple[int, SummaryEntry] | None:
        """The first cached (budget, cut) of `pairs`, as (cut, entry)."""
        keys = {self._key(budget, cut): cut for budget, cut in pairs}
        found = self.fitter.cache.first(keys)
        return (keys[found[0]], found[1]) if found else None

    def _reuse(self) -> bool:
        """Take this tier's longest cached summary; True when it alone makes the request fit."""
        own = self.tier.summary_tokens
        found = self._lookup([(own, b) for b in reversed(self.layout.cuts) if b in self.digests])
        if found is None:
            return False
        self._covered_to, self._summary = found
        self._cut = self._covered_to
        tokens = self._summary.tokens + SUMMARY_FRAMING + self._kept_tokens(self._cut)
        return tokens <= self.usable

    def _seed_from_other_tiers(self) -> None:
        """Fold from another tier's summary when it covers more of what must now be covered
        (after a switch between tiers): the one call then reads less transcript."""
        own = self.tier.summary_tokens
        others = sorted({t.summary_tokens for t in self.fitter.config.tiers} - {own})
        cuts = [b for b in reversed(self.layout.cuts) if self._covered_to < b <= self._cut]
        found = self._lookup([(budget, b) for b in cuts for budget in others])
        if found is not None:
            self._covered_to, self._summary = found

    def _kept_tokens(self, cut: int) -> int:
        """Everything sent besides the summary block when messages from `cut` on are kept."""
        layout = self.layout
        return layout.system_tokens + layout.tail(cut) + layout.fixed

    def _choose_cut(self, keep_ratio: float) -> int:
        """The earliest cut after the covered prefix whose kept turns fill at most keep_ratio
        of the room beside a full summary and stay within the tier's recent_turns."""
        layout = self.layout
        room = self.usable - layout.system_tokens - layout.fixed - self.budget - SUMMARY_FRAMING
        target = max(keep_ratio * room, layout.tail(layout.latest))
        for cut in layout.cuts_from(self._covered_to + 1):
            if layout.tail(cut) <= target and layout.turns(cut) <= self.tier.recent_turns:
                return cut
        return layout.latest

    def _render(self, start: int, end: int) -> str:
        """The transcript of the messages newly falling out, within what one call can read.

        When it is too long (catching up a history no summary covers yet), every message
        gets an equal share: short ones stay whole, long ones keep their head and tail.
        """
        cap = self._transcript_cap()
        indices = self.layout.old(start, end)
        if not indices:
            return NOTHING_NEW
        units = [render(self.request.messages[i]) for i in indices]
        # Sizes from the counts the request already has (no second pass of the tokenizer);
        # the joined transcript is counted exactly before it is sent.
        sizes = [self._rendered_tokens(i) for i in indices]
        level = _water_level(sizes, cap) if sum(sizes) > cap else max(sizes, default=0)
        while level >= MIN_SHARE_TOKENS:
            text = "\n\n".join(
                u if size <= level else shorten_middle(u, level - MARKER_TOKENS, size)
                for u, size in zip(units, sizes, strict=True)
            )
            if self.counter.count(text) <= cap:
                return text
            level = int(level * 0.9)
        return clip_middle("\n\n".join(units), cap, self.counter)

    def _rendered_tokens(self, index: int) -> int:
        """About what message `index` costs as a transcript line: media become short notes."""
        message = self.request.messages[index]
        media = message.images * IMAGE_TOKENS
        return max(1, self.layout.tokens[index] - MESSAGE_OVERHEAD - media) + RENDER_OVERHEAD

    def _transcript_cap(self) -> int:
        """Transcript tokens one call may carry: the summarizer's window (by default the
        cheapest tier's) less the instruction, the summary so far and the answer."""
        settings = self.fitter.config.summarize
        if settings.input_tokens is not None:
            window = settings.input_tokens
        else:
            cheapest = self.fitter.config.ranked_tiers[0]
            margin = self.fitter.config.rules.context_margin
            window = cheapest.usable(margin) - max(0, self.budget - cheapest.output_reserve)
        previous = self._summary.tokens if self._summary else 0
        cap = window - instruction_tokens(self.counter, self.budget) - previous
        return max(MIN_TRANSCRIPT_TOKENS, cap)

    # -- building the result ---------------------------------------------------------------

    def _assemble(self, action: Action) -> Fitted:
        layout = self.layout
        dropped = layout.old(self._covered_to, self._cut)
        dropped_tokens = sum(layout.tokens[i] for i in dropped)
        covered = len(layout.old(0, self._cut))
        head = [self.raw[i] for i in range(self._cut) if layout.is_system(i)]
        kept = self.raw[self._cut :]
        fixed = self._kept_tokens(self._cut) + MESSAGE_OVERHEAD
        why = self._failure or "no summary was made"
        if dropped:
            log.warning(
                "summarizer for tier %s: %s; left out %d earlier messages (%d tokens) with a "
                "notice",
                self.tier.name,
                why,
                len(dropped),
                dropped_tokens,
            )
        block = self._block(dropped, dropped_tokens, why, self.usable - fixed)
        messages = [*head, {"role": "system", "content": block}, *kept]
        tokens = fixed + self.counter.count(block)
        if tokens > self.usable:  # cannot happen when the budgets hold; never send it anyway
            raise ContextOverflow(
                f"fitting left {tokens} tokens for tier {self.tier.name}, more than its "
                f"{self.usable} usable tokens"
            )
        if action == "truncated":
            detail = f"left out {len(dropped)} earlier messages ({why})"
        elif action == "cached":
            detail = f"reused the summary of {covered} earlier messages"
        else:
            detail = f"summarized {covered} earlier messages"
        return self._fitted(messages, action, tokens, covered, f"{detail} for {self.tier.name}")

    def _block(self, dropped: Sequence[int], dropped_tokens: int, why: str, room: int) -> str:
        """The injected system message, its summary clipped if the block must fit `room`."""
        summary = self._summary.text if self._summary else ""
        covered = self._summary.covered if self._summary else 0

        def compose(text: str) -> str:
            parts = [summary_block(text, covered)] if text else []
            if dropped:
                parts.append(notice_block(len(dropped), dropped_tokens, why))
            return "\n\n".join(parts)

        block = compose(summary)
        excess = self.counter.count(block) - room
        if excess > 0 and summary:
            keep = max(0, self.counter.count(summary) - excess)
            block = compose(clip_head(summary, keep, self.counter))
        return block

    def _fitted(
        self, messages: list[dict[str, Any]], action: Action, tokens: int, covered: int, what: str
    ) -> Fitted:
        calls = f", {self._calls} summarizer call{'s' if self._calls != 1 else ''}"
        return Fitted(
            tier=self.tier.name,
            messages=messages,
            action=action,
            prompt_tokens=tokens,
            original_tokens=self.layout.total,
            usable_tokens=self.usable,
            covered=covered,
            summarizer_calls=self._calls,
            summarizer_ms=self._elapsed_ms,
            reason=f"context: {what} ({tokens} of {self.usable} tokens{calls})",
        )


def _water_level(sizes: Sequence[int], cap: int) -> int:
    """The largest per-message share such that sum(min(size, share)) fits `cap`."""
    remaining = cap
    ordered = sorted(sizes)
    for index, size in enumerate(ordered):
        left = len(ordered) - index
        if size * left > remaining:
            return remaining // left
        remaining -= size
    return ordered[-1] if ordered else cap

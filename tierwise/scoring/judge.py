"""The LLM judge for async hosts: when to ask, under what limits, and what its answer means.

The host supplies only `ask(messages, request) -> str`, its own call to the judge tier (so
the host's keys, retries and accounting apply). This module decides everything else: only a
score within `cascade.judge_margin` of a band edge is judged; the call is awaited at most
`cascade.judge_timeout_s`; verdicts are cached per caller scope and request text (nothing
crosses tenants); at most `judge.max_concurrent` calls are in flight (beyond, the score
stands, no queue); after `judge.max_failures` faults of the judge tier in a row (timeouts,
5xx, refused connections: not answers the caller's text provoked) the judge rests for
`judge.cooldown_s`. Every path that does not yield a verdict keeps the scorer's own score and
says so in the returned JudgeOutcome, which the decision carries and the log records.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from tierwise.config import Bands, TierwiseConfig
from tierwise.faults import Fault, classify
from tierwise.request import ChatRequest
from tierwise.scoring.base import Band, Score
from tierwise.scoring.judge_prompt import (
    UnreadableVerdict,
    judge_messages,
    judge_text,
    parse_rating,
    rating_score,
)

log = logging.getLogger(__name__)

AskJudge = Callable[[list[dict[str, str]], ChatRequest], Awaitable[str]]
EDGE_GAP = 0.005  # a settled verdict stays this far below the next band's edge


def nearest_edge(value: float, bands: Bands) -> float:
    """The band edge closest to a score."""
    return min((bands.medium, bands.high), key=lambda edge: abs(value - edge))


def settle(verdict: float, edge: float, bands: Bands) -> float:
    """The verdict kept to the two bands either side of the edge the judge was asked about.

    The judge settles which side of that edge a request falls on; it cannot move a request
    two bands (a caller who talks the judge into a 10 gains one tier at most).
    """
    low = 0.0 if edge == bands.medium else bands.medium
    high = bands.high - EDGE_GAP if edge == bands.medium else 1.0
    return min(max(verdict, low), high)


@dataclass(frozen=True)
class JudgeOutcome:
    """What the judge did for one request: `status` is judged, cached, timeout, error, busy
    or resting; `rating` and `verdict` (the rating as a score) only when it gave one."""

    status: str
    before: float
    edge: float
    source: str
    rating: float | None = None
    verdict: float | None = None
    ms: float = 0.0
    detail: str = ""

    @property
    def asked(self) -> bool:
        """A call went to the judge tier (a cached verdict or a skip made none)."""
        return self.status in ("judged", "timeout", "error")

    @property
    def reason(self) -> str:
        near = f"{self.source} {self.before:.2f} near edge {self.edge:.2f}"
        if self.verdict is not None:
            cached = "cached, " if self.status == "cached" else ""
            return f"judge: {self.verdict:.2f} ({cached}rated {self.rating:g}/10; {near})"
        why = {
            "timeout": "no answer in time",
            "error": "unreadable or failed answer",
            "busy": "busy",
            "resting": "resting after failures",
        }[self.status]
        return f"judge: {why}, kept {near}"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "asked": self.asked,
            "before": round(self.before, 4),
        }
        if self.verdict is not None:
            out["rating"] = self.rating
            out["verdict"] = round(self.verdict, 4)
        if self.asked:
            out["ms"] = round(self.ms, 1)
        return out


class VerdictCache:
    """Ratings by (caller scope, judged text), least recently used out first, each for ttl_s."""

    def __init__(self, ttl_s: float, entries: int) -> None:
        self.ttl_s, self.entries = ttl_s, entries
        self._items: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(request: ChatRequest, text: str) -> str:
        return hashlib.sha256(f"{request.scope.key()}\0{text}".encode()).hexdigest()

    def get(self, key: str) -> float | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] < time.monotonic():
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: str, rating: float) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._items[key] = (time.monotonic() + self.ttl_s, rating)
            self._items.move_to_end(key)
            while len(self._items) > self.entries:
                self._items.popitem(last=False)


class LLMJudge:
    """Reviews a score near a band edge by asking the host's judge tier; fail-open.

    One per router: the verdict cache, the concurrency cap and the rest after failures are
    shared by every request it reviews, whichever host call (`ask`) each one brings.
    """

    def __init__(self, config: TierwiseConfig) -> None:
        self.settings = config.scoring.judge
        self.margin = config.scoring.cascade.judge_margin
        self.timeout_s = config.scoring.cascade.judge_timeout_s
        self.bands = config.scoring.bands
        self.cache = VerdictCache(self.settings.cache_ttl_s, self.settings.cache_entries)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._failures = 0
        self._resting_until = 0.0

    def wants(self, score: Score) -> bool:
        """Near enough to a band edge for the judge's word to matter."""
        return abs(score.value - nearest_edge(score.value, self.bands)) <= self.margin

    async def review(
        self, request: ChatRequest, score: Score, ask: AskJudge
    ) -> tuple[Score, JudgeOutcome | None]:
        """The judged score and what happened, or the score unchanged and None when the
        judge is not wanted (far from an edge, nothing to rate)."""
        if not self.wants(score):
            return score, None
        text = judge_text(request, self.settings.max_chars)
        if not text:
            return score, None
        edge = nearest_edge(score.value, self.bands)
        blank = JudgeOutcome("", score.value, edge, score.source)
        key = VerdictCache.key(request, text)
        cached = self.cache.get(key)
        if cached is not None:
            return self._judged(score, replace(blank, status="cached"), cached)
        if not self._take_slot():
            status = "resting" if self._resting() else "busy"
            return score, replace(blank, status=status)
        started = time.perf_counter()
        try:
            answer = await asyncio.wait_for(ask(judge_messages(text), request), self.timeout_s)
            rating = parse_rating(answer)
        except TimeoutError:
            return score, self._failed(blank, "timeout", started, f"{self.timeout_s:g} s")
        except UnreadableVerdict as exc:  # what the caller's text made the judge say
            return score, self._failed(blank, "error", started, str(exc), tier_fault=False)
        except Exception as exc:
            code = getattr(exc, "status_code", None)
            fault = classify(code if isinstance(code, int) else None, sent=True)
            why = f"{type(exc).__name__}: {exc}"
            return score, self._failed(blank, "error", started, why, fault is Fault.TIER)
        finally:
            self._release_slot()
        with self._lock:
            self._failures = 0
        self.cache.put(key, rating)
        ms = (time.perf_counter() - started) * 1000
        return self._judged(score, replace(blank, status="judged", ms=ms), rating)

    def _judged(
        self, score: Score, outcome: JudgeOutcome, rating: float
    ) -> tuple[Score, JudgeOutcome]:
        value = settle(rating_score(rating, self.bands), outcome.edge, self.bands)
        outcome = replace(outcome, rating=rating, verdict=value)
        judged = Score(
            value,
            Band.of(value, self.bands),
            "judge",
            ("judge", *score.drivers),
            score.task_kind,
        )
        return judged, outcome

    def _failed(
        self,
        blank: JudgeOutcome,
        status: str,
        started: float,
        detail: str,
        tier_fault: bool = True,
    ) -> JudgeOutcome:
        """Keep the score. Only the judge tier's own faults count towards a rest: an answer
        or a 4xx the caller's text provoked must not switch the judge off for everyone."""
        with self._lock:
            self._failures += int(tier_fault)
            failures = self._failures
            if tier_fault and failures >= self.settings.max_failures:
                self._resting_until = time.monotonic() + self.settings.cooldown_s
                self._failures = 0
        level = logging.WARNING if failures == 1 else logging.DEBUG
        log.log(level, "LLM judge %s (%s); keeping the %s score", status, detail, blank.source)
        if tier_fault and failures >= self.settings.max_failures:
            log.warning(
                "LLM judge failed %d times in a row; not asked for %.0f s",
                failures,
                self.settings.cooldown_s,
            )
        ms = (time.perf_counter() - started) * 1000
        return replace(blank, status=status, ms=ms, detail=detail[:200])

    def _resting(self) -> bool:
        return time.monotonic() < self._resting_until

    def _take_slot(self) -> bool:
        with self._lock:
            if self._resting() or self._in_flight >= self.settings.max_concurrent:
                return False
            self._in_flight += 1
            return True

    def _release_slot(self) -> None:
        with self._lock:
            self._in_flight -= 1

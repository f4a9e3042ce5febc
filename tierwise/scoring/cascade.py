"""Cascade: the cheapest scorer that is sure decides; the next one is asked otherwise.

heuristic (sub-ms) -> learned (a few ms) -> LLM judge (a sync callable the adapter supplies,
run on a thread with a timeout; async hosts use scoring/judge.py's LLMJudge through
TierRouter.adecide instead). With a heuristic_margin the heuristic decides alone at the
extremes of its scale (by default it does not: the learned path is as cheap); the judge is
asked only when the learned score sits near a band edge, and its failure or silence leaves
the learned score in place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace

from tierwise.config import Bands, CascadeConfig
from tierwise.request import ChatRequest
from tierwise.scoring.base import Band, Score, Scorer
from tierwise.scoring.judge import nearest_edge

log = logging.getLogger(__name__)

# What an adapter's judge returns: a score in [0, 1], a band name, or a Score.
Judge = Callable[[ChatRequest], "float | str | Score"]
_JUDGE_THREADS = 4


class CascadeScorer(Scorer):
    name = "cascade"

    def __init__(
        self,
        first: Scorer,
        second: Scorer,
        settings: CascadeConfig | None = None,
        judge: Judge | None = None,
        bands: Bands | None = None,
    ) -> None:
        super().__init__(bands)
        self.first, self.second = first, second
        self.settings = settings or CascadeConfig()
        self.judge = judge
        self._pool = ThreadPoolExecutor(_JUDGE_THREADS, "tierwise-judge") if judge else None
        self._judge_failures = 0

    def score(self, request: ChatRequest) -> Score:
        margin = self.settings.heuristic_margin
        if margin > 0:
            quick = self.first.score(request)
            if quick.value <= margin or quick.value >= 1 - margin:
                return quick
        learned = self.second.score(request)
        edge = nearest_edge(learned.value, self.bands)
        if self.judge is None or abs(learned.value - edge) > self.settings.judge_margin:
            return learned
        return self._ask_judge(request, learned)

    def _ask_judge(self, request: ChatRequest, fallback: Score) -> Score:
        assert self._pool is not None and self.judge is not None
        future = self._pool.submit(self.judge, request)
        try:
            verdict = future.result(timeout=self.settings.judge_timeout_s)
            score = self._as_score(verdict)
        except FutureTimeout:
            future.cancel()
            return self._fallback(fallback, f"no answer in {self.settings.judge_timeout_s:g} s")
        except Exception as exc:
            return self._fallback(fallback, f"{type(exc).__name__}: {exc}")
        return score if score.task_kind else replace(score, task_kind=fallback.task_kind)

    def _as_score(self, verdict: float | str | Score) -> Score:
        if isinstance(verdict, Score):
            return verdict
        if isinstance(verdict, str):
            band = Band(verdict.strip().upper())
            centre = {
                Band.LOW: self.bands.medium / 2,
                Band.MEDIUM: (self.bands.medium + self.bands.high) / 2,
                Band.HIGH: (self.bands.high + 1) / 2,
            }[band]
            return Score(centre, band, "judge", ("judge",))
        value = float(verdict)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"judge returned {value}, outside [0, 1]")
        return Score(value, Band.of(value, self.bands), "judge", ("judge",))

    def _fallback(self, learned: Score, why: str) -> Score:
        self._judge_failures += 1
        level = logging.WARNING if self._judge_failures == 1 else logging.DEBUG
        log.log(level, "LLM judge failed (%s); keeping the learned score", why)
        return replace(learned, drivers=(*learned.drivers, "judge-failed"))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

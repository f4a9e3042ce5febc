"""A realistic decision log for demos and benchmarks, reproducible from a seed.

Nothing here is canned: each simulated request goes through a real TierRouter (heuristic
scorer, full rule chain) on the bundled example prompts, and the simulated outcome is fed
back with router.record(), so the SLA and health rules react as they would live. A day of
traffic follows a daily curve, repeats some questions (cache hits), attaches images and
long histories now and then, and has two incidents on the HPC tier: a slow spell (its TTFT
EMA crosses the SLA, requests move up to cloud, one in N still probes) and a short outage
(failures, fallbacks, the health breaker's cool-down).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tierwise.config import TierwiseConfig, load_config
from tierwise.decision import Decision
from tierwise.request import ChatRequest, Message, Scope
from tierwise.router import TierRouter
from tierwise.rules import Signals
from tierwise.scoring.base import Score, Scorer
from tierwise.scoring.heuristic import HeuristicScorer
from tierwise.signals.health import HealthTracker
from tierwise.telemetry.log import insert_rows
from tierwise.telemetry.record import RequestRecord
from tierwise.telemetry.recorder import Telemetry
from tierwise.telemetry.schema import connect, ensure_schema

HOSTS = (("litellm", 0.7), ("openwebui", 0.3))
HOSTS_NAMES = [h for h, _ in HOSTS]
HOSTS_WEIGHTS = [w for _, w in HOSTS]
USERS = 60
# Per tier: median TTFT (ms), output tokens per second, base failure rate.
TIER_PROFILE = {0: (260.0, 55.0, 0.003), 1: (850.0, 40.0, 0.01), 2: (650.0, 75.0, 0.004)}
OUT_TOKENS = {"LOW": 110.0, "MEDIUM": 320.0, "HIGH": 650.0}
SLOW_SPELL = (0.36, 0.44)  # share of the window when the HPC tier is slow
OUTAGE = (0.70, 0.725)  # ... and when it fails
CACHE_REPEAT = 0.12


class _MemoScorer(Scorer):
    """The real scorer, remembered per prompt (the demo asks the same prompts many times)."""

    def __init__(self, inner: Scorer) -> None:
        super().__init__(inner.bands)
        self.inner = inner
        self.name = inner.name
        self._memo: dict[str, Score] = {}

    def score(self, request: ChatRequest) -> Score:
        key = request.last_user_text
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self.inner.score(request)
        return found


@dataclass
class _Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def _prompts() -> list[str]:
    text = resources.files("tierwise.defaults").joinpath("examples.jsonl").read_text()
    return [json.loads(line)["text"] for line in text.splitlines() if line.strip()]


def _requests(prompts: list[str]) -> list[tuple[ChatRequest, str]]:
    """Each prompt as a plain chat turn, with an image, and deep in a long conversation."""
    pool: list[tuple[ChatRequest, str]] = []
    earlier = " ".join(prompts)
    for i, text in enumerate(prompts):
        pool.append((ChatRequest.from_text(text), "chat"))
        image = Message(role="user", text=text, images=1)
        pool.append((ChatRequest(messages=(image,)), "image"))
        turns = 14 + 2 * (i % 8)  # histories of roughly 4k to 10k tokens
        history = tuple(
            Message(role="user" if j % 2 == 0 else "assistant", text=earlier) for j in range(turns)
        )
        pool.append((ChatRequest(messages=(*history, Message(role="user", text=text))), "long"))
    return pool


def _times(rng: random.Random, rows: int, start: float, end: float) -> list[float]:
    """Arrival times with a daily curve: quiet at night, busiest mid-afternoon."""
    out: list[float] = []
    while len(out) < rows:
        t = rng.uniform(start, end)
        hour = (t % 86400) / 3600
        if rng.random() < 0.3 + 0.7 * max(0.0, math.sin((hour - 6) / 24 * 2 * math.pi)):
            out.append(t)
    out.sort()
    return out


def simulate(
    rows: int, hours: float, seed: int, end: float, config: TierwiseConfig | None = None
) -> Iterator[RequestRecord]:
    """Yield `rows` records spread over the `hours` before `end`, deterministically."""
    config = config or load_config()
    # The router warns when the simulated outage opens its breaker; that is the point here.
    logging.getLogger("tierwise.router").setLevel(logging.ERROR)
    rng = random.Random(seed)
    clock = _Clock()
    signals = Signals(health=HealthTracker(clock=clock))
    scorer = _MemoScorer(HeuristicScorer(bands=config.scoring.bands))
    router = TierRouter(config, scorer=scorer, signals=signals)
    telemetries = {host: Telemetry(config, host) for host, _ in HOSTS}
    ranked = config.ranked_tiers
    order = {t.name: i for i, t in enumerate(ranked)}
    pool = _requests(_prompts())
    chats = [p for p in pool if p[1] == "chat"]
    others = [p for p in pool if p[1] != "chat"]
    scopes = [Scope(user=f"user-{i}").key() for i in range(USERS)]
    weights = [1 / (i + 1) for i in range(USERS)]
    start = end - hours * 3600
    recent: list[tuple[str, ChatRequest, Decision, int]] = []
    for ts in _times(rng, rows, start, end):
        clock.now = ts
        phase = (ts - start) / (end - start)
        telemetry = telemetries[rng.choices(HOSTS_NAMES, HOSTS_WEIGHTS)[0]]
        if recent and rng.random() < CACHE_REPEAT:
            scope, request, decision, tokens_out = rng.choice(recent)
            latency_ms = rng.lognormvariate(math.log(18), 0.3)
            yield _record(
                telemetry,
                decision,
                scope,
                ts,
                request,
                tokens_out,
                cache_hit=True,
                latency_ms=latency_ms,
                ttft_ms=latency_ms,
            )
            continue
        scope = rng.choices(scopes, weights)[0]
        request, _kind = rng.choice(chats) if rng.random() < 0.9 else rng.choice(others)
        decision = router.decide(request)
        tokens_out = int(rng.lognormvariate(math.log(OUT_TOKENS[decision.band]), 0.5)) + 5
        served, error = decision.tier, ""
        for attempt in (decision.tier, *decision.fallback_chain):
            ttft, tps, fail = TIER_PROFILE[min(order[attempt], 2)]
            if attempt == "hpc" and SLOW_SPELL[0] <= phase < SLOW_SPELL[1]:
                ttft *= 4.5
            if attempt == "hpc" and OUTAGE[0] <= phase < OUTAGE[1]:
                fail = 0.9
            if rng.random() < fail:
                error = "upstream returned 503 (simulated)"
                router.record(attempt, ok=False, error=error)
                continue
            served = attempt
            ttft_ms = rng.lognormvariate(math.log(ttft), 0.35)
            router.record(attempt, ok=True, ttft_ms=ttft_ms)
            latency_ms = ttft_ms + tokens_out / tps * 1000
            break
        else:
            yield _record(telemetry, decision, scope, ts, request, 0, ok=False, error=error)
            continue
        recent = [*recent[-199:], (scope, request, decision, tokens_out)]
        yield _record(
            telemetry,
            decision,
            scope,
            ts,
            request,
            tokens_out,
            tier=served,
            error=error,
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
        )


def _record(
    telemetry: Telemetry,
    decision: Decision,
    scope: str,
    ts: float,
    request: ChatRequest,
    tokens_out: int,
    *,
    tier: str | None = None,
    ok: bool = True,
    error: str = "",
    latency_ms: float | None = None,
    ttft_ms: float | None = None,
    cache_hit: bool = False,
) -> RequestRecord:
    """A record as the adapter would report it; a long context that fills more than 60%
    of the serving tier's window counts as summarized down to that size."""
    tokens_in = request.prompt_tokens
    window = 0 if cache_hit else telemetry.config.tier(tier or decision.tier).context_window
    summarized = bool(window) and tokens_in > 0.6 * window
    if summarized:
        tokens_in = int(0.6 * window)
    return telemetry.build(
        decision,
        scope=scope,
        tier=tier,
        model=None,
        ok=ok,
        error=error,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cache_hit=cache_hit,
        summarized=summarized,
        cost_usd=None,
        ts=ts,
    )


def write_demo_log(
    path: str | Path,
    rows: int = 20000,
    hours: float = 24.0,
    seed: int = 7,
    end: float | None = None,
    config: TierwiseConfig | None = None,
) -> int:
    """Create (or append to) a decision log at `path` with `rows` simulated requests."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        ensure_schema(conn)
        batch: list[RequestRecord] = []
        written = 0
        for record in simulate(rows, hours, seed, end or time.time(), config):
            batch.append(record)
            if len(batch) >= 5000:
                written += insert_rows(conn, batch)
                batch.clear()
        written += insert_rows(conn, batch)
        return written
    finally:
        conn.close()

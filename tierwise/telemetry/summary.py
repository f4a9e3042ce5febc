"""What the dashboard and `tierwise report` show, computed from the decision log.

A handful of aggregate queries over one time window (the `ts` index bounds each scan) plus
one pass over the latencies for percentiles: a 100k-row window summarizes in a few hundred
milliseconds on one core.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from tierwise.telemetry.record import COLUMNS
from tierwise.telemetry.recorder import CACHE_TIER

# window name -> (seconds, bucket seconds for the routing split)
WINDOWS: dict[str, tuple[float | None, float]] = {
    "1h": (3600, 60),
    "6h": (6 * 3600, 300),
    "24h": (86400, 900),
    "7d": (7 * 86400, 7200),
    "30d": (30 * 86400, 43200),
    "all": (None, 0),
}
RECENT_S = 300.0  # tier health looks at the last five minutes
# The live stream shows every column but the scope hash, the full reasons and decide time.
STREAM_COLUMNS = (
    "id",
    *(c for c in COLUMNS if c not in ("scope", "reasons", "decide_ms", "sketch", "raw_score")),
)


@dataclass(frozen=True)
class Window:
    name: str
    since: float
    until: float
    bucket_s: float


def resolve_window(conn: sqlite3.Connection, name: str, now: float | None = None) -> Window:
    """Turn '24h' (or 'all') into timestamps and a bucket size of roughly 50-100 buckets."""
    if name not in WINDOWS:
        raise ValueError(f"unknown window {name!r}; allowed: {', '.join(WINDOWS)}")
    until = time.time() if now is None else now
    span, bucket = WINDOWS[name]
    if span is None:
        first = conn.execute("SELECT min(ts) FROM requests").fetchone()[0]
        since = float(first) if first is not None else until - 3600
        bucket = _nice_bucket((until - since) / 60)
    else:
        since = until - span
    return Window(name, since, until, bucket)


def _nice_bucket(seconds: float) -> float:
    for step in (60, 300, 900, 3600, 7200, 21600, 43200, 86400, 7 * 86400):
        if seconds <= step:
            return step
    return 30 * 86400


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values (None when there are none)."""
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def tier_order(names: Sequence[str], configured: Sequence[str] = ()) -> list[str]:
    """Cache first, then the configured ladder (cheapest first), then any others by name."""
    present = set(names)
    ordered = [CACHE_TIER] if CACHE_TIER in present else []
    ordered += [n for n in configured if n in present and n != CACHE_TIER]
    ordered += sorted(present - set(ordered))
    return ordered


def summarize(
    conn: sqlite3.Connection,
    window: str = "24h",
    configured_tiers: Sequence[str] = (),
    now: float | None = None,
) -> dict[str, Any]:
    """Totals, per-tier figures, routing split over time, top reasons and tier health."""
    started = time.perf_counter()
    w = resolve_window(conn, window, now)
    span = (w.since, w.until)
    n_buckets = max(1, int((w.until - w.since) // w.bucket_s) + 1)

    # One scan for every count and sum: grouped by bucket and by each dimension the page
    # breaks figures down by; the groups (a few thousand) are folded here.
    scan = "" if w.since > _first_ts(conn) else "NOT INDEXED"  # whole table: skip the index
    per_tier: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    split: dict[str, list[int]] = {}
    spend = [0.0] * n_buckets
    top_spend = [0.0] * n_buckets
    reasons_n: dict[str, int] = defaultdict(int)
    hosts_n: dict[str, int] = defaultdict(int)
    attempts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (
        bucket,
        tier,
        routed,
        reason,
        host,
        ok,
        fallback,
        n,
        hits,
        summ,
        probes,
        t_in,
        t_out,
        cost,
        top,
    ) in conn.execute(
        "SELECT CAST((ts - ?) / ? AS INTEGER), tier, routed_tier, reason, host, ok, fallback, "
        "count(*), sum(cache_hit), sum(summarized), sum(probe), sum(tokens_in), "
        f"sum(tokens_out), sum(cost_usd), sum(top_cost_usd) FROM requests {scan} "
        "WHERE ts >= ? AND ts <= ? GROUP BY 1, 2, 3, 4, 5, 6, 7",
        (w.since, w.bucket_s, *span),
    ):
        b = min(max(int(bucket), 0), n_buckets - 1)
        split.setdefault(tier, [0] * n_buckets)[b] += n
        spend[b] += cost
        top_spend[b] += top
        reasons_n[reason] += n
        hosts_n[host] += n
        errors = 0 if ok else n
        fallbacks = n if fallback else 0
        attempts[tier][0] += n
        attempts[tier][1] += errors
        if fallback:  # a failed attempt on the decided tier before this one served
            attempts[routed][0] += n
            attempts[routed][1] += n
        acc = per_tier[tier]
        for key, value in (
            ("requests", n),
            ("errors", errors),
            ("cache_hits", hits),
            ("summarized", summ),
            ("fallbacks", fallbacks),
            ("probes", probes),
            ("tokens_in", t_in),
            ("tokens_out", t_out),
            ("cost_usd", cost),
            ("top_cost_usd", top),
        ):
            acc[key] += value

    latencies: dict[str, list[float]] = defaultdict(list)
    ttfts: dict[str, list[float]] = defaultdict(list)
    decides: list[float] = []
    for tier, latency, ttft, decide in conn.execute(
        f"SELECT tier, latency_ms, ttft_ms, decide_ms FROM requests {scan} "
        "WHERE ts >= ? AND ts <= ?",
        span,
    ):
        if latency is not None:
            latencies[tier].append(latency)
        if ttft is not None:
            ttfts[tier].append(ttft)
        if decide is not None:
            decides.append(decide)
    for values in (*latencies.values(), *ttfts.values(), decides):
        values.sort()

    recent = _failures(conn, w.until - RECENT_S, w.until)
    failures = {tier: (a, f) for tier, (a, f) in attempts.items()}
    last_errors = {
        tier: (error, ts)
        for tier, error, ts in conn.execute(
            "SELECT CASE WHEN fallback = 1 THEN routed_tier ELSE tier END, error, max(ts) "
            "FROM requests WHERE error != '' AND ts >= ? AND ts <= ? GROUP BY 1",
            span,
        )
    }
    total = sum(acc["requests"] for acc in per_tier.values())
    top_reasons = sorted(reasons_n.items(), key=lambda kv: -kv[1])[:10]
    reasons = [
        {"reason": reason, "count": n, "share": n / total if total else 0.0}
        for reason, n in top_reasons
    ]
    hosts = [
        {"host": host, "count": n} for host, n in sorted(hosts_n.items(), key=lambda kv: -kv[1])
    ]

    names = tier_order(list(per_tier), configured_tiers)
    tiers = [
        _tier_row(
            name,
            per_tier[name],
            total,
            (latencies[name], ttfts[name]),
            (failures.get(name, (0, 0)), recent.get(name, (0, 0))),
            last_errors.get(name, ("", None)),
        )
        for name in names
    ]
    totals = _totals(per_tier, latencies, ttfts, decides)
    totals.update(_judge_counts(conn, span))
    max_id = conn.execute("SELECT max(id) FROM requests").fetchone()[0] or 0
    return {
        "window": w.name,
        "since": w.since,
        "until": w.until,
        "max_id": max_id,
        "totals": totals,
        "tiers": tiers,
        "split": {
            "start": w.since,
            "bucket_s": w.bucket_s,
            "tiers": names,
            "counts": {name: split.get(name, [0] * n_buckets) for name in names},
            "cost_usd": spend,
            "top_cost_usd": top_spend,
        },
        "reasons": reasons,
        "hosts": hosts,
        "computed_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def _judge_counts(conn: sqlite3.Connection, span: tuple[float, float]) -> dict[str, int]:
    """Requests the LLM judge rated (a verdict, cached ones too) and those where it was
    wanted but the score stood (timeout, error, busy, resting): from the judge's reason line,
    which the router puts first."""
    first = "json_extract(reasons, '$[0]')"
    rated, kept = conn.execute(
        f"SELECT sum({first} LIKE 'judge: %rated %'), sum({first} LIKE 'judge: %, kept %') "
        "FROM requests WHERE ts >= ? AND ts <= ? AND reasons LIKE '[\"judge: %'",
        span,
    ).fetchone()
    return {"judged": int(rated or 0), "judge_kept": int(kept or 0)}


def _first_ts(conn: sqlite3.Connection) -> float:
    first = conn.execute("SELECT min(ts) FROM requests").fetchone()[0]
    return float("inf") if first is None else float(first)


def _failures(conn: sqlite3.Connection, since: float, until: float) -> dict[str, tuple[int, int]]:
    """Per tier: (attempts, failures). A request that fell back is a failed attempt on the
    tier decided for it and a served one on the tier that answered."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for tier, n, errors in conn.execute(
        "SELECT tier, count(*), count(*) - sum(ok) FROM requests WHERE ts >= ? AND ts <= ? "
        "GROUP BY tier",
        (since, until),
    ):
        out[tier][0] += n
        out[tier][1] += errors
    for tier, n in conn.execute(
        "SELECT routed_tier, count(*) FROM requests WHERE fallback = 1 AND ts >= ? AND ts <= ? "
        "GROUP BY routed_tier",
        (since, until),
    ):
        out[tier][0] += n
        out[tier][1] += n
    return {tier: (a, f) for tier, (a, f) in out.items()}


def _tier_row(
    name: str,
    acc: dict[str, float],
    total: float,
    timings: tuple[list[float], list[float]],
    failures: tuple[tuple[int, int], tuple[int, int]],
    last_error: tuple[str, float | None],
) -> dict[str, Any]:
    n = int(acc["requests"])
    latency, ttft = timings
    (attempts, failed), (recent_attempts, recent_failed) = failures
    return {
        "tier": name,
        "requests": n,
        "share": n / total if total else 0.0,
        "errors": int(acc["errors"]),
        "attempts": attempts,
        "failures": failed,
        "failure_rate": failed / attempts if attempts else 0.0,
        "fallbacks_in": int(acc["fallbacks"]),
        "summarized": int(acc["summarized"]),
        "latency_p50_ms": percentile(latency, 50),
        "latency_p95_ms": percentile(latency, 95),
        "ttft_p50_ms": percentile(ttft, 50),
        "ttft_p95_ms": percentile(ttft, 95),
        "cost_usd": acc["cost_usd"],
        "recent_attempts": recent_attempts,
        "recent_failures": recent_failed,
        "status": health_status(recent_attempts, recent_failed),
        "last_error": last_error[0],
        "last_error_ts": last_error[1],
    }


def health_status(attempts: int, failures: int) -> str:
    """ok / degraded / failing from the last five minutes; idle with no traffic."""
    if attempts == 0:
        return "idle"
    rate = failures / attempts
    if rate >= 0.5 and failures >= 3:
        return "failing"
    if rate >= 0.05 and failures >= 2:
        return "degraded"
    return "ok"


def _totals(
    per_tier: dict[str, dict[str, float]],
    latencies: dict[str, list[float]],
    ttfts: dict[str, list[float]],
    decides: list[float],
) -> dict[str, Any]:
    sums: dict[str, float] = defaultdict(float)
    for acc in per_tier.values():
        for key, value in acc.items():
            sums[key] += value
    n = int(sums["requests"])
    cost, top = sums["cost_usd"], sums["top_cost_usd"]
    all_latency = sorted(chain.from_iterable(latencies.values()))  # sorted runs: fast
    all_ttft = sorted(chain.from_iterable(ttfts.values()))
    return {
        "requests": n,
        "errors": int(sums["errors"]),
        "error_rate": sums["errors"] / n if n else 0.0,
        "cache_hits": int(sums["cache_hits"]),
        "cache_hit_rate": sums["cache_hits"] / n if n else 0.0,
        "summarized": int(sums["summarized"]),
        "fallbacks": int(sums["fallbacks"]),
        "probes": int(sums["probes"]),
        "tokens_in": int(sums["tokens_in"]),
        "tokens_out": int(sums["tokens_out"]),
        "cost_usd": cost,
        "top_cost_usd": top,
        "saved_usd": top - cost,
        "saved_ratio": (top - cost) / top if top else 0.0,
        "latency_p50_ms": percentile(all_latency, 50),
        "latency_p95_ms": percentile(all_latency, 95),
        "ttft_p50_ms": percentile(all_ttft, 50),
        "ttft_p95_ms": percentile(all_ttft, 95),
        "decide_p50_ms": percentile(decides, 50),
        "decide_p95_ms": percentile(decides, 95),
    }


def stream(conn: sqlite3.Connection, after_id: int = 0, limit: int = 50) -> list[dict[str, Any]]:
    """The newest rows (after `after_id`), newest first, for the live request stream."""
    rows = conn.execute(
        f"SELECT {', '.join(STREAM_COLUMNS)} FROM requests WHERE id > ? ORDER BY id DESC LIMIT ?",
        (after_id, limit),
    ).fetchall()
    return [dict(zip(STREAM_COLUMNS, row, strict=True)) for row in rows]

"""Summaries over hand-made logs whose answers are known, and the demo generator."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import sample_record
from tierwise.telemetry.demo import simulate, write_demo_log
from tierwise.telemetry.log import insert_rows
from tierwise.telemetry.record import RequestRecord
from tierwise.telemetry.schema import connect, ensure_schema, open_reader
from tierwise.telemetry.summary import health_status, stream, summarize

NOW = 1_800_000_000.0


def row(**changes: object) -> RequestRecord:
    return sample_record(**{"ts": NOW, "decide_ms": 0.05, **changes})


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    c = connect(tmp_path / "log.db")
    ensure_schema(c)
    insert_rows(
        c,
        [
            row(ts=NOW - 7200, top_cost_usd=5.0),  # outside the 1h window
            row(ts=NOW - 3500, ttft_ms=300, latency_ms=3000, top_cost_usd=0.01),
            row(ts=NOW - 100, ttft_ms=100, latency_ms=1000, top_cost_usd=0.01),
            row(ts=NOW - 100, ttft_ms=200, latency_ms=2000, top_cost_usd=0.01, host="openwebui"),
            row(
                ts=NOW - 50,
                tier="cloud",
                routed_tier="hpc",
                error="hpc: 503",
                cost_usd=0.02,
                top_cost_usd=0.02,
                reason="complexity: MEDIUM",
            ),
            row(
                ts=NOW - 10,
                tier="cache",
                routed_tier="cache",
                cache_hit=True,
                top_cost_usd=0.005,
                reason="cache: hit",
                latency_ms=5,
                ttft_ms=5,
            ),
            row(ts=NOW - 20, tier="hpc", routed_tier="hpc", ok=False, error="boom"),
        ],
    )
    return c


def test_totals_savings_and_hit_rate(conn: sqlite3.Connection) -> None:
    s = summarize(conn, "1h", ["local", "hpc", "cloud"], now=NOW)
    t = s["totals"]
    assert t["requests"] == 6 and t["errors"] == 1 and t["fallbacks"] == 1
    assert t["cache_hit_rate"] == pytest.approx(1 / 6)
    assert t["cost_usd"] == pytest.approx(0.02)
    assert t["top_cost_usd"] == pytest.approx(0.055)
    assert t["saved_usd"] == pytest.approx(0.035)
    assert t["saved_ratio"] == pytest.approx(0.035 / 0.055)
    assert s["hosts"] == [{"host": "litellm", "count": 5}, {"host": "openwebui", "count": 1}]
    assert s["reasons"][0] == {"reason": "complexity: LOW", "count": 4, "share": 4 / 6}


def test_per_tier_percentiles_failures_and_health(conn: sqlite3.Connection) -> None:
    s = summarize(conn, "1h", ["local", "hpc", "cloud"], now=NOW)
    tiers = {r["tier"]: r for r in s["tiers"]}
    assert [r["tier"] for r in s["tiers"]] == ["cache", "local", "hpc", "cloud"]
    local = tiers["local"]
    assert (local["ttft_p50_ms"], local["ttft_p95_ms"]) == (200, 300)
    assert (local["latency_p50_ms"], local["latency_p95_ms"]) == (2000, 3000)
    assert local["status"] == "ok" and local["recent_attempts"] == 2
    hpc = tiers["hpc"]  # failed once itself, and once before cloud served instead
    assert (hpc["requests"], hpc["attempts"], hpc["failures"]) == (1, 2, 2)
    assert hpc["status"] == "degraded" and hpc["last_error"] == "boom"
    assert hpc["ttft_p50_ms"] is None
    cloud = tiers["cloud"]
    assert (cloud["fallbacks_in"], cloud["failures"], cloud["status"]) == (1, 0, "ok")


def test_split_buckets_by_time(conn: sqlite3.Connection) -> None:
    split = summarize(conn, "1h", now=NOW)["split"]
    assert split["bucket_s"] == 60 and len(split["counts"]["local"]) == 61
    assert split["counts"]["local"][1] == 1  # NOW-3500 is in the second minute
    assert split["counts"]["local"][58] == 2
    assert sum(split["cost_usd"]) == pytest.approx(0.02)


def test_all_window_starts_at_the_first_row(conn: sqlite3.Connection) -> None:
    s = summarize(conn, "all", now=NOW)
    assert s["since"] == NOW - 7200 and s["totals"]["requests"] == 7
    with pytest.raises(ValueError, match="unknown window"):
        summarize(conn, "2h", now=NOW)


def test_stream_is_newest_first_and_incremental(conn: sqlite3.Connection) -> None:
    everything = stream(conn, 0, 50)
    assert [r["id"] for r in everything] == list(range(7, 0, -1))
    assert [r["id"] for r in stream(conn, 5, 50)] == [7, 6]
    assert everything[0]["error"] == "boom" and everything[0]["ok"] == 0


@pytest.mark.parametrize(
    ("attempts", "failures", "status"),
    [(0, 0, "idle"), (100, 1, "ok"), (10, 2, "degraded"), (4, 3, "failing"), (2, 2, "degraded")],
)
def test_health_status(attempts: int, failures: int, status: str) -> None:
    assert health_status(attempts, failures) == status


def test_demo_is_reproducible_and_shows_every_kind_of_event(tmp_path: Path) -> None:
    def strip(r: RequestRecord) -> RequestRecord:
        return dataclasses.replace(r, decide_ms=None)  # measured live: varies run to run

    first = [strip(r) for r in simulate(3000, 24, seed=3, end=NOW)]
    again = [strip(r) for r in simulate(3000, 24, seed=3, end=NOW)]
    assert first == again
    assert all(NOW - 86400 <= r.ts <= NOW for r in first)
    reasons = {r.reason.split(":")[0] for r in first}
    assert {"complexity", "cache", "capability", "sla", "health"} <= reasons
    assert any(r.fallback for r in first) and any(r.summarized for r in first)
    db = tmp_path / "demo.db"
    assert write_demo_log(db, rows=500, seed=1) == 500
    s = summarize(open_reader(db), "24h")
    assert s["totals"]["requests"] == 500 and s["totals"]["saved_usd"] > 0


def test_the_llm_judge_is_counted_apart(tmp_path: Path) -> None:
    """Rated and kept-the-score rows, from the reason lines the judge itself writes."""
    from tierwise.scoring.judge import JudgeOutcome

    asked = JudgeOutcome("judged", 0.64, 2 / 3, "learned", rating=9, verdict=0.9)
    cached = dataclasses.replace(asked, status="cached")
    late = JudgeOutcome("timeout", 0.35, 1 / 3, "learned")
    c = connect(tmp_path / "log.db")
    ensure_schema(c)
    rules = ("complexity: score 0.90 HIGH -> cloud",)
    insert_rows(
        c,
        [
            row(reasons=(asked.reason, *rules)),
            row(reasons=(cached.reason, *rules)),
            row(reasons=(late.reason, "sla: kept judge, kept it")),
            row(reasons=("complexity: kept judge: x rated y",)),
        ],
    )
    t = summarize(c, "1h", now=NOW)["totals"]
    assert (t["judged"], t["judge_kept"]) == (2, 1)

"""The decision log: rows as adapters record them, retention, faults, several processes."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import sample_record, three_tiers
from tierwise.config import load_config
from tierwise.request import Scope
from tierwise.router import TierRouter
from tierwise.telemetry import RequestRecord, Telemetry
from tierwise.telemetry.log import DAY_S, DecisionLog, insert_rows
from tierwise.telemetry.record import COLUMNS
from tierwise.telemetry.schema import connect, ensure_schema


def make_router(db: Path, **telemetry: Any) -> TierRouter:
    config = three_tiers()
    config["telemetry"] = {"log": True, "path": str(db), "metrics": False, **telemetry}
    return TierRouter(load_config(config))


def rows(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM requests ORDER BY id")]
    finally:
        conn.close()


def test_columns_match_the_record() -> None:
    names = {f.name for f in dataclasses.fields(RequestRecord)}
    assert set(COLUMNS) == names | {"fallback"}


def test_a_request_becomes_one_row_with_costs_and_a_hashed_scope(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    router = make_router(db)
    telemetry = Telemetry.for_router(router, "litellm")
    decision = router.decide_text("Prove that the square root of 2 is irrational, step by step.")
    scope = Scope(user="alice@example.org", api_key="sk-secret")
    record = telemetry.request(
        decision,
        scope=scope,
        tier="cloud",
        ok=True,
        error="hpc: 503",
        latency_ms=2100.0,
        ttft_ms=400.0,
        tokens_in=1000,
        tokens_out=2000,
        summarized=True,
    )
    assert record is not None
    assert telemetry.log is not None and telemetry.log.flush()
    [row] = rows(db)
    assert row["host"] == "litellm"
    assert row["scope"] == scope.key() and "alice" not in str(row) and "sk-secret" not in str(row)
    assert row["routed_tier"] == decision.tier and row["tier"] == "cloud"
    assert row["fallback"] == int(decision.tier != "cloud")
    assert row["model"] == "cloud-model"
    assert row["summarized"] == 1 and row["cache_hit"] == 0 and row["ok"] == 1
    # cloud: $3 / $15 per million tokens; it is also the most expensive tier.
    assert row["cost_usd"] == pytest.approx((1000 * 3 + 2000 * 15) / 1e6)
    assert row["top_cost_usd"] == pytest.approx(row["cost_usd"])
    assert row["latency_ms"] == 2100.0 and row["ttft_ms"] == 400.0
    assert row["tokens_in"] == 1000 and row["tokens_out"] == 2000
    assert row["reason"] == record.reason and row["band"] == decision.band
    assert row["reasons"].startswith("[") and "complexity" in row["reasons"]


def test_a_cache_hit_costs_nothing_and_says_what_it_saved(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    router = make_router(db)
    telemetry = Telemetry.for_router(router, "openwebui")
    record = telemetry.request(None, cache_hit=True, tokens_in=100, tokens_out=100, latency_ms=9)
    assert record is not None
    assert (record.tier, record.routed_tier, record.reason) == ("cache", "cache", "cache: hit")
    assert record.cost_usd == 0 and record.top_cost_usd == pytest.approx(1800 / 1e6)
    assert not record.fallback


def test_retention_deletes_old_rows(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    conn = connect(db)
    ensure_schema(conn)
    now = time.time()
    old = sample_record(ts=now - 40 * DAY_S)
    insert_rows(conn, [old, dataclasses.replace(old, ts=now - 5 * DAY_S)])
    conn.close()
    log = DecisionLog(db, retention_days=30)
    log.append(dataclasses.replace(old, ts=now))
    assert log.flush()
    log.close()
    assert [round((now - r["ts"]) / DAY_S) for r in rows(db)] == [5, 0]


def test_a_corrupt_file_turns_the_log_off_and_requests_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "log.db"
    db.write_bytes(b"this is not a database\n" * 200)
    router = make_router(db)
    telemetry = Telemetry.for_router(router, "litellm")
    with caplog.at_level(logging.WARNING, logger="tierwise.telemetry.log"):
        first = telemetry.request(router.decide_text("hello"), latency_ms=5)
        assert telemetry.log is not None
        telemetry.log.flush()
        assert not telemetry.log.enabled
        second = telemetry.request(router.decide_text("hello again"), latency_ms=5)
    assert first is not None and second is not None  # still served and counted
    assert "turned off" in caplog.text and "not a database" in caplog.text
    assert sum("turned off" in r.message for r in caplog.records) == 1
    assert db.read_bytes().startswith(b"this is not a database")  # left as it was


def test_a_locked_database_turns_the_log_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "log.db"
    holder = connect(db)
    ensure_schema(holder)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    log = DecisionLog(db, busy_timeout_s=0.2, queue_size=10)
    record = sample_record(ts=time.time())
    try:
        with caplog.at_level(logging.WARNING, logger="tierwise.telemetry.log"):
            accepted = [log.append(record) for _ in range(50)]
            assert log.flush(timeout_s=10)
        assert not log.enabled and "locked" in log.disabled_reason
        assert "turned off" in caplog.text
        assert not all(accepted) and log.dropped >= 40  # the bounded queue never grew
        assert log.append(record) is False
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_an_unwritable_location_turns_the_log_off(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    log = DecisionLog(blocker / "sub" / "log.db")
    record = sample_record(ts=time.time())
    log.append(record)
    log.flush()
    assert not log.enabled and log.disabled_reason


def _child_writes(telemetry: Telemetry, n: int, tag: str) -> None:
    for i in range(n):
        telemetry.request(None, scope=f"{tag}-{i}", cache_hit=True, latency_ms=1.0)
    assert telemetry.log is not None
    telemetry.log.close()


@pytest.mark.integration
def test_forked_workers_share_one_log(tmp_path: Path) -> None:
    """Like a pre-forking proxy: the parent logged (its writer runs) before the fork."""
    db = tmp_path / "log.db"
    telemetry = Telemetry.for_router(make_router(db), "litellm")
    telemetry.request(None, scope="parent", cache_hit=True)
    assert telemetry.log is not None and telemetry.log.flush()
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_child_writes, args=(telemetry, 300, f"w{i}")) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    found = rows(db)
    assert len(found) == 1 + 4 * 300
    assert len({r["scope"] for r in found}) == len(found)


WRITER = textwrap.dedent(
    """
    import sys, time
    from tierwise.config import load_config
    from tierwise.router import TierRouter
    from tierwise.telemetry import Telemetry
    db, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    config = load_config(None).model_dump()
    config["telemetry"] = {"log": True, "path": db, "metrics": False}
    router = TierRouter(load_config(config))
    telemetry = Telemetry.for_router(router, tag)
    decision = router.decide_text("What is the capital of France?")
    for i in range(n):
        telemetry.request(decision, scope=f"{tag}-{i}", latency_ms=10, tokens_out=5)
        if i % 50 == 0:
            time.sleep(0.01)  # interleave with the other writers
    telemetry.close()
    assert telemetry.log.enabled, telemetry.log.disabled_reason
    print(telemetry.log.written)
    """
)


@pytest.mark.integration
def test_separate_processes_write_at_once(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), f"p{i}", "500"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err.decode()
        assert out.strip() == b"500"
    found = rows(db)
    assert len(found) == 2000
    assert {r["host"] for r in found} == {"p0", "p1", "p2", "p3"}


@pytest.mark.integration
def test_a_fork_waits_for_the_writer_to_leave_sqlite(tmp_path: Path) -> None:
    """A child forked while the writer is inside SQLite would inherit its mutexes held."""
    log = DecisionLog(tmp_path / "log.db")
    inside = threading.Event()
    left_at: list[float] = []

    def writer_busy() -> None:  # stands in for the writer mid-transaction
        with log._io:
            inside.set()
            time.sleep(0.5)
            left_at.append(time.monotonic())

    busy = threading.Thread(target=writer_busy)
    busy.start()
    assert inside.wait(10)
    child = multiprocessing.get_context("fork").Process(target=_append_one, args=(log,))
    child.start()  # returns once the fork happened
    forked_at = time.monotonic()
    busy.join(10)
    child.join(60)
    assert child.exitcode == 0
    assert left_at and forked_at >= left_at[0]
    log.close()
    assert [r["scope"] for r in rows(tmp_path / "log.db")] == ["child"]


def _append_one(log: DecisionLog) -> None:
    log.append(dataclasses.replace(sample_record(ts=time.time()), scope="child"))
    assert log.flush(timeout_s=30)
    log.close()

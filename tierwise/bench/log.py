"""`tierwise bench log`: what telemetry costs a request, and how fast the dashboard loads.

Part 1 times the call an adapter makes after each request (`Telemetry.request`), with the
decision log writing to a real SQLite file on a background thread, against the same row
written synchronously (INSERT + COMMIT on the request path), in the same run.
Part 2 writes a simulated log of `rows` requests in one day and times loading the page
over it: every HTTP request the page makes, and (with Debian's chromium) a real browser
from navigation start to the first full render.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from tierwise.bench import browser
from tierwise.bench.stats import summary_ms
from tierwise.config import TierwiseConfig
from tierwise.dashboard.server import DashboardServer
from tierwise.decision import Decision
from tierwise.request import Scope
from tierwise.router import TierRouter
from tierwise.scoring.heuristic import HeuristicScorer
from tierwise.telemetry.demo import _prompts, write_demo_log
from tierwise.telemetry.log import DecisionLog
from tierwise.telemetry.metrics import Metrics
from tierwise.telemetry.recorder import Telemetry
from tierwise.telemetry.schema import INSERT, connect, ensure_schema

PAGE_FETCHES = (
    "",
    "static/app.js",
    "static/style.css",
    "api/summary?window=24h",
    "api/stream?after=0&limit=40",
)


def _decisions(config: TierwiseConfig) -> list[Decision]:
    router = TierRouter(config, scorer=HeuristicScorer(bands=config.scoring.bands))
    return [router.decide_text(text) for text in _prompts()]


def _time_calls(
    telemetry: Telemetry, decisions: list[Decision], calls: int, seed: int = 1
) -> list[float]:
    rng = random.Random(seed)
    scopes = [Scope(user=f"user-{i}") for i in range(50)]
    samples = []
    for i in range(calls):
        decision = decisions[i % len(decisions)]
        scope = scopes[i % len(scopes)]
        ttft = rng.uniform(100, 900)
        started = time.perf_counter()
        telemetry.request(
            decision,
            scope=scope,
            latency_ms=ttft * 5,
            ttft_ms=ttft,
            tokens_in=200,
            tokens_out=300,
        )
        samples.append(time.perf_counter() - started)
    return samples


class _SyncLog(DecisionLog):
    """The naive alternative: insert and commit on the request path."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._conn = connect(path)
        ensure_schema(self._conn)

    def append(self, record: Any) -> bool:
        self._conn.execute(INSERT, record.as_row())  # autocommit: one transaction per row
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        self._conn.close()


def run_call_cost(config: TierwiseConfig, calls: int, workdir: Path) -> dict[str, Any]:
    decisions = _decisions(config)
    results: dict[str, Any] = {"calls": calls}
    variants: dict[str, tuple[DecisionLog | None, bool]] = {
        "metrics_only": (None, True),
        "log_only_queued": (DecisionLog(workdir / "queued.db", queue_size=calls + 10), False),
        "log_and_metrics_queued": (DecisionLog(workdir / "both.db", queue_size=calls + 10), True),
        "log_sync_insert_commit": (_SyncLog(workdir / "sync.db"), False),
    }
    for name, (decision_log, with_metrics) in variants.items():
        metrics = Metrics(CollectorRegistry()) if with_metrics else None
        telemetry = Telemetry(config, "bench", decision_log=decision_log, metrics=metrics)
        _time_calls(telemetry, decisions, min(500, calls), seed=0)  # warm-up
        samples = _time_calls(telemetry, decisions, calls)
        results[name] = summary_ms(samples)
        if decision_log is not None:
            decision_log.flush(60)
            results[name]["dropped"] = decision_log.dropped
            decision_log.close()
    return results


def run_page_load(config: TierwiseConfig, rows: int, workdir: Path) -> dict[str, Any]:
    db = workdir / "demo.db"
    started = time.perf_counter()
    written = write_demo_log(db, rows=rows, hours=24.0, config=config)
    results: dict[str, Any] = {
        "rows": written,
        "generate_s": round(time.perf_counter() - started, 2),
        "db_mb": round(db.stat().st_size / 1e6, 1),
    }
    server = DashboardServer(db, [t.name for t in config.ranked_tiers], port=0).start()
    try:
        loads = []
        with httpx.Client(timeout=30) as client:
            for _ in range(5):
                started = time.perf_counter()
                for path in PAGE_FETCHES:
                    client.get(server.url + path).raise_for_status()
                loads.append(time.perf_counter() - started)
        results["http_all_fetches"] = summary_ms(loads)
        results["http_all_fetches"]["max_ms"] = round(max(loads) * 1000, 1)
        if browser.available():
            results["browser_ms"] = _browser_loads(server.url)
        else:
            results["browser_ms"] = None
    finally:
        server.stop()
    return results


def _browser_loads(url: str, runs: int = 3) -> list[float]:
    """Navigation start to the page's first full render (its data-load-ms), per fresh load."""
    out = []
    with browser.Browser() as b:
        for i in range(runs):
            b.open(f"{url}?run={i}")
            out.append(float(b.wait_for("return document.body.dataset.loadMs", timeout_s=30)))
    return out


def run(config: TierwiseConfig, rows: int = 100_000, calls: int = 20_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tierwise-bench-log-") as tmp:
        workdir = Path(tmp)
        return {
            "call_cost": run_call_cost(config, calls, workdir),
            "page_load": run_page_load(config, rows, workdir),
        }


def format_results(results: dict[str, Any]) -> str:
    cost = results["call_cost"]
    lines = [f"per-request telemetry call over {cost['calls']:,} calls (one thread, this machine)"]
    for key, label in (
        ("metrics_only", "metrics only"),
        ("log_only_queued", "decision log (queue + writer thread)"),
        ("log_and_metrics_queued", "decision log + metrics (what adapters run)"),
        ("log_sync_insert_commit", "for comparison: INSERT + COMMIT per request"),
    ):
        s = cost[key]
        dropped = f"   dropped {s['dropped']}" if "dropped" in s else ""
        lines.append(f"  {label:<44} p50 {s['p50_ms']:.4f} ms   p99 {s['p99_ms']:.4f} ms{dropped}")
    page = results["page_load"]
    http = page["http_all_fetches"]
    lines += [
        "",
        f"dashboard over a {page['rows']:,}-row log in one day ({page['db_mb']} MB; "
        f"generated in {page['generate_s']} s)",
        f"  every fetch of one page load, over HTTP     p50 {http['p50_ms']:.0f} ms   "
        f"max {http['max_ms']:.0f} ms (5 loads)",
    ]
    if page["browser_ms"] is None:
        lines.append("  (chromium/chromedriver not installed: no browser measurement)")
    else:
        shown = ", ".join(f"{ms:.0f}" for ms in page["browser_ms"])
        lines.append(f"  headless Chromium, navigation to first full render: {shown} ms")
    return "\n".join(lines)

"""`tierwise demo-log`, `tierwise report` and `tierwise dashboard`, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port, wait_http
from tests.test_cli import tierwise


def test_report_prints_the_summary_tables(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    made = tierwise("demo-log", str(db), "--rows", "3000", "--seed", "5")
    assert made.returncode == 0, made.stderr
    assert b"3,000 simulated requests" in made.stdout
    result = tierwise("report", "--db", str(db))
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    for expected in ("requests      3,000", "saved ", "cache hits", "top reasons", "tier "):
        assert expected in text
    for tier in ("cache", "local", "hpc", "cloud"):
        assert any(line.startswith(tier + " ") for line in text.splitlines()), tier
    data = json.loads(tierwise("report", "--db", str(db), "--json", "--window", "all").stdout)
    assert data["totals"]["requests"] == 3000 and data["window"] == "all"


def test_report_says_what_is_wrong(tmp_path: Path) -> None:
    missing = tierwise("report", "--db", str(tmp_path / "none.db"))
    assert missing.returncode == 1 and b"no decision log" in missing.stderr
    corrupt = tmp_path / "bad.db"
    corrupt.write_bytes(b"garbage" * 1000)
    broken = tierwise("report", "--db", str(corrupt))
    assert broken.returncode == 1 and b"not a database" in broken.stderr
    window = tierwise("report", "--db", str(corrupt), "--window", "5m")
    assert window.returncode == 2 and b"--window must be one of" in window.stderr


def test_dashboard_without_a_log_explains_how_to_get_one(tmp_path: Path) -> None:
    result = tierwise("dashboard", "--db", str(tmp_path / "none.db"))
    assert result.returncode == 1 and b"--demo" in result.stderr


@pytest.mark.integration
def test_dashboard_demo_serves_the_page(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "demo.db"
    log = tmp_path / "dashboard.log"
    command = [
        sys.executable,
        "-m",
        "tierwise",
        "dashboard",
        "--demo",
        "--rows",
        "2000",
        "--db",
        str(db),
        "--port",
        str(port),
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process, 60, log)
        summary = httpx.get(f"http://127.0.0.1:{port}/api/summary", timeout=30).json()
        assert summary["totals"]["requests"] == 2000
    finally:
        process.terminate()
        process.wait(10)

"""The dashboard: its JSON API over HTTP, its bundled assets, and the page in Chromium."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tierwise.bench import browser
from tierwise.dashboard.server import DashboardServer
from tierwise.telemetry.demo import write_demo_log

TIERS = ("local", "hpc", "cloud")


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("dash") / "decisions.db"
    write_demo_log(db, rows=5000, seed=11)
    return db


@pytest.fixture
def server(demo_db: Path) -> Iterator[DashboardServer]:
    srv = DashboardServer(demo_db, TIERS, port=0).start()
    yield srv
    srv.stop()


def test_summary_and_stream_api(server: DashboardServer) -> None:
    summary = httpx.get(server.url + "api/summary?window=24h", timeout=30).json()
    assert summary["totals"]["requests"] > 4000
    assert [t["tier"] for t in summary["tiers"]] == ["cache", *TIERS]
    newest = httpx.get(server.url + "api/stream?limit=5", timeout=30).json()["rows"]
    assert len(newest) == 5 and newest[0]["id"] == summary["max_id"]
    after = httpx.get(server.url + f"api/stream?after={newest[1]['id']}", timeout=30).json()
    assert [r["id"] for r in after["rows"]] == [newest[0]["id"]]


def test_bad_requests_are_answered_plainly(server: DashboardServer, tmp_path: Path) -> None:
    bad = httpx.get(server.url + "api/summary?window=2h", timeout=30)
    assert bad.status_code == 400 and "allowed" in bad.json()["error"]
    assert httpx.get(server.url + "nope", timeout=30).status_code == 404
    assert httpx.get(server.url + "api/stream?after=x", timeout=30).status_code == 200
    missing = DashboardServer(tmp_path / "absent.db", port=0).start()
    try:
        answer = httpx.get(missing.url + "api/summary", timeout=30)
        assert answer.status_code == 503 and "telemetry" in answer.json()["hint"]
    finally:
        missing.stop()


def test_assets_are_bundled_and_fetch_nothing_from_elsewhere(server: DashboardServer) -> None:
    page = httpx.get(server.url, timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    static = resources.files("tierwise.dashboard").joinpath("static")
    for name in ("index.html", "app.js", "style.css"):
        text = static.joinpath(name).read_text()
        urls = set(re.findall(r"https?://[^\s\"'`)]+", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (name, urls)
    for asset in ("static/app.js", "static/style.css"):
        assert httpx.get(server.url + asset, timeout=30).status_code == 200


@pytest.mark.integration
@pytest.mark.skipif(
    not browser.available(), reason="needs chromium + chromedriver (scripts/system-deps.sh)"
)
def test_the_page_in_headless_chromium(tmp_path: Path) -> None:
    shot = REPO / "artifacts" / "dashboard.png"
    db = tmp_path / "decisions.db"
    write_demo_log(db, rows=5000, seed=11)
    server = DashboardServer(db, TIERS, port=0).start()
    try:
        _check_page(server, db, shot)
    finally:
        server.stop()
    assert shot.stat().st_size > 50_000


def _check_page(server: DashboardServer, db: Path, shot: Path) -> None:
    with browser.Browser(width=1440, height=900) as b:
        b.open(server.url)
        b.wait_for("return document.body.dataset.ready === '1'", timeout_s=30)
        page = b.run(
            """
            const text = id => document.getElementById(id).innerText;
            return {
              kpis: text('kpis'), problem: document.getElementById('problem').hidden,
              tiers: document.querySelectorAll('#tiers tbody tr').length,
              bars: document.querySelectorAll('#split rect').length,
              reasons: document.querySelectorAll('#reasons .reason').length,
              stream: document.querySelectorAll('#stream tbody tr').length,
              spend: document.querySelectorAll('#spend polyline').length,
              width: document.documentElement.scrollWidth,
              adapt: text('adapt'),
            };
            """
        )
        assert page["problem"] is True  # no error box
        for label in ("Requests", "Saved vs all top tier", "Cache hit rate", "Errors"):
            assert label in page["kpis"]
        assert page["tiers"] == 4 and page["bars"] > 50 and page["reasons"] >= 5
        assert page["stream"] == 40 and page["spend"] == 2
        assert page["width"] <= 1440  # nothing spills sideways
        assert "outcomes received" in page["adapt"] and "tierwise adapt --rollback" in page["adapt"]
        # The live stream picks up a row written after the page loaded.
        first = b.run("return document.querySelector('#stream tbody tr').dataset.id")
        write_demo_log(db, rows=1, seed=99)
        deadline = time.monotonic() + 15
        while b.run("return document.querySelector('#stream tbody tr').dataset.id") == first:
            assert time.monotonic() < deadline, "the stream did not update"
            time.sleep(0.2)
        # Switching the window redraws from the API.
        click = (
            "[...document.querySelectorAll('#windows button')]"
            ".find(x => x.textContent === %r).click()"
        )
        note = "return document.getElementById('split-note').textContent.includes(%r)"
        b.run(click % "1h")
        b.wait_for(note % "per 1 min")
        b.run(click % "24h")
        b.wait_for(note % "per 15 min")
        b.screenshot(shot)

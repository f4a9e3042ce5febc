"""The dashboard's HTTP server: the bundled page plus two JSON endpoints over the log.

Read-only and stdlib-only (ThreadingHTTPServer): every request opens its own SQLite
connection, so the page never blocks the proxies writing the log (WAL readers do not block
writers). It binds to loopback unless told otherwise: the log shows per-tier traffic and
spend, which is for operators.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tierwise.adapt.status import adapt_status
from tierwise.adapt.store import AdaptStore
from tierwise.telemetry.schema import open_reader
from tierwise.telemetry.summary import WINDOWS, stream, summarize

log = logging.getLogger(__name__)

ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
STREAM_LIMIT = 200


class Dashboard:
    """What the handler needs: the log's path, the tier ladder, the adaptation versions."""

    def __init__(self, db: Path, tiers: Sequence[str] = (), adapt_dir: Path | None = None) -> None:
        self.db = db
        self.tiers = tuple(tiers)
        self.adapt = AdaptStore(adapt_dir or db.parent / "adapt")
        self._assets = {
            route: (
                resources.files("tierwise.dashboard").joinpath("static", name).read_bytes(),
                kind,
            )
            for route, (name, kind) in ASSETS.items()
        }

    def asset(self, route: str) -> tuple[bytes, str] | None:
        return self._assets.get(route)

    def api(self, route: str, query: dict[str, list[str]]) -> tuple[HTTPStatus, dict[str, Any]]:
        try:
            conn = open_reader(self.db)
        except FileNotFoundError:
            return HTTPStatus.SERVICE_UNAVAILABLE, {
                "error": f"no decision log at {self.db}",
                "hint": "turn it on with `telemetry: {log: true}` in the tierwise config, "
                "or try `tierwise dashboard --demo`",
            }
        try:
            if route == "/api/summary":
                window = _first(query, "window", "24h")
                if window not in WINDOWS:
                    return HTTPStatus.BAD_REQUEST, {
                        "error": f"unknown window {window!r}; allowed: {', '.join(WINDOWS)}"
                    }
                body = summarize(conn, window, self.tiers)
                body["db"] = str(self.db)
                return HTTPStatus.OK, body
            if route == "/api/adapt":
                return HTTPStatus.OK, adapt_status(conn, self.adapt)
            after = _int(_first(query, "after", "0"))
            limit = max(1, min(STREAM_LIMIT, _int(_first(query, "limit", "50"))))
            return HTTPStatus.OK, {"rows": stream(conn, after, limit)}
        except sqlite3.DatabaseError as exc:
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"cannot read {self.db}: {exc}"}
        finally:
            conn.close()


def _first(query: dict[str, list[str]], key: str, default: str) -> str:
    values = query.get(key)
    return values[0] if values else default


def _int(text: str) -> int:
    try:
        return max(0, int(text))
    except ValueError:
        return 0


def make_handler(dashboard: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "tierwise-dashboard"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            asset = dashboard.asset(url.path)
            if asset is not None:
                self._send(HTTPStatus.OK, asset[0], asset[1], cache=url.path != "/")
                return
            if url.path in ("/api/summary", "/api/stream", "/api/adapt"):
                status, body = dashboard.api(url.path, parse_qs(url.query))
                data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
                self._send(status, data, "application/json")
                return
            if url.path == "/healthz":
                self._send(HTTPStatus.OK, b"ok\n", "text/plain")
                return
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

        def _send(self, status: HTTPStatus, body: bytes, kind: str, cache: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=300" if cache else "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("dashboard: " + format, *args)

    return Handler


class DashboardServer:
    """The HTTP server on a daemon thread (tests, the benchmark) or the foreground (CLI)."""

    def __init__(
        self,
        db: Path,
        tiers: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int = 8765,
        adapt_dir: Path | None = None,
    ) -> None:
        dashboard = Dashboard(db, tiers, adapt_dir)
        self.httpd = ThreadingHTTPServer((host, port), make_handler(dashboard))
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}/"

    def start(self) -> DashboardServer:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="tierwise-dashboard", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

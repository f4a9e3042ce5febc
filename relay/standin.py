"""A stand-in Globus Compute web service on loopback, for `tierwise bench hpc-submit` and tests.

It answers what the real SDK's Executor asks of the service — a client-credentials token,
an endpoint's status, function registration, batch submission, the result channel's
address — on 127.0.0.1:5000, where the SDK's own "local" environment looks for it
(`env()` points the SDK there). Accepted tasks get ids; `run()` decides what happens to
them (here: nothing). The result channel's address refuses connections, as where AMQP is
blocked, so results never come back through the SDK. Nothing here leaves loopback.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

SDK_PORT = 5000  # fixed by the SDK's "local" environment


def env(home: Path) -> dict[str, str]:
    """Environment that points the SDK at the stand-in, logged in as a made-up client."""
    return {
        "GLOBUS_SDK_ENVIRONMENT": "local",
        "GLOBUS_SDK_SERVICE_URL_AUTH": f"http://127.0.0.1:{SDK_PORT}/",
        "GLOBUS_COMPUTE_USER_DIR": str(home),
        "GLOBUS_COMPUTE_CLIENT_ID": "00000000-0000-4000-8000-000000000001",
        "GLOBUS_COMPUTE_CLIENT_SECRET": "not-a-real-secret",
    }


def port_free() -> bool:
    """Whether 127.0.0.1:SDK_PORT is free for the stand-in."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", SDK_PORT))
        except OSError:
            return False
    return True


class GlobusStandIn:
    """The web service's answers; subclasses refuse submissions (`refusal`) or run tasks."""

    def __init__(self, endpoint_status: str = "online") -> None:
        self.endpoint_status = endpoint_status
        self.functions: dict[str, str] = {}
        self.submissions: list[int] = []  # the HTTP status each batch submission got
        self.batches: list[dict[str, Any]] = []  # each accepted submission's body
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", SDK_PORT), _handler(self))
        self._server.daemon_threads = True
        self.dead_port = _closed_port()

    def __enter__(self) -> GlobusStandIn:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path.endswith("/oauth2/token"):
            return 200, _token(body)
        if path == "/v2/get_amqp_result_connection_url":
            url = f"amqp://guest:guest@127.0.0.1:{self.dead_port}/"
            return 200, {"connection_url": url, "queue_prefix": "standin"}
        if match := re.fullmatch(r"/v2/endpoints/([^/]+)/status", path):
            return 200, {"status": self.endpoint_status, "endpoint_id": match[1]}
        if path == "/v3/functions" and method == "POST":
            function_id = str(uuid.uuid4())
            self.functions[function_id] = body["function_code"]
            return 200, {"function_uuid": function_id}
        if match := re.fullmatch(r"/v3/endpoints/([^/]+)/submit", path):
            return self._submit(match[1], body)
        return 404, {"code": "NOT_FOUND", "message": f"the stand-in has no {method} {path}"}

    def refusal(self, body: dict[str, Any]) -> int | None:
        """The HTTP status to refuse this submission with, or None to accept it."""
        return None if all(f in self.functions for f in body["tasks"]) else 403

    def run(self, task_id: uuid.UUID, buffer: str) -> None:
        """Called on a thread for each accepted task with its packed function and arguments."""

    def _submit(self, endpoint_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        status = self.refusal(body)
        with self.lock:
            self.submissions.append(status or 200)
            if status is None:
                self.batches.append(body)
        if status is not None:
            code = REFUSAL_CODES.get(status, "INTERNAL_ERROR")
            return status, {"code": code, "message": f"stand-in refusal: {code}"}
        tasks: dict[str, list[str]] = {}
        for function_id, payloads in body["tasks"].items():
            tasks[function_id] = []
            for payload in payloads:
                task_id = uuid.uuid4()
                tasks[function_id].append(str(task_id))
                buffer = self.functions[function_id] + payload
                threading.Thread(target=self.run, args=(task_id, buffer), daemon=True).start()
        return 200, {
            "request_id": str(uuid.uuid4()),
            "task_group_id": body.get("task_group_id") or str(uuid.uuid4()),
            "endpoint_id": endpoint_id,
            "tasks": tasks,
        }


REFUSAL_CODES = {
    403: "FUNCTION_NOT_PERMITTED",
    413: "TASK_PAYLOAD_TOO_LARGE",
    429: "TOO_MANY_REQUESTS",
}


def _handler(service: GlobusStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._reply("GET", {})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            kind = self.headers.get("Content-Type") or ""
            body = dict(parse_qsl(raw.decode())) if "form" in kind else json.loads(raw or b"{}")
            self._reply("POST", body)

        def _reply(self, method: str, body: dict[str, Any]) -> None:
            status, answer = service.answer(method, self.path.split("?")[0], body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status in (429, 503):  # the SDK retries these after this many seconds
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _token(form: dict[str, Any]) -> dict[str, Any]:
    """A client-credentials grant for every scope asked, one resource server each."""
    scopes = str(form.get("scope") or "").split()
    tokens = [
        {
            "access_token": f"stand-in-{index}",
            "token_type": "Bearer",
            "expires_in": 172800,
            "scope": scope,
            "resource_server": _resource_server(scope),
        }
        for index, scope in enumerate(scopes or ["openid"])
    ]
    return {**tokens[0], "other_tokens": tokens[1:]}


def _resource_server(scope: str) -> str:
    if "facd7ccc" in scope or "funcx" in scope or "compute" in scope:
        return "funcx_service"
    return "auth.globus.org"


def _closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

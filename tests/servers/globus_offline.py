"""Globus Compute on loopback for the real SDK: unreachable (a black hole), or a stand-in.

A black hole accepts TCP connections and never answers, as a firewalled or stalled
service does. `StandInService` answers what the SDK's Executor asks of the web service
(token, endpoint status, function registration, batch submission, the result channel's
address) and runs each accepted task through the endpoint's own task runner with a
hardened endpoint's allow-lists, so the worker streams through the real relay. Its result
channel is dropped (the AMQP address refuses connections, as where AMQP is blocked), and
a prompt can ask for a refused submission: `FAULT:<status>x<times>` in a message makes the
service answer that many submissions carrying it with 403 FUNCTION_NOT_PERMITTED, 413
TASK_PAYLOAD_TOO_LARGE, 429 or 5xx. The environment points the real SDK at either:

- GLOBUS_SDK_ENVIRONMENT=local: the SDK's web service is http://localhost:5000 (its own
  "local" environment, so the black hole must own 127.0.0.1:5000);
- GLOBUS_SDK_SERVICE_URL_AUTH: token requests go to the black hole as well.

`python -m tests.servers.globus_offline` runs one dispatch through the real SDK with a
guard that refuses any name lookup or connection outside loopback, and prints JSON.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

SDK_PORT = 5000  # fixed by the SDK's "local" environment


@contextmanager
def black_hole(port: int = SDK_PORT) -> Iterator[int]:
    """Listen on 127.0.0.1:port, accept and hold every connection, never reply."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


def sdk_port_free() -> bool:
    """Whether 127.0.0.1:SDK_PORT is free for a black hole or the stand-in service."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", SDK_PORT))
        except OSError:
            return False
    return True


def offline_env(home: Path) -> dict[str, str]:
    return {
        "GLOBUS_SDK_ENVIRONMENT": "local",
        "GLOBUS_SDK_SERVICE_URL_AUTH": f"http://127.0.0.1:{SDK_PORT}/",
        "GLOBUS_COMPUTE_USER_DIR": str(home),
        "GLOBUS_COMPUTE_CLIENT_ID": "00000000-0000-4000-8000-000000000001",
        "GLOBUS_COMPUTE_CLIENT_SECRET": "not-a-real-secret",
    }


def _loopback_only(event: str, args: tuple[Any, ...]) -> None:
    host = None
    if event == "socket.getaddrinfo":
        host = args[0]
    elif event == "socket.connect" and isinstance(args[1], tuple):
        host = args[1][0]
    if host is not None and host not in ("localhost", "127.0.0.1", "::1", b"localhost"):
        raise PermissionError(f"test guard: refused to reach {host!r} (loopback only)")


FAULT_RE = re.compile(r"FAULT:(\d{3})x(\d+)")
FAULT_CODES = {
    403: "FUNCTION_NOT_PERMITTED",
    413: "TASK_PAYLOAD_TOO_LARGE",
    429: "TOO_MANY_REQUESTS",
}


class StandInService:
    """The Globus Compute web service and one hardened endpoint behind it (module docstring)."""

    def __init__(self, run_dir: Path, endpoint_status: str = "online") -> None:
        self.run_dir = run_dir
        self.endpoint_status = endpoint_status
        self.functions: dict[str, str] = {}
        self.allowed_functions: set[str] | None = None  # None: allow every registered one
        self.submissions: list[int] = []  # the HTTP status each batch submission got
        self.batches: list[dict[str, Any]] = []  # each accepted submission's body
        self.tasks_run: list[str] = []
        self._faults_used: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", SDK_PORT), self._handler())
        self._server.daemon_threads = True
        self.dead_port = _closed_port()

    def __enter__(self) -> StandInService:
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

    def _submit(self, endpoint_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        status = self._fault(json.dumps(body))
        tasks: dict[str, list[str]] = {}
        if status is None:
            for function_id in body["tasks"]:
                allowed = self.allowed_functions
                if function_id not in self.functions or (allowed and function_id not in allowed):
                    status = 403
        with self._lock:
            self.submissions.append(status or 200)
        if status is not None:
            code = FAULT_CODES.get(status, "INTERNAL_ERROR")
            return status, {"code": code, "message": f"stand-in refusal: {code}"}
        with self._lock:
            self.batches.append(body)
        for function_id, payloads in body["tasks"].items():
            tasks[function_id] = []
            for payload in payloads:
                task_id = uuid.uuid4()
                tasks[function_id].append(str(task_id))
                buffer = self.functions[function_id] + payload
                threading.Thread(target=self._run, args=(task_id, buffer), daemon=True).start()
        return 200, {
            "request_id": str(uuid.uuid4()),
            "task_group_id": body.get("task_group_id") or str(uuid.uuid4()),
            "endpoint_id": endpoint_id,
            "tasks": tasks,
        }

    def _fault(self, text: str) -> int | None:
        """The status a FAULT marker asks for, while it has uses left."""
        match = FAULT_RE.search(text)
        if match is None:
            return None
        with self._lock:
            used = self._faults_used.get(match[0], 0)
            if used >= int(match[2]):
                return None
            self._faults_used[match[0]] = used + 1
        return int(match[1])

    def _run(self, task_id: uuid.UUID, buffer: str) -> None:
        from globus_compute_common import messagepack
        from globus_compute_common.messagepack.message_types import Task

        from relay.local_endpoint import hardened_options, run_task

        body = messagepack.pack(Task(task_id=task_id, task_buffer=buffer))
        run_task(task_id, body, str(self.run_dir), hardened_options())
        with self._lock:
            self.tasks_run.append(str(task_id))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

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


def main() -> int:
    """Three dispatches in a row through the real SDK; JSON: their errors, the seconds they
    took, and how many executors were built and never shut down (a timed-out call must not
    run later and leave one behind)."""
    sys.addaudithook(_loopback_only)
    from relay.dispatch import Dispatcher, DispatchError
    from relay.globus import EndpointExecutor, GlobusOptions

    timeout = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    options = GlobusOptions("00000000-0000-4000-8000-000000000002")
    built: list[EndpointExecutor] = []
    shut: list[EndpointExecutor] = []

    class Counted(EndpointExecutor):
        def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
            shut.append(self)
            super().shutdown(wait, cancel_futures=cancel_futures)

    def make() -> EndpointExecutor:
        built.append(executor := Counted(options))
        return executor

    dispatcher = Dispatcher(make, "Globus Compute", timeout)
    started = time.monotonic()
    errors: list[str | None] = []
    for _ in range(3):
        try:
            dispatcher.submit({"upstream": {}, "body": {}})
            errors.append(None)
        except DispatchError as exc:
            errors.append(str(exc))
    seconds = round(time.monotonic() - started, 2)
    # Let the stuck call give up (GLOBUS_SDK_HTTP_TIMEOUT) and anything queued behind it run.
    dispatcher._sdk.submit(lambda: None).result(timeout=300)
    left = len(built) - len(shut)  # built and never shut down
    print(json.dumps({"errors": errors, "seconds": seconds, "left_running": left}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

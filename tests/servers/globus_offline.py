"""Globus Compute on loopback for the real SDK: unreachable (a black hole), or a stand-in.

A black hole accepts TCP connections and never answers, as a firewalled or stalled service
does. `StandInService` is relay/standin.py's stand-in web service (what the SDK's Executor
asks: token, endpoint status, function registration, batch submission, the result channel's
address) that also runs each accepted task through the endpoint's own task runner with a
hardened endpoint's allow-lists, so the worker streams through the real relay. Its result
channel is dropped (the AMQP address refuses connections, as where AMQP is blocked), and a
prompt can ask for a refused submission: `FAULT:<status>x<times>` in a message makes the
service answer that many submissions carrying it with 403 FUNCTION_NOT_PERMITTED, 413
TASK_PAYLOAD_TOO_LARGE, 429 or 5xx. The environment points the real SDK at either:

- GLOBUS_SDK_ENVIRONMENT=local: the SDK's web service is http://localhost:5000 (its own
  "local" environment, so the black hole must own 127.0.0.1:5000);
- GLOBUS_SDK_SERVICE_URL_AUTH: token requests go to the black hole as well.

`python -m tests.servers.globus_offline` runs dispatches through the real SDK with a
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
from pathlib import Path
from typing import Any

from relay import standin
from relay.standin import GlobusStandIn

SDK_PORT = standin.SDK_PORT
sdk_port_free = standin.port_free


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


def offline_env(home: Path) -> dict[str, str]:
    return standin.env(home)


def _loopback_only(event: str, args: tuple[Any, ...]) -> None:
    host = None
    if event == "socket.getaddrinfo":
        host = args[0]
    elif event == "socket.connect" and isinstance(args[1], tuple):
        host = args[1][0]
    if host is not None and host not in ("localhost", "127.0.0.1", "::1", b"localhost"):
        raise PermissionError(f"test guard: refused to reach {host!r} (loopback only)")


FAULT_RE = re.compile(r"FAULT:(\d{3})x(\d+)")


class StandInService(GlobusStandIn):
    """The stand-in web service (relay/standin.py) with one hardened endpoint behind it:
    it refuses what the module docstring says and runs each accepted task."""

    def __init__(self, run_dir: Path, endpoint_status: str = "online") -> None:
        super().__init__(endpoint_status)
        self.run_dir = run_dir
        self.allowed_functions: set[str] | None = None  # None: allow every registered one
        self.tasks_run: list[str] = []
        self._faults_used: dict[str, int] = {}

    def __enter__(self) -> StandInService:
        super().__enter__()
        return self

    def refusal(self, body: dict[str, Any]) -> int | None:
        status = self._fault(json.dumps(body))
        allowed = self.allowed_functions
        if status is None and allowed is not None and not set(body["tasks"]) <= allowed:
            status = 403
        return status or super().refusal(body)

    def _fault(self, text: str) -> int | None:
        """The status a FAULT marker asks for, while it has uses left."""
        match = FAULT_RE.search(text)
        if match is None:
            return None
        with self.lock:
            used = self._faults_used.get(match[0], 0)
            if used >= int(match[2]):
                return None
            self._faults_used[match[0]] = used + 1
        return int(match[1])

    def run(self, task_id: uuid.UUID, buffer: str) -> None:
        from globus_compute_common import messagepack
        from globus_compute_common.messagepack.message_types import Task

        from relay.local_endpoint import hardened_options, run_task

        body = messagepack.pack(Task(task_id=task_id, task_buffer=buffer))
        run_task(task_id, body, str(self.run_dir), hardened_options())
        with self.lock:
            self.tasks_run.append(str(task_id))


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

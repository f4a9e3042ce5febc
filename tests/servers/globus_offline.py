"""Globus Compute made unreachable on loopback, for the "Globus unreachable" tests.

A black hole accepts TCP connections and never answers, as a firewalled or stalled
service does; the environment points the real SDK at it:

- GLOBUS_SDK_ENVIRONMENT=local: the SDK's web service is http://localhost:5000 (its own
  "local" environment, so the black hole must own 127.0.0.1:5000);
- GLOBUS_SDK_SERVICE_URL_AUTH: token requests go to the black hole as well.

`python -m tests.servers.globus_offline` runs one dispatch through the real SDK with a
guard that refuses any name lookup or connection outside loopback, and prints JSON.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def main() -> int:
    sys.addaudithook(_loopback_only)
    from relay.dispatch import Dispatcher, DispatchError, globus_executor

    timeout = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    endpoint = "00000000-0000-4000-8000-000000000002"
    dispatcher = Dispatcher(lambda: globus_executor(endpoint), "Globus Compute", timeout)
    started = time.monotonic()
    try:
        dispatcher.submit({"upstream": {}, "body": {}})
        outcome = {"error": None}
    except DispatchError as exc:
        outcome = {"error": str(exc)}
    outcome["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(outcome), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

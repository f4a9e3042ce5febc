"""Child processes started on loopback (stand-ins, proxies, relays): a port, readiness, a stop.

One place for the three things every launcher needs, so a bench, the CLI and the tests wait
for and reap their children the same way.
"""

from __future__ import annotations

import socket
import subprocess
import time

import httpx

LOOPBACK = "127.0.0.1"


class NotReady(RuntimeError):
    """A child exited, or did not answer in time, before it was ready."""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """Poll `url` until it answers below 500; NotReady if the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise NotReady(f"exited with {process.returncode} before {url} answered")
        try:
            status = httpx.get(url, timeout=2).status_code
            if status < 500:
                return
            last = f"HTTP {status}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    raise NotReady(f"{url} did not answer within {timeout_s:g} s ({last})")


def stop(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """Terminate, wait `grace_s`, then kill: the child is always reaped."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)

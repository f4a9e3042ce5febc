"""Relay processes for tests: the real `python -m relay` on loopback, and a raw producer.

`python -m tests.servers.relay URL TOKEN COUNT DELAY_MS` is a bare-protocol producer: it
sends COUNT token messages (then `done`) and prints every control message it receives, so
a test can kill it mid-stream or check that a `cancel` reached it.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relay import protocol
from tests.servers import Service, free_port, start_service

SECRET = secrets.token_urlsafe(32)


def start_relay(log_dir: Path, *args: str, port: int | None = None) -> Service:
    """A relay process with the test secret; `args` are extra command-line flags."""
    port = port or free_port()
    command = [sys.executable, "-m", "relay", "--port", str(port), "--log-level", "INFO", *args]
    log = log_dir / f"relay-{port}-{time.monotonic_ns()}.log"
    return start_service(
        command,
        f"http://127.0.0.1:{port}/health",
        log,
        env={"TIERWISE_RELAY_SECRET": SECRET},
        timeout_s=20,
    )


def ws_url(relay: Service) -> str:
    return relay.url.replace("http://", "ws://")


def token(channel: str, role: protocol.Role, ttl_s: float = 300) -> str:
    return protocol.mint_token(SECRET.encode(), channel, role, ttl_s)


def auth(channel: str, role: protocol.Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(channel, role)}"}


def worker_job(
    upstream_url: str, relay_base: str, channel: str, text: str, **relay: Any
) -> dict[str, Any]:
    """A worker job asking `upstream_url` about `text`, streaming into `channel` of the relay
    at `relay_base` with a test producer token; `relay` adds or overrides relay settings."""
    return {
        "upstream": {"url": upstream_url, "timeout_s": 30},
        "body": {"model": "m", "messages": [{"role": "user", "content": text}]},
        "relay": {
            "url": relay_base + protocol.channel_path(channel, "produce"),
            "token": token(channel, "produce"),
            **relay,
        },
    }


def main(argv: Sequence[str]) -> int:
    from websockets.sync.client import connect

    url, bearer, count, delay_ms = argv[0], argv[1], int(argv[2]), float(argv[3])
    with connect(url, additional_headers={"Authorization": f"Bearer {bearer}"}) as ws:
        hello = json.loads(ws.recv())
        print(json.dumps(hello), flush=True)
        for seq in range(hello["resume_from"] + 1, count + 1):
            ws.send(json.dumps({"type": "token", "seq": seq, "delta": {"content": f"t{seq} "}}))
            time.sleep(delay_ms / 1000)
            try:
                while True:
                    print(ws.recv(timeout=0), flush=True)
            except TimeoutError:
                pass
        ws.send(json.dumps({"type": "done", "seq": count + 1, "finish_reason": "stop"}))
        for message in ws:
            print(message, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

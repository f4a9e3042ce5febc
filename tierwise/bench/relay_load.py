"""Protocol-level load for `tierwise bench relay`: producers (run in their own process) and
consumers that check every stream for lost, duplicated or reordered tokens.

`python -m tierwise.bench.relay_load WS_BASE COUNT CHANNEL...` produces COUNT tokens (then
`done`) on each channel concurrently, with the secret from TIERWISE_RELAY_SECRET.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from relay import protocol
from relay.worker import connect_options

RETRY_WINDOW_S = 30.0  # as long as the worker and the consumer keep retrying the relay


def _connect(base: str, secret: bytes, channel: str, role: protocol.Role) -> Any:
    """Connect as the worker and the proxy's consumer do: no websockets keepalive pings (a
    peer paused for backpressure cannot answer them; heartbeats prove liveness instead)."""
    token = protocol.mint_token(secret, channel, role, 600)
    return connect(
        base + protocol.channel_path(channel, role),
        additional_headers={"Authorization": f"Bearer {token}"},
        compression=None,
        **connect_options(connect, base),
    )


async def _open(base: str, secret: bytes, channel: str, role: protocol.Role) -> Any:
    """Open a connection, and retry a handshake that fails as the worker and the consumer do
    (every 0.05-0.25 s, for up to RETRY_WINDOW_S): 200 handshakes on a saturated machine can
    outlast one handshake's timeout, and a client that gives up there loses nothing real."""
    loop = asyncio.get_running_loop()
    give_up, backoff = loop.time() + RETRY_WINDOW_S, 0.05
    while True:
        try:
            return await _connect(base, secret, channel, role)
        except (TimeoutError, OSError):
            if loop.time() + backoff > give_up:
                raise
        await asyncio.sleep(backoff)
        backoff = min(0.25, backoff * 2)


def token_text(channel: str, seq: int) -> str:
    """What token `seq` of `channel` carries, so a consumer can check it came to the right one."""
    return f" {channel[-6:]}:{seq}"


async def produce(base: str, secret: bytes, channel: str, count: int) -> None:
    async with await _open(base, secret, channel, "produce") as ws:
        hello = json.loads(await ws.recv())
        beat = asyncio.create_task(_heartbeat(ws, float(hello["heartbeat_s"])))
        for seq in range(hello["resume_from"] + 1, count + 1):
            delta = {"content": token_text(channel, seq)}
            await ws.send(json.dumps({"type": "token", "seq": seq, "delta": delta}))
            if seq % 16 == 0:
                await asyncio.sleep(0)  # let the other streams in, as concurrent GPUs would
        await ws.send(json.dumps({"type": "done", "seq": count + 1, "finish_reason": "stop"}))
        beat.cancel()
        async for _ in ws:  # until the relay closes after the end
            pass


async def _heartbeat(ws: Any, every_s: float) -> None:
    """As the worker and the proxy's consumer do: prove liveness while waiting for a turn on
    a busy machine (a consumer that only acks goes quiet for longer than the relay's idle
    limit once 200 streams share two cores)."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.sleep(every_s)
            await ws.send('{"type":"heartbeat"}')


@dataclass
class Checked:
    tokens: int = 0
    lost: int = 0
    duplicated: int = 0
    misrouted: int = 0
    finished: bool = False
    error: str | None = None


async def consume(base: str, secret: bytes, channel: str, count: int) -> Checked:
    """Read one channel to its end, acknowledging as asked, and check every token."""
    seen: set[int] = set()
    checked = Checked()
    try:
        await _read_checked(base, secret, channel, seen, checked)
    except (ConnectionClosed, OSError, TimeoutError) as exc:
        checked.error = f"{type(exc).__name__}: {exc}"  # the stream counts as unfinished
    checked.lost = count - len(seen & set(range(1, count + 1)))
    return checked


async def _read_checked(
    base: str, secret: bytes, channel: str, seen: set[int], checked: Checked
) -> None:
    async with await _open(base, secret, channel, "consume") as ws:
        hello = json.loads(await ws.recv())
        ack_every = int(hello["ack_every"])
        beat = asyncio.create_task(_heartbeat(ws, float(hello["heartbeat_s"])))
        async for raw in ws:
            message: dict[str, Any] = json.loads(raw)
            seq = message["seq"]
            if message["type"] in ("done", "error"):
                checked.finished = message["type"] == "done"
                checked.error = message.get("message")
                await ws.send(json.dumps({"type": "ack", "seq": seq}))
                break
            if seq in seen:
                checked.duplicated += 1
            seen.add(seq)
            checked.tokens += 1
            if message["delta"]["content"] != token_text(channel, seq):
                checked.misrouted += 1
            if checked.tokens % ack_every == 0:
                await ws.send(json.dumps({"type": "ack", "seq": seq}))
        beat.cancel()


async def _produce_all(base: str, secret: bytes, count: int, channels: list[str]) -> None:
    """Every stream on its own: one that breaks is reported, and the others go on."""
    outcomes = await asyncio.gather(
        *(produce(base, secret, c, count) for c in channels), return_exceptions=True
    )
    for channel, outcome in zip(channels, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            print(f"producer {channel}: {type(outcome).__name__}: {outcome}", file=sys.stderr)


def main(argv: list[str]) -> int:
    base, count, channels = argv[0], int(argv[1]), argv[2:]
    secret = os.environ["TIERWISE_RELAY_SECRET"].encode()
    asyncio.run(_produce_all(base, secret, count, channels))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

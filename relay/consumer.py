"""The proxy side of an HPC stream: relay messages and the Globus future, merged in order.

Events are numbered by the worker. They arrive from the relay (fast, token by token) and, in
full, in the task's result (final only). Whichever source has the next sequence number
first supplies it, so a relay that is unreachable, restarts, or drops us mid-stream costs
no tokens and repeats none: the consumer reconnects with ?after=<last seq>, and if the relay
stays away the batch result fills in the rest. The same holds when the relay loses the
*producer* (its `error` with reason `producer_lost`): the task is still running, so we wait
for its result instead of failing. A failed task, a worker's `error` or a malformed event
ends the stream with StreamError at once instead of leaving the user waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from relay import protocol
from relay.dispatch import DispatchError, ResultUnavailable
from relay.worker import connect_options

log = logging.getLogger("tierwise.relay.consumer")


class StreamError(Exception):
    """The HPC stream cannot complete; status_code says whose fault (502, 503, 504)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class StreamTimeouts:
    connect_s: float = 5.0  # one relay connection attempt
    reconnect_window_s: float = 30.0  # keep retrying the relay this long after losing it
    accept_s: float = 60.0  # Globus Compute must acknowledge the task by then
    start_s: float = 600.0  # the first event must arrive by then (batch queue wait)
    total_s: float = 600.0  # the whole answer


class HpcStream:
    """One request's event stream; iterate `events()` once."""

    def __init__(
        self,
        relay_base: str,
        channel: str,
        token: str,
        future: Future[Any],
        timeouts: StreamTimeouts,
    ) -> None:
        self.relay_base = relay_base.rstrip("/")
        self.channel = channel
        self.token = token
        self.future = future
        self.timeouts = timeouts
        self.next_seq = 1
        self.finished = False  # a terminal event was delivered
        self.source_counts = {"relay": 0, "result": 0}
        self.relay_gave_up = False  # the relay can supply nothing more: the result finishes
        # Relay messages in arrival order; _wakeup is set when one arrives or the task ends.
        self._queue: deque[dict[str, Any]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._conn: ClientConnection | None = None
        self._ack_every = 64
        self._acked = 0
        self._heartbeat_s = 0.5

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Yield token/usage/done events in order; raise StreamError on failure."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Our own bridge, not wrap_future: that would cancel the task when we stop early, and
        # would call into this loop after it closed (sync callers use a private loop).
        wakeup = self._wakeup = asyncio.Event()

        def wake(_: Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
                loop.call_soon_threadsafe(wakeup.set)

        self.future.add_done_callback(wake)
        pump = asyncio.create_task(self._pump())
        try:
            while True:
                if self.future.done() and not self._relay_only():
                    for event in self._from_result():
                        yield event
                    return
                received = await self._next_relay_event(wakeup, started)
                if received is None:
                    continue
                event = received
                if event["type"] == "error" and event.get("reason") == protocol.PRODUCER_LOST:
                    await self._relay_lost_producer(event)
                    continue
                if event["seq"] != self.next_seq:
                    if event["seq"] < self.next_seq:
                        continue  # a resend after reconnecting: already delivered
                    raise StreamError(
                        502, f"relay skipped from seq {self.next_seq} to {event['seq']}"
                    )
                self.source_counts["relay"] += 1
                self.next_seq += 1
                await self._maybe_ack()
                if event["type"] == "error":
                    self.finished = True
                    raise StreamError(502, f"HPC tier failed: {event.get('message')}")
                yield event
                if event["type"] == "done":
                    self.finished = True
                    return
        finally:
            await self._close(pump)

    async def _relay_lost_producer(self, event: dict[str, Any]) -> None:
        """The relay gave up on the worker's link, not the task: take the rest from the
        result. Acknowledging the relay's own error lets it retire the channel as ended,
        not cancelled, so a worker that reconnects keeps generating (HTTP 409)."""
        log.info("channel %s: %s; waiting for the task's result", self.channel, event["message"])
        self.relay_gave_up = True
        await self._send({"type": "ack", "seq": event["seq"]})
        self._acked = event["seq"]

    async def _next_relay_event(
        self, wakeup: asyncio.Event, started: float
    ) -> dict[str, Any] | None:
        """The next queued relay message, or None when the future finished or time passed."""
        if self._queue:
            return self._queue.popleft()
        loop = asyncio.get_running_loop()
        wait_s = self._check_deadlines(loop.time() - started)
        # One event for both sources, awaited in this task: a message wakes us in one
        # loop turn, with no helper tasks per token.
        wakeup.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await wakeup.wait()
        return self._queue.popleft() if self._queue else None

    def _check_deadlines(self, elapsed: float) -> float:
        """Raise when a deadline passed; otherwise how long to wait before checking again."""
        t = self.timeouts
        if elapsed >= t.total_s:
            raise StreamError(504, f"the HPC tier did not finish within {t.total_s:g}s")
        if self.next_seq == 1:
            if getattr(self.future, "task_id", "local") is None and elapsed >= t.accept_s:
                raise StreamError(
                    503,
                    f"Globus Compute did not accept the task within {t.accept_s:g}s; check "
                    "network access to Globus and the client credentials",
                )
            if elapsed >= t.start_s:
                raise StreamError(
                    504,
                    f"the HPC job sent nothing within {t.start_s:g}s (endpoint offline or "
                    "queued behind other jobs)",
                )
        return min(1.0, t.total_s - elapsed)

    def _relay_only(self) -> bool:
        """The task runs but its result will not come (Globus' result channel is lost):
        finish from the relay while it lasts."""
        return (
            not self.future.cancelled()
            and isinstance(self.future.exception(), ResultUnavailable)
            and not self.relay_gave_up
        )

    def _from_result(self) -> list[dict[str, Any]]:
        """The rest of the stream from the task's result, or StreamError if the task failed."""
        if self.future.cancelled():
            raise StreamError(502, "the HPC job was cancelled")
        error = self.future.exception()
        if isinstance(error, DispatchError):  # refused, or lost: the dispatcher's own words
            raise StreamError(error.status_code, f"HPC tier unavailable: {error}")
        if error is not None:
            raise StreamError(502, f"the HPC job failed: {_last_line(error)}")
        payload = self.future.result()
        events = payload.get("events") if isinstance(payload, dict) else None
        if not isinstance(events, list):
            raise StreamError(502, "the HPC job returned no events (is the worker up to date?)")
        out = []
        for event in events:
            try:
                protocol.check_event(event if isinstance(event, dict) else {})
            except protocol.ProtocolError as exc:
                raise StreamError(502, f"the HPC job's result holds a bad event: {exc}") from None
            if event["seq"] < self.next_seq:
                continue
            if event["seq"] != self.next_seq:
                raise StreamError(502, f"the HPC job's result misses seq {self.next_seq}")
            self.next_seq += 1
            self.source_counts["result"] += 1
            if event["type"] == "error":
                self.finished = True
                raise StreamError(502, f"HPC tier failed: {event.get('message')}")
            out.append(event)
            if event["type"] == "done":
                self.finished = True
                break
        if not self.finished:
            if payload.get("cancelled"):
                raise StreamError(502, "the HPC job was cancelled before it finished")
            raise StreamError(502, "the HPC job ended without a final event")
        return out

    async def _maybe_ack(self) -> None:
        delivered = self.next_seq - 1
        if self._conn is not None and delivered - self._acked >= self._ack_every:
            await self._send({"type": "ack", "seq": delivered})
            self._acked = delivered

    async def _send(self, message: dict[str, Any]) -> None:
        conn = self._conn
        if conn is None:
            return
        with contextlib.suppress(ConnectionClosed, OSError):
            async with asyncio.timeout(1.0):
                await conn.send(json.dumps(message))

    async def _pump(self) -> None:
        """Keep a relay connection, resuming after the last delivered event, and queue messages."""
        loop = asyncio.get_running_loop()
        lost_at, backoff = loop.time(), 0.05
        while not self.finished and not self.relay_gave_up:
            path = protocol.channel_path(self.channel, "consume", self.next_seq - 1)
            try:
                async with asyncio.timeout(self.timeouts.connect_s):
                    conn = await connect(
                        self.relay_base + path,
                        additional_headers={"Authorization": f"Bearer {self.token}"},
                        max_size=None,
                        compression=None,  # the relay does not negotiate it: tiny frames
                        # no keepalive (heartbeats instead); the proxy looked up once
                        **connect_options(connect, self.relay_base),
                    )
                    hello = protocol.parse_control(await conn.recv())
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403, 404, 410):
                    log.warning("relay refused channel %s with HTTP %d", self.channel, status)
                    self.relay_gave_up = True
                    return  # the task's result is the only source left
                conn = None
            except (OSError, TimeoutError, WebSocketException, protocol.ProtocolError) as exc:
                log.debug("relay connect failed: %r", exc)
                conn = None
            if conn is None:
                if loop.time() - lost_at > self.timeouts.reconnect_window_s:
                    self.relay_gave_up = True
                    return
                await asyncio.sleep(backoff)
                backoff = min(1.0, backoff * 2)
                continue
            backoff = 0.05
            self._ack_every = int(hello.get("ack_every") or self._ack_every)
            self._heartbeat_s = float(hello.get("heartbeat_s") or self._heartbeat_s)
            self._acked = self.next_seq - 1
            self._conn = conn
            beat = asyncio.create_task(self._heartbeat(conn))
            try:
                async for raw in conn:
                    message = json.loads(raw)
                    if message.get("type") in protocol.DATA_TYPES:
                        self._queue.append(message)
                        if self._wakeup is not None:
                            self._wakeup.set()
            except (ConnectionClosed, ValueError, RecursionError):
                pass
            finally:
                beat.cancel()
                self._conn = None
            lost_at = loop.time()

    async def _heartbeat(self, conn: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            with contextlib.suppress(ConnectionClosed):
                await conn.send('{"type":"heartbeat"}')

    async def _close(self, pump: asyncio.Task[None]) -> None:
        """Acknowledge the end, or cancel the job if the caller left before it."""
        conn = self._conn
        if self.finished:
            await self._send({"type": "ack", "seq": self.next_seq - 1})
        else:
            await self._send({"type": "cancel"})
            self.future.cancel()
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
        if conn is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await conn.close()


def _last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__

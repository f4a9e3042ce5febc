"""The WebSocket relay: HPC workers produce tokens into a channel, the proxy consumes them.

Both sides connect outbound to this process, so neither needs an open inbound port. Each
connection's bearer token is checked before the upgrade (wrong or expired: HTTP 401), and
the same port answers /health and /metrics over plain HTTP. Longer than 400 lines because
the guarantees below live in one class whose producer and consumer handlers share each
channel's state and timers; they are read (and checked) side by side.

Guarantees, per channel:
- nothing is dropped: a full buffer pauses the producer (it stops being read, so TCP pushes
  back), it never discards;
- a producer that dies (socket closed, then a grace for a reconnect) or goes silent (no
  message or heartbeat within the idle timeout) ends the stream with an `error` message
  whose reason is `producer_lost`: the consumer then takes the rest from the task's result,
  and a producer that comes back later is told so (HTTP 409) and keeps generating;
- a producer that breaks the protocol ends the stream with an `error` (reason `protocol`);
- a consumer that leaves (or sends `cancel`) makes the relay send `cancel` to the producer;
- a consumer may reconnect with ?after=<last seq> and resumes with no loss or duplication;
  a producer that reconnects is told where to resume and its replays are de-duplicated.

Every timer runs on loop life (relay/timers.py): a frozen or starved relay does not blame
its peers for its own pause, and a grace timer belongs to the connection it waits for, so a
reconnect cancels it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from relay import protocol
from relay.channel import Accept, Channel, GapError, Limits
from relay.metrics import Metrics
from relay.timers import LoopClock, SilenceWatch, Timer

log = logging.getLogger("tierwise.relay")


@dataclass(frozen=True)
class RelaySettings:
    """Everything the relay process is configured with (see `tierwise-relay --help`)."""

    secret: bytes = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 8765
    buffer_messages: int = 1024
    buffer_bytes: int = 8 * 1024 * 1024
    max_message_bytes: int = 256 * 1024
    heartbeat_s: float = 0.5
    # Ten missed heartbeats. 1.5 s declared healthy producers dead whenever their process
    # was starved (`tierwise bench relay --loaded`: 12 to 66 of 200 streams); a worker that
    # is really gone costs little more, since the consumer then waits for the task anyway.
    idle_timeout_s: float = 5.0
    # Longer than the worker's reconnect backoff (at most 0.25 s between tries) plus a
    # connect: a link outage up to about 1.5 s resumes live; a longer one ends the relay's
    # part and the consumer fills in from the task's result.
    producer_grace_s: float = 2.0
    # A consumer lives in a busy proxy: 50 concurrent streams through LiteLLM on two cores
    # held its event loop up to ~40 s at a time, and 10 s / 3 s limits cancelled healthy
    # streams. A consumer that leaves on purpose says `cancel`, so these only bound the GPU
    # time a crashed or cut-off proxy can waste.
    consumer_idle_s: float = 30.0
    consumer_grace_s: float = 15.0
    orphan_timeout_s: float = 60.0
    max_channels: int = 10000
    certfile: str | None = None
    keyfile: str | None = None

    def __post_init__(self) -> None:
        protocol.check_secret(self.secret)
        for name in ("buffer_messages", "buffer_bytes", "max_message_bytes", "max_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("heartbeat_s", "idle_timeout_s", "consumer_idle_s", "orphan_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be above 0")
        if self.idle_timeout_s <= self.heartbeat_s or self.consumer_idle_s <= self.heartbeat_s:
            raise ValueError("idle timeouts must be longer than heartbeat_s")
        if self.buffer_bytes < self.max_message_bytes:
            raise ValueError("buffer_bytes must hold at least one message of max_message_bytes")

    @property
    def ack_every(self) -> int:
        """How often consumers acknowledge: often enough that the buffer never fills on acks."""
        return max(1, self.buffer_messages // 4)


class RelayServer:
    """Channels in memory, one asyncio loop. Stateless across restarts by design."""

    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self.limits = Limits(settings.buffer_messages, settings.buffer_bytes)
        self.metrics = Metrics()
        self.channels: dict[str, Channel] = {}
        # channel id -> (token expiry, lost its producer): refuse reuse with 410, or 409 for
        # a producer of a stream the relay gave up on, which must finish into its result
        self.finished: dict[str, tuple[int, bool]] = {}
        self.started = time.monotonic()
        self._targets: weakref.WeakKeyDictionary[ServerConnection, protocol.Target] = (
            weakref.WeakKeyDictionary()
        )
        self._expiries: weakref.WeakKeyDictionary[ServerConnection, int] = (
            weakref.WeakKeyDictionary()
        )
        self._connections = {"produce": 0, "consume": 0}
        self._timers: set[asyncio.Task[None]] = set()
        self._grace: dict[tuple[str, protocol.Role], Timer] = {}
        self._clock: LoopClock | None = None
        self._server: Server | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Server:
        s = self.settings
        context = None
        if s.certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(s.certfile, s.keyfile)
        self._clock = LoopClock()
        self._clock.start()
        self._server = await serve(
            self._handle,
            s.host,
            s.port,
            process_request=self._process_request,
            max_size=s.max_message_bytes,
            # No protocol pings: a peer we pause for backpressure could not answer them in
            # time. Liveness comes from application heartbeats read with a timeout instead.
            ping_interval=None,
            # Token messages are tens of bytes: per-message deflate would cost CPU on every
            # frame, both ways, for next to no saving.
            compression=None,
            close_timeout=2,
            ssl=context,
            create_connection=_Connection,
        )
        self._spawn(self._sweep())
        return self._server

    @property
    def clock(self) -> LoopClock:
        assert self._clock is not None, "start() the relay first"
        return self._clock

    async def close(self) -> None:
        for task in list(self._timers):
            task.cancel()
        for timer in self._grace.values():
            timer.cancel()
        self.clock.stop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    # -- plain HTTP and the handshake --------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Serve /health and /metrics, and refuse a bad channel request before the upgrade."""
        path = request.path.split("?", 1)[0]
        if path == "/health":
            return _reply(connection, HTTPStatus.OK, self.health(), "application/json")
        if path == "/metrics":
            return _reply(
                connection,
                HTTPStatus.OK,
                self.render_metrics(),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        try:
            target = protocol.parse_target(request.path)
        except ValueError as exc:
            self.metrics.inc("tierwise_relay_rejected_total", reason="bad_path")
            return _reply(connection, HTTPStatus.NOT_FOUND, f"{exc}\n")
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        try:
            expiry = protocol.verify_token(self.settings.secret, token, target.channel, target.role)
        except protocol.TokenError as exc:
            self.metrics.inc("tierwise_relay_auth_failures_total", reason=exc.reason)
            response = _reply(connection, HTTPStatus.UNAUTHORIZED, f"{exc}\n")
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            return response
        refusal = self._refusal(target)
        if refusal is not None:
            # 409 (a producer the relay gave up on) apart from 410 (any role, ended channel)
            late = refusal[0] is HTTPStatus.CONFLICT
            self.metrics.inc("tierwise_relay_rejected_total", reason="late" if late else "finished")
            return _reply(connection, *refusal)
        if target.channel not in self.channels and len(self.channels) >= self.settings.max_channels:
            self.metrics.inc("tierwise_relay_rejected_total", reason="full")
            return _reply(
                connection, HTTPStatus.SERVICE_UNAVAILABLE, "the relay is at max_channels\n"
            )
        self._targets[connection] = target
        self._expiries[connection] = expiry
        return None

    def _refusal(self, target: protocol.Target) -> tuple[HTTPStatus, str] | None:
        """Why a connection to an ended channel is refused, or None if it may go on."""
        conflict = (
            HTTPStatus.CONFLICT,
            "the relay ended this stream after losing its producer; finish the task: its "
            "result carries the answer\n",
        )
        channel = self.channels.get(target.channel)
        if channel is not None:
            return conflict if target.role == "produce" and channel.lost_producer else None
        ended = self.finished.get(target.channel)
        if ended is None:
            return None
        if target.role == "produce" and ended[1]:
            return conflict
        return HTTPStatus.GONE, "this channel has ended or was cancelled\n"

    def health(self) -> str:
        return json.dumps(
            {
                "ok": True,
                "channels": len(self.channels),
                "uptime_s": round(time.monotonic() - self.started, 1),
            }
        )

    def render_metrics(self) -> str:
        buffered = sum(len(c.retained) for c in self.channels.values())
        gauges: dict[str, Mapping[tuple[tuple[str, str], ...], float]] = {
            "tierwise_relay_channels": {(): len(self.channels)},
            "tierwise_relay_connections": {
                (("role", role),): count for role, count in self._connections.items()
            },
            "tierwise_relay_buffered_messages": {(): buffered},
        }
        return self.metrics.render(gauges)

    # -- connections -------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        target = self._targets.pop(ws)
        expiry = self._expiries.pop(ws)
        if target.channel in self.finished:  # ended between handshake and handler
            await ws.close(protocol.CLOSE_CANCELLED, "channel ended")
            return
        channel = self.channels.get(target.channel)
        if channel is None:
            channel = self.channels[target.channel] = Channel(target.channel, expiry, self.limits)
        self._connections[target.role] += 1
        try:
            if target.role == "produce":
                await self._produce(ws, channel)
            else:
                await self._consume(ws, channel, target.after)
        finally:
            self._connections[target.role] -= 1

    async def _produce(self, ws: ServerConnection, channel: Channel) -> None:
        if channel.producer is not None or channel.position:
            self.metrics.inc("tierwise_relay_resumes_total", role="produce")
        if channel.producer is not None:
            await _close_quietly(channel.producer, protocol.CLOSE_REPLACED, "replaced")
        channel.producer = ws
        self._end_grace(channel, "produce")
        settings = self.settings
        clean = False
        watch: SilenceWatch | None = None
        try:
            await ws.send(
                json.dumps(
                    {
                        "type": "hello",
                        "resume_from": channel.position,
                        "heartbeat_s": settings.heartbeat_s,
                    }
                )
            )
            watch = SilenceWatch(
                self.clock,
                _arrivals(ws),
                settings.idle_timeout_s,
                lambda: self._silenced(channel, ws),
            )
            while channel.terminal_seq is None and not channel.cancelled:
                if not channel.has_space():
                    # Stop reading: frames queue in the socket and TCP pushes back on the
                    # producer. Silence while paused is ours, so it is not judged idle.
                    self.metrics.inc("tierwise_relay_backpressure_waits_total")
                    watch.paused = True
                    await channel.space.wait()
                    watch.resume()
                    continue
                raw = await ws.recv()  # the watch closes ws if the producer stays silent
                try:
                    message = protocol.parse_producer_message(raw)
                    if message is None:
                        continue  # heartbeat
                    outcome = channel.accept(message)
                except (protocol.ProtocolError, GapError) as exc:
                    self.metrics.inc("tierwise_relay_protocol_errors_total")
                    channel.fail(f"the HPC worker broke the relay protocol: {exc}", "protocol")
                    await ws.close(CloseCode.POLICY_VIOLATION, str(exc)[:120])
                    return
                if outcome is Accept.STORED:
                    self.metrics.inc("tierwise_relay_messages_total", type=message.type)
                    self.metrics.inc("tierwise_relay_bytes_total", len(message.raw))
                elif outcome is Accept.DUPLICATE:
                    self.metrics.inc("tierwise_relay_duplicates_dropped_total")
            clean = True
            watch.stop()
            if channel.cancelled:
                await self._stop_producer(ws)
        except ConnectionClosed as exc:
            clean = channel.terminal_seq is not None or channel.cancelled
            if not clean:
                self._producer_dropped(channel, ws, exc)
        finally:
            if watch is not None:
                watch.stop()
            if channel.producer is ws:
                channel.producer = None
            if clean:
                self._maybe_forget(channel)

    async def _stop_producer(self, ws: ServerConnection) -> None:
        """Tell the producer to stop, then read out what it already sent: one blocked on a
        full socket (we paused for backpressure) can only see the cancel once it can write."""
        closer = asyncio.create_task(ws.close(protocol.CLOSE_CANCELLED, "cancelled"))
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            async with asyncio.timeout(self.settings.idle_timeout_s):
                async for _ in ws:
                    pass
        await asyncio.gather(closer, return_exceptions=True)

    def _silenced(self, channel: Channel, ws: ServerConnection) -> None:
        """The producer sent nothing for the idle timeout: fail the stream, drop the socket."""
        idle_s = self.settings.idle_timeout_s
        self._producer_lost(channel, f"no message or heartbeat for {idle_s:g}s")
        self._spawn(_close_quietly(ws, CloseCode.GOING_AWAY, "idle timeout"))

    def _producer_lost(self, channel: Channel, why: str) -> None:
        message = channel.fail(f"the HPC worker stopped responding ({why})", protocol.PRODUCER_LOST)
        if message is not None:
            self.metrics.inc("tierwise_relay_producer_lost_total")
            log.warning("channel %s: producer lost (%s)", channel.id, why)

    def _producer_dropped(
        self, channel: Channel, ws: ServerConnection, exc: ConnectionClosed
    ) -> None:
        sent = exc.sent
        if sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG:
            self.metrics.inc("tierwise_relay_oversize_total")
            channel.fail(
                f"the HPC worker sent a message over the relay's "
                f"{self.settings.max_message_bytes}-byte limit",
                "protocol",
            )
            return
        # Give it a grace to reconnect; a reconnect cancels this timer (_end_grace).
        self._start_grace(
            channel,
            "produce",
            self.settings.producer_grace_s,
            lambda: self._producer_lost(channel, "its connection closed mid-stream"),
        )

    def _start_grace(
        self,
        channel: Channel,
        role: protocol.Role,
        grace_s: float,
        expired: Callable[[], None],
    ) -> None:
        """After grace_s of loop life with nobody in `role`, call expired()."""
        self._end_grace(channel, role)
        key = (channel.id, role)

        def check() -> None:
            self._grace.pop(key, None)
            attached = channel.producer if role == "produce" else channel.consumer
            if attached is None and not channel.finished:
                expired()

        self._grace[key] = self.clock.call_after(grace_s, check)

    def _end_grace(self, channel: Channel, role: protocol.Role) -> None:
        timer = self._grace.pop((channel.id, role), None)
        if timer is not None:
            timer.cancel()

    async def _consume(self, ws: ServerConnection, channel: Channel, after: int) -> None:
        if channel.consumer is not None:
            await _close_quietly(channel.consumer, protocol.CLOSE_REPLACED, "replaced")
        if after:
            self.metrics.inc("tierwise_relay_resumes_total", role="consume")
        if channel.received or channel.producer is not None:
            # A consumer cannot hold more than we took in; a fresh channel (the relay just
            # restarted) believes it, so the producer's replays of that much are dropped.
            after = min(after, channel.position)
        channel.consumer = ws
        self._end_grace(channel, "consume")
        channel.ack(after)
        await ws.send(
            json.dumps(
                {
                    "type": "hello",
                    "ack_every": self.settings.ack_every,
                    "resume_from": after,
                    "heartbeat_s": self.settings.heartbeat_s,
                }
            )
        )
        sender = asyncio.create_task(self._send_loop(ws, channel, after))
        receiver = asyncio.create_task(self._receive_loop(ws, channel))
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if error is not None and not isinstance(error, ConnectionClosed):
                    raise error
        finally:
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
            if channel.consumer is ws:
                channel.consumer = None
                channel.consumer_seen = time.monotonic()
                if channel.finished:
                    self._maybe_forget(channel)
                else:
                    self._start_grace(
                        channel,
                        "consume",
                        self.settings.consumer_grace_s,
                        lambda: self._spawn(self._cancel(channel, "consumer_left")),
                    )

    async def _send_loop(self, ws: ServerConnection, channel: Channel, sent: int) -> None:
        while not channel.cancelled:
            channel.data_ready.clear()
            batch = channel.after(sent)
            if not batch:
                await channel.data_ready.wait()
                continue
            for raw in batch:
                await ws.send(raw)
            sent += len(batch)
        await ws.close(protocol.CLOSE_CANCELLED, "cancelled")

    async def _receive_loop(self, ws: ServerConnection, channel: Channel) -> None:
        gone = asyncio.Event()
        watch = SilenceWatch(self.clock, _arrivals(ws), self.settings.consumer_idle_s, gone.set)
        reader = asyncio.ensure_future(self._read_controls(ws, channel))
        waiter = asyncio.ensure_future(gone.wait())
        try:
            await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.stop()
            waiter.cancel()
        if gone.is_set() and not reader.done():
            reader.cancel()
            await _close_quietly(ws, CloseCode.GOING_AWAY, "idle timeout")
        await asyncio.gather(reader, return_exceptions=True)

    async def _read_controls(self, ws: ServerConnection, channel: Channel) -> None:
        while True:
            raw = await ws.recv()
            try:
                message = protocol.parse_control(raw)
            except protocol.ProtocolError as exc:
                self.metrics.inc("tierwise_relay_protocol_errors_total")
                await ws.close(CloseCode.POLICY_VIOLATION, str(exc)[:120])
                return
            seq = message.get("seq")
            if message["type"] == "ack" and isinstance(seq, int) and not isinstance(seq, bool):
                channel.ack(min(seq, channel.received))
                if channel.finished:
                    self.metrics.inc("tierwise_relay_channels_completed_total")
                    await ws.close()
                    return
            elif message["type"] == "cancel":
                await self._cancel(channel, "consumer_cancel")
                return
            # anything else (a heartbeat) only shows the consumer is alive

    async def _cancel(self, channel: Channel, reason: str) -> None:
        """Stop the producer (so the GPU stops) and retire the channel."""
        if channel.cancelled:
            return
        channel.cancel()
        self.metrics.inc("tierwise_relay_cancels_total", reason=reason)
        log.info("channel %s cancelled (%s)", channel.id, reason)
        producer = channel.producer
        if isinstance(producer, ServerConnection):
            # The message first (a worker reads it at once); its handler, woken by cancel(),
            # then closes the connection.
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                async with asyncio.timeout(1.0):
                    await producer.send(json.dumps({"type": "cancel", "reason": reason}))
        self._maybe_forget(channel)

    def _maybe_forget(self, channel: Channel) -> None:
        """Drop a finished channel once nobody is attached; remember its id to refuse reuse."""
        if channel.finished and self.channels.get(channel.id) is channel:
            del self.channels[channel.id]
            self.finished[channel.id] = (channel.expiry, channel.lost_producer)
            for role in protocol.ROLES:
                self._end_grace(channel, role)

    async def _sweep(self) -> None:
        """Expire channels whose token ran out, and cancel ones no consumer came back for."""
        while True:
            await asyncio.sleep(1.0)
            now, mono = time.time(), time.monotonic()
            for channel_id, (expiry, _) in list(self.finished.items()):
                if expiry <= now:
                    del self.finished[channel_id]
            for channel in list(self.channels.values()):
                if channel.expiry <= now:
                    self.metrics.inc("tierwise_relay_cancels_total", reason="expired")
                    channel.cancel()
                    for conn in (channel.producer, channel.consumer):
                        if isinstance(conn, ServerConnection):
                            await _close_quietly(conn, protocol.CLOSE_EXPIRED, "token expired")
                    self._maybe_forget(channel)
                elif (
                    channel.consumer is None
                    and mono - channel.consumer_seen > self.settings.orphan_timeout_s
                ):
                    await self._cancel(channel, "no_consumer")


class _Connection(ServerConnection):
    """A server connection that counts socket reads, so silence is judged by arrival."""

    arrivals = 0

    def data_received(self, data: bytes) -> None:
        self.arrivals += 1
        super().data_received(data)

    def reading(self) -> bool:
        return bool(self.transport.is_reading())


def _arrivals(ws: ServerConnection) -> _Connection:
    assert isinstance(ws, _Connection), "serve() with create_connection=_Connection"
    return ws


def _reply(
    connection: ServerConnection, status: HTTPStatus, body: str, content_type: str | None = None
) -> Response:
    response = connection.respond(status, body)
    if content_type:
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = content_type
    return response


async def _close_quietly(conn: object, code: int, reason: str) -> None:
    if isinstance(conn, ServerConnection):
        with contextlib.suppress(ConnectionClosed):
            await conn.close(code, reason)


async def run(settings: RelaySettings, ready: asyncio.Event | None = None) -> None:
    """Serve until cancelled (SIGINT/SIGTERM in `python -m relay`)."""
    relay = RelayServer(settings)
    server = await relay.start()
    scheme = "wss" if settings.certfile else "ws"
    log.warning("relay listening on %s://%s:%d", scheme, settings.host, settings.port)
    if ready is not None:
        ready.set()
    try:
        await server.serve_forever()
    finally:
        await relay.close()

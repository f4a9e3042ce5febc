"""The HPC-side worker: call the node's vLLM with streaming and push each delta to the relay.

This file is shipped as *source* to the Globus Compute endpoint (registered with
`register_source_code(source, "run_worker")`), so the GPU node needs no tierwise install:
it uses only the standard library, plus the `websockets` package for the relay link. Without
`websockets`, or when the relay cannot be reached, it still generates and returns every
event in its result, which the proxy uses as the batch fallback. Longer than 400 lines because
it is shipped as source: the endpoint gets this one file, so it must stand alone.

The result is a dict: ``events`` (every message, in sequence order, exactly as sent to the
relay), ``cancelled``, ``relayed`` (the relay took every event) and ``worker`` (host, pid).
It goes back as JSON. Events that would not fit Globus Compute's result limit are left out
(``omitted``: true, ``events`` empty): the relay has them, or nobody does.
Keep it runnable on Python 3.9+: endpoints often lag behind the proxy.

What the job may not do, checked here because the endpoint runs whatever it is sent:
- carry the model server's key: the worker reads it from the endpoint's environment
  (``VLLM_API_KEY``, or the variable the job names), so task payloads and logs never hold it;
- send tokens in clear: the relay must be ``wss://`` unless it is on loopback or the job
  says ``allow_insecure`` (development);
- call any host: the model server must be on loopback or listed in the endpoint's
  ``TIERWISE_UPSTREAM_HOSTS`` (comma-separated host or host:port);
- run late: a job that starts after ``deadline.start_by`` (the proxy has given up on it)
  exits without calling the model server; one still generating at ``deadline.finish_by``
  stops; a relay that answers 401 (token expired) or 410 (consumer gone) stops it too.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import inspect
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

CLOSE_CANCELLED = 4001  # relay close code: the consumer cancelled or left
KEEPALIVE_S = 20.0  # ping the relay this often; no pong within as long: reconnect
# Reconnect backoff: 0.05 s doubling to at most 0.25 s, so after a link outage we are back
# within a quarter second of the relay being reachable, well inside its 2 s producer grace.
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.05, 0.25
FORWARDED_DELTA_KEYS = ("content", "tool_calls", "reasoning_content")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
UPSTREAM_HOSTS_ENV = "TIERWISE_UPSTREAM_HOSTS"
DEFAULT_KEY_ENV = "VLLM_API_KEY"
# Globus Compute refuses results over 10 MiB; one event per token reaches that on long
# tool-call streams. Above this the result leaves the events to the relay (see run_worker).
RESULT_BUDGET_BYTES = 9 * 1024 * 1024
# Compact JSON with one encoder: json.dumps(..., separators=...) builds a new one per token.
_compact = json.JSONEncoder(separators=(",", ":")).encode


class UpstreamError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RelayLink:
    """The producer end of one relay channel: ordered, replayable, reconnecting.

    Every message gets the next sequence number and is kept, so after any reconnect the
    relay's `hello.resume_from` says where to resend from and nothing is lost; the relay
    drops what it already has, so nothing is duplicated.
    """

    def __init__(
        self,
        url: str,
        token: str,
        connect_timeout_s: float = 5.0,
        reconnect_window_s: float = 30.0,
        on_cancel: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.token = token
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_window_s = reconnect_window_s
        self.on_cancel = on_cancel
        self.log: list[str] = []
        self.sent = 0  # messages of self.log written to the current connection
        self.closed_cleanly_at = -1  # len(log) when the relay last closed us normally
        self.ended = False  # the last message in the log is `done` or `error`
        self.cancelled = threading.Event()
        self.gave_up = threading.Event()
        self.finished = threading.Event()
        self.heartbeat_s = 0.5
        self.last_send = time.monotonic()
        self._conn: Any = None
        self._lock = threading.Lock()
        # One thread connects, sends heartbeats and reads the relay's cancel; emit() writes
        # from the caller's thread. The connection opens at once, in parallel with the
        # model's own time to first token.
        threading.Thread(target=self._run, name="relay-link", daemon=True).start()

    def emit(self, message: dict[str, Any]) -> dict[str, Any]:
        """Number, keep and (when connected) send one message; returns it."""
        with self._lock:
            message = dict(message, seq=len(self.log) + 1)
            raw = _compact(message)
            self.log.append(raw)
            self.ended = message.get("type") in ("done", "error")
            conn = self._conn
            if conn is not None and self.sent == len(self.log) - 1:
                try:
                    conn.send(raw)
                    self.sent += 1
                    self.last_send = time.monotonic()
                except Exception:  # the link thread sees the close and reconnects
                    self._conn = None
        return message

    def finish(self, drain_s: float) -> bool:
        """After the last message: wait up to drain_s for the relay to take all, then close."""
        deadline = time.monotonic() + drain_s
        delivered, conn = False, None
        while time.monotonic() < deadline and not self.gave_up.is_set():
            with self._lock:
                if self.closed_cleanly_at == len(self.log):
                    delivered, conn = True, None  # the relay took the end and closed first
                    break
                if self._conn is not None and self.sent == len(self.log):
                    conn, delivered = self._conn, True
                    break
            if self.cancelled.is_set():
                break
            time.sleep(0.01)
        self.finished.set()
        if conn is not None:
            try:
                conn.close()  # the close handshake follows every data frame on the socket
            except Exception:
                delivered = False
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
        return delivered

    def _cancel(self) -> None:
        if not self.cancelled.is_set():
            self.cancelled.set()
            if self.on_cancel is not None:
                self.on_cancel()

    def _run(self) -> None:
        try:
            from websockets.exceptions import ConnectionClosed, InvalidStatus
            from websockets.sync.client import connect
        except ImportError:
            self.gave_up.set()  # no websockets on this node: batch result only
            return
        lost_at = time.monotonic()
        backoff = BACKOFF_FIRST_S
        fresh = True  # no connection yet: the relay cannot hold anything of ours
        while not self.finished.is_set() and not self.cancelled.is_set():
            conn, attached = None, False
            try:
                conn = connect(
                    self.url,
                    additional_headers={"Authorization": "Bearer " + self.token},
                    open_timeout=self.connect_timeout_s,
                    close_timeout=2,
                    # Token frames are tens of bytes: deflate costs CPU on every hop and
                    # saves next to nothing (the relay does not negotiate it either).
                    compression=None,
                    **connect_options(connect, self.url),
                )
                if fresh:
                    # Send what we have without waiting for the hello: its resume point
                    # can only be 0 for us, and the relay drops any seq it already holds,
                    # so the first token does not wait one more round trip.
                    self._attach(conn, 0)
                    attached = True
                hello = json.loads(conn.recv(timeout=self.connect_timeout_s))
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 410):  # token expired, or the consumer cancelled
                    self._cancel()
                    return
                # 409: the relay ended our stream after losing us; the result carries it.
                if status in (403, 404, 409):  # retrying cannot help
                    self.gave_up.set()
                    return
                conn = None
            except Exception:
                if conn is not None:
                    self._detach(conn)
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
            fresh = False
            if conn is None:
                if time.monotonic() - lost_at > self.reconnect_window_s:
                    self.gave_up.set()
                    return
                time.sleep(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
                continue
            backoff = BACKOFF_FIRST_S
            self.heartbeat_s = float(hello.get("heartbeat_s") or self.heartbeat_s)
            try:
                if not attached:
                    self._attach(conn, int(hello.get("resume_from") or 0))
                normal = self._read(conn)
                with self._lock:  # a normal close: the relay has everything we wrote
                    self.closed_cleanly_at = self.sent
                    over = normal and self.ended and self.sent == len(self.log)
                if over:  # the relay took our last message and let us go: nothing to resume
                    self._detach(conn)
                    return
            except ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == CLOSE_CANCELLED:
                    self._cancel()
            except Exception:
                pass
            self._detach(conn)
            lost_at = time.monotonic()

    def _attach(self, conn: Any, resume_from: int) -> None:
        """Send everything after resume_from, then let emit() write to conn directly."""
        with self._lock:
            for raw in self.log[resume_from:]:
                conn.send(raw)
            self.sent = len(self.log)
            self.last_send = time.monotonic()
            self._conn = conn

    def _detach(self, conn: Any) -> None:
        with self._lock:
            if self._conn is conn:
                self._conn = None

    def _read(self, conn: Any) -> bool:
        """Read the relay's messages until it closes normally; heartbeat and ping meanwhile.
        True when that close was a plain 1000 (not 1001: the relay going away or idle).

        The relay sends a producer only its hello and `cancel`, so reads time out often;
        each timeout is when we prove we are alive, and check that the relay still is.
        """
        from websockets.exceptions import ConnectionClosedOK

        ping_at, pong = time.monotonic() + KEEPALIVE_S, None
        while True:
            try:
                frame = conn.recv(timeout=self.heartbeat_s / 2)
            except ConnectionClosedOK as exc:
                return exc.rcvd is not None and exc.rcvd.code == 1000
            except TimeoutError:
                now = time.monotonic()
                if self.finished.is_set() or self.cancelled.is_set():
                    continue  # closing: finish() ends this connection
                if now - self.last_send >= self.heartbeat_s:
                    conn.send('{"type":"heartbeat"}')
                    self.last_send = now
                if now >= ping_at:
                    if pong is not None and not pong.is_set():
                        with contextlib.suppress(Exception):
                            conn.close()
                        raise TimeoutError("the relay answers no pings") from None
                    pong, ping_at = conn.ping(), now + KEEPALIVE_S
                continue
            if json.loads(frame).get("type") == "cancel":
                self._cancel()


# Variables that decide which proxy, if any, websockets uses for a relay URL.
PROXY_ENV = tuple(
    name
    for scheme in ("ws", "wss", "socks", "https", "http", "no")
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY")
)


def connect_options(connect: Callable[..., Any], url: str) -> dict[str, Any]:
    """Options for websockets' `connect` that it would otherwise work out on every call.

    No keepalive thread per connection (RelayLink._read pings instead), and the proxy for
    this relay looked up once per environment: websockets (>= 15) scans the whole
    environment on each connect, which cost more CPU than the rest of the handshake on the
    path to the first token (profiled with `tierwise bench relay`).
    """
    parts = urlsplit(url)
    env = tuple(os.environ.get(name) for name in PROXY_ENV)
    return _connect_options(connect, parts.scheme, parts.netloc, env)


@functools.lru_cache(maxsize=32)
def _connect_options(
    connect: Callable[..., Any], scheme: str, netloc: str, env: tuple[str | None, ...]
) -> dict[str, Any]:
    params = inspect.signature(connect).parameters
    options: dict[str, Any] = {}
    if "ping_interval" in params:
        options["ping_interval"] = None
    if "proxy" in params:
        from websockets.uri import get_proxy, parse_uri

        options["proxy"] = get_proxy(parse_uri(f"{scheme}://{netloc}/"))
    return options


class Upstream:
    """One streaming chat call to an OpenAI-compatible server (vLLM); abort() stops it."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 600.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UpstreamError("upstream url must be http(s)://host[:port]/v1, got " + base_url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self.conn = cls(parts.hostname, parts.port, timeout=timeout_s)
        self.path = parts.path.rstrip("/") + "/chat/completions"
        self.url = base_url
        self.api_key = api_key
        self.aborted = False
        self.sock: socket.socket | None = None

    def chunks(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Yield each SSE chunk (a dict) until [DONE]; raise UpstreamError on any failure."""
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = "Bearer " + self.api_key
        if self.aborted:
            return
        try:
            self.conn.request("POST", self.path, body=json.dumps(body), headers=headers)
            # getresponse() hands the socket to the response and may drop conn.sock: keep it
            # so abort() can still shut it down, and shut it ourselves if abort() came while
            # we were connecting (it set the flag before looking for a socket).
            self.sock = self.conn.sock
            if self.aborted:
                self.abort()
            response = self.conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            if self.aborted:
                return
            raise UpstreamError(f"cannot reach the model server at {self.url}: {exc}") from None
        if response.status != 200:
            text = response.read(2000).decode("utf-8", "replace")
            raise UpstreamError(
                f"the model server answered HTTP {response.status}: {text}", response.status
            )
        try:
            for line in response:
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                yield json.loads(data)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if not self.aborted:
                raise UpstreamError(f"the model server stream broke: {exc}") from None
            return
        if not self.aborted:
            raise UpstreamError("the model server closed the stream before [DONE]")

    def abort(self) -> None:
        """Close the socket, so the server stops generating (vLLM aborts on disconnect)."""
        self.aborted = True
        sock = self.sock or self.conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _delta_messages(chunk: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """Token messages for one chunk's first choice, and its finish_reason (or None)."""
    messages: list[dict[str, Any]] = []
    finish: str | None = None
    for choice in chunk.get("choices") or []:
        if choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta") or {}
        kept = {k: delta[k] for k in FORWARDED_DELTA_KEYS if delta.get(k)}
        if kept:
            messages.append({"type": "token", "delta": kept})
        finish = choice.get("finish_reason") or finish
    return messages, finish


class JobRefused(Exception):
    """The job asks for something this endpoint does not allow (see the module docstring)."""


def _host_port(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return host, f"{host}:{parts.port}" if parts.port else host


def _in_clear(relay_cfg: dict[str, Any] | None) -> bool:
    """A ws:// relay off loopback that the job did not explicitly allow."""
    if not relay_cfg:
        return False
    url = str(relay_cfg["url"])
    insecure = url.startswith("ws://") and not relay_cfg.get("allow_insecure")
    return insecure and _host_port(url)[0] not in LOOPBACK


def check_job(job: dict[str, Any], now: float) -> None:
    """Raise JobRefused when the job breaks one of this endpoint's rules."""
    if "api_key" in job["upstream"]:
        raise JobRefused(
            "the job carries a model-server key; set it in the endpoint's environment instead"
        )
    host, host_port = _host_port(job["upstream"]["url"])
    allowed = {h.strip() for h in os.environ.get(UPSTREAM_HOSTS_ENV, "").split(",") if h.strip()}
    if host not in LOOPBACK and not {host, host_port} & allowed:
        raise JobRefused(
            f"model server {host_port!r} is not on loopback nor in this endpoint's "
            f"{UPSTREAM_HOSTS_ENV}"
        )
    if _in_clear(job.get("relay")):
        raise JobRefused("the relay must be wss://: tokens would cross the network in clear")
    start_by = (job.get("deadline") or {}).get("start_by")
    if start_by is not None and now > float(start_by):
        raise JobRefused(f"the job started {now - float(start_by):.0f}s after its deadline")


def probe() -> dict[str, Any]:
    """What `tierwise hpc doctor` learns from one task: this node's Python and websockets."""
    try:
        import websockets

        ws_version: str | None = getattr(websockets, "__version__", "unknown")
    except ImportError:
        ws_version = None
    import platform

    return {
        "python": platform.python_version(),
        "websockets": ws_version,
        "host": socket.gethostname(),
        "upstream_hosts": os.environ.get(UPSTREAM_HOSTS_ENV, ""),
    }


def _open_link(relay_cfg: dict[str, Any], on_cancel: Callable[[], None] | None) -> RelayLink:
    return RelayLink(
        relay_cfg["url"],
        relay_cfg["token"],
        float(relay_cfg.get("connect_timeout_s", 5)),
        float(relay_cfg.get("reconnect_window_s", 30)),
        on_cancel=on_cancel,
    )


def _refuse(job: dict[str, Any], message: str, worker: dict[str, Any]) -> dict[str, Any]:
    """End a refused job with an error, through the relay too where that is allowed: the
    proxy may never see this task's result (a blocked result channel)."""
    error: dict[str, Any] = {"type": "error", "message": message, "status": None}
    relay_cfg = job.get("relay")
    if not relay_cfg or _in_clear(relay_cfg):
        return {
            "events": [dict(error, seq=1)],
            "cancelled": False,
            "relayed": False,
            "worker": worker,
        }
    link = _open_link(relay_cfg, None)
    event = link.emit(error)
    wait_s = float(relay_cfg.get("drain_s", 2)) + float(relay_cfg.get("connect_timeout_s", 5))
    relayed = link.finish(wait_s)
    return {"events": [event], "cancelled": False, "relayed": relayed, "worker": worker}


def run_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Run one chat request on this node and stream it; see the module docstring.

    job = {"upstream": {"url", "api_key_env", "timeout_s"}, "body": {...OpenAI chat request...},
           "relay": {"url", "token", "connect_timeout_s", "reconnect_window_s", "drain_s",
                     "allow_insecure"} or None,
           "deadline": {"start_by", "finish_by"} (unix seconds) or None}
    or {"probe": true} (see probe()).
    """
    if job.get("probe"):
        return {"probe": probe()}
    worker = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        check_job(job, time.time())
    except JobRefused as exc:
        return _refuse(job, str(exc), worker)
    upstream_cfg = job["upstream"]
    key = os.environ.get(str(upstream_cfg.get("api_key_env") or DEFAULT_KEY_ENV))
    upstream = Upstream(upstream_cfg["url"], key, float(upstream_cfg.get("timeout_s", 600)))
    finish_by = (job.get("deadline") or {}).get("finish_by")
    timer = None
    if finish_by is not None:
        timer = threading.Timer(max(0.0, float(finish_by) - time.time()), upstream.abort)
        timer.daemon = True
        timer.start()
    relay_cfg = job.get("relay")
    link = _open_link(relay_cfg, upstream.abort) if relay_cfg else None
    events: list[dict[str, Any]] = []

    def emit(message: dict[str, Any]) -> None:
        events.append(link.emit(message) if link else dict(message, seq=len(events) + 1))

    body = dict(job["body"], stream=True, stream_options={"include_usage": True})
    finish, usage = None, None
    try:
        for chunk in upstream.chunks(body):
            messages, chunk_finish = _delta_messages(chunk)
            for message in messages:
                emit(message)
            finish = chunk_finish or finish
            if chunk.get("usage"):
                usage = chunk["usage"]
        if not upstream.aborted:
            if usage:
                emit({"type": "usage", "usage": usage})
            emit({"type": "done", "finish_reason": finish or "stop"})
    except UpstreamError as exc:
        if not upstream.aborted:
            emit({"type": "error", "message": str(exc), "status": exc.status})
    finally:
        upstream.conn.close()
        if timer is not None:
            timer.cancel()
    ended = bool(events) and events[-1]["type"] in ("done", "error")
    if upstream.aborted and not ended and not (link and link.cancelled.is_set()):
        emit({"type": "error", "message": "the job reached its deadline", "status": None})
    cancelled = bool(link and link.cancelled.is_set())
    relayed = False
    if link is not None:
        relayed = link.finish(0.0 if cancelled else float((relay_cfg or {}).get("drain_s", 2)))
    result = {"events": events, "cancelled": cancelled, "relayed": relayed, "worker": worker}
    budget = int(job.get("result_budget_bytes") or RESULT_BUDGET_BYTES)
    if len(_compact(events)) > budget:
        # Over the limit the endpoint would replace the whole result with an error.
        result.update(events=[], omitted=True)
    return result

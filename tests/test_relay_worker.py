"""The worker's relay link against a scripted connection: what it sends, and when."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedOK
from websockets.frames import Close, CloseCode

from relay import worker
from relay.worker import RelayLink
from tests.servers import Stub

HELLO = json.dumps({"type": "hello", "resume_from": 0, "heartbeat_s": 0.2})


class ScriptedConn:
    """A relay connection that never answers pings. The first one a link opens says hello
    only once the producer has sent something, as a slow relay might."""

    def __init__(self, hello_waits: bool) -> None:
        self.hello_waits = hello_waits
        self.sent: list[str] = []
        self.pings = 0
        self.changed = threading.Condition()
        self.closed = False
        self.close_code: int | None = None  # how the relay closed us, if it did
        self.said_hello = False

    def send(self, raw: str) -> None:
        with self.changed:
            self.sent.append(raw)
            if json.loads(raw)["type"] == "done":  # the relay lets a finished producer go
                self.closed, self.close_code = True, CloseCode.NORMAL_CLOSURE
            self.changed.notify_all()

    def recv(self, timeout: float | None = None) -> str:
        with self.changed:
            if not self.said_hello:
                if not self.changed.wait_for(self._may_say_hello, timeout):
                    raise TimeoutError
                self.said_hello = True
                return HELLO
            if not self.changed.wait_for(lambda: self.closed, timeout):
                raise TimeoutError
            if self.close_code is None:  # we closed it
                raise ConnectionClosedOK(None, None)
            close = Close(self.close_code, "")
            raise ConnectionClosedOK(close, close, rcvd_then_sent=True)

    def _may_say_hello(self) -> bool:
        return not self.hello_waits or bool(self.sent) or self.closed

    def ping(self) -> threading.Event:
        self.pings += 1
        return threading.Event()  # no pong, ever

    def close(self) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify_all()


@pytest.fixture
def conns(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ScriptedConn]]:
    made: list[ScriptedConn] = []

    def connect(url: str, **options: Any) -> ScriptedConn:
        assert options["compression"] is None
        made.append(ScriptedConn(hello_waits=not made))
        return made[-1]

    monkeypatch.setattr("websockets.sync.client.connect", connect)
    yield made
    for conn in made:
        conn.close()


def _wait_for(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_first_token_goes_out_without_waiting_for_the_hello(conns: list[ScriptedConn]) -> None:
    link = RelayLink("ws://relay.invalid/v1/channels/chan-first/produce", "t")
    _wait_for(lambda: bool(conns))
    link.emit({"type": "token", "delta": {"content": "hi"}})
    _wait_for(lambda: conns[0].said_hello)
    assert json.loads(conns[0].sent[0]) == {"type": "token", "delta": {"content": "hi"}, "seq": 1}
    link.emit({"type": "done", "finish_reason": "stop"})
    time.sleep(0.3)  # the relay closed us after `done`: that is the end, no reconnecting
    assert link.finish(2.0) is True
    assert [json.loads(raw)["seq"] for raw in conns[0].sent] == [1, 2]
    assert len(conns) == 1


def test_heartbeats_while_idle_and_a_relay_without_pongs_is_dropped(
    conns: list[ScriptedConn], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker, "KEEPALIVE_S", 0.3)
    link = RelayLink("ws://relay.invalid/v1/channels/chan-pings/produce", "t")
    try:
        _wait_for(lambda: bool(conns))
        link.emit({"type": "token", "delta": {"content": "hi"}})
        # hello says heartbeat_s 0.2: heartbeats follow; the second ping finds no pong to
        # the first, so the link closes that connection and opens another one.
        _wait_for(lambda: len(conns) == 2)
        first = conns[0]
        assert first.closed and first.pings == 1
        assert '{"type":"heartbeat"}' in first.sent
        _wait_for(lambda: bool(conns[1].sent))  # after its hello: the backlog again
        assert json.loads(conns[1].sent[0])["seq"] == 1
    finally:
        link.finish(0.0)


def test_abort_before_the_upstream_request_starts_sends_nothing(
    stub_factory: Callable[..., Stub],
) -> None:
    """A cancel that comes while the job is still starting: no request reaches the model."""
    stub = stub_factory("vllm")
    upstream = worker.Upstream(f"{stub.url}/v1", timeout_s=10)
    upstream.abort()
    assert list(upstream.chunks({"model": "m", "messages": []})) == []
    assert stub.requests() == []


def test_connect_options_follow_the_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxy is worked out once per environment, not on every connect, and still honoured
    when the environment names one (compute nodes behind an HTTP proxy)."""
    from websockets.sync.client import connect

    for name in worker.PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
    url = "wss://relay.example.edu/v1/channels/abcdefgh/produce"
    assert worker.connect_options(connect, url) == {"ping_interval": None, "proxy": None}
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    assert worker.connect_options(connect, url)["proxy"] == "http://proxy.internal:3128"
    monkeypatch.setenv("no_proxy", "relay.example.edu")
    assert worker.connect_options(connect, url)["proxy"] is None

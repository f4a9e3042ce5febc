"""Relay trouble costs nothing: a frozen relay, dropped links, killed processes, bad frames.

Every case runs the real relay process, the real worker and the real consumer over real
sockets; faults are real too (SIGSTOP/SIGCONT, SIGKILL, a TCP proxy that resets
connections). Each asserts every token exactly once and in order, or a clear error within
a generous bound; none asserts how long a healthy stream took.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from websockets.sync.client import connect

from relay import protocol
from relay.consumer import HpcStream, StreamError
from relay.dispatch import Dispatcher
from relay.local_endpoint import LocalExecutor
from relay.worker import run_worker
from tests.servers import Service, Stub, free_port
from tests.servers.relay import (
    auth,
    collect,
    hpc_stream,
    start_relay,
    text_of,
    worker_job,
    ws_url,
)
from tests.servers.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

# 250 tokens 20 ms apart: a five-second answer, long enough to outlast every fault below.
WORDS = " ".join(f"w{i}" for i in range(250))
EXPECTED = "[vllm] " + WORDS


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=2)
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def stub(stub_factory: Callable[..., Stub]) -> Stub:
    stub = stub_factory("vllm")
    stub.control(token_delay_ms=20)
    return stub


@contextmanager
def _relay_and_link(tmp_path: Path, *flags: str) -> Iterator[tuple[Service, TcpProxy]]:
    """A relay process, and a TCP proxy to it that a test can cut."""
    relay = start_relay(tmp_path, *flags)
    link = TcpProxy(int(relay.url.rsplit(":", 1)[1]))
    try:
        yield relay, link
    finally:
        link.close()
        relay.stop()


def _job(stub: Stub, relay_base: str, channel: str) -> dict[str, Any]:
    return worker_job(f"{stub.url}/v1", relay_base, channel, WORDS, reconnect_window_s=10)


def _metric(relay: Service, name: str) -> float:
    for line in httpx.get(f"{relay.url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _later(delay_s: float, action: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay_s), action()), daemon=True)
    thread.start()
    return thread


def _at(count: int, action: Callable[[], None]) -> Callable[[int], None]:
    """An on_event callback that starts `action` on its own thread at the count-th event."""

    def on_event(seen: int) -> None:
        if seen == count:
            _later(0, action)

    return on_event


def _assert_streamed(stream: HpcStream, count: int) -> None:
    """The relay carried the answer live: at most the last few events (those still in
    flight when the task's result came back) were taken from the result."""
    assert stream.source_counts["relay"] >= count - 3, stream.source_counts


def _assert_exact(events: list[dict[str, Any]]) -> None:
    assert text_of(events) == EXPECTED
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "done"


@pytest.mark.parametrize("freeze_s", [2.0, 4.0])
def test_a_frozen_relay_fails_no_producer(
    freeze_s: float, tmp_path: Path, stub: Stub, pool: ThreadPoolExecutor
) -> None:
    # An idle limit shorter than the freeze: only judging by loop life and arrivals saves
    # the producer, whose heartbeats wait in the relay's socket meanwhile.
    relay = start_relay(tmp_path, "--idle-timeout-s", "1.5")
    base = ws_url(relay)

    def freeze() -> None:
        os.kill(relay.process.pid, signal.SIGSTOP)
        time.sleep(freeze_s)
        os.kill(relay.process.pid, signal.SIGCONT)

    try:
        future = pool.submit(run_worker, _job(stub, base, "chaos-freeze"))
        stream = hpc_stream(base, "chaos-freeze", future)
        events = collect(stream, _at(20, freeze))
        _assert_exact(events)
        assert _metric(relay, "tierwise_relay_producer_lost_total") == 0
        _assert_streamed(stream, len(events))
        assert future.result(10)["cancelled"] is False
    finally:
        os.kill(relay.process.pid, signal.SIGCONT)
        relay.stop()


def test_consumer_drops_three_seconds_apart_resume_exactly(
    tmp_path: Path, stub: Stub, pool: ThreadPoolExecutor
) -> None:
    """The second drop comes just before a grace timer left from the first would fire."""
    with _relay_and_link(tmp_path, "--consumer-grace-s", "3") as (relay, link):
        job = _job(stub, ws_url(relay), "chaos-drops")
        future = pool.submit(run_worker, job)
        stream = hpc_stream(link.url(), "chaos-drops", future)

        def drops() -> None:
            _later(1.0, lambda: link.cut(0.1))
            _later(3.95, lambda: link.cut(0.2))

        events = collect(stream, _at(1, drops))
        _assert_exact(events)
        assert link.cuts == 2
        assert _metric(relay, 'tierwise_relay_resumes_total{role="consume"}') >= 2
        assert _metric(relay, 'tierwise_relay_cancels_total{reason="consumer_left"}') == 0
        assert future.result(10)["cancelled"] is False


@pytest.mark.parametrize("outage_s", [0.45, 1.0])
def test_a_worker_link_outage_resumes_live(
    outage_s: float, tmp_path: Path, stub: Stub, pool: ThreadPoolExecutor
) -> None:
    with _relay_and_link(tmp_path) as (relay, link):
        future = pool.submit(run_worker, _job(stub, link.url(), "chaos-outage"))
        stream = hpc_stream(ws_url(relay), "chaos-outage", future)
        events = collect(stream, _at(20, lambda: link.cut(outage_s)))
        _assert_exact(events)
        assert link.cuts == 1
        assert _metric(relay, "tierwise_relay_producer_lost_total") == 0
        _assert_streamed(stream, len(events))
        assert _metric(relay, 'tierwise_relay_resumes_total{role="produce"}') >= 1


def test_an_outage_past_the_grace_is_filled_in_from_the_result(
    tmp_path: Path, stub: Stub, pool: ThreadPoolExecutor
) -> None:
    with _relay_and_link(tmp_path, "--producer-grace-s", "0.5") as (relay, link):
        future = pool.submit(run_worker, _job(stub, link.url(), "chaos-gone"))
        stream = hpc_stream(ws_url(relay), "chaos-gone", future)
        events = collect(stream, _at(20, lambda: link.cut(1.5)))
        _assert_exact(events)
        assert _metric(relay, "tierwise_relay_producer_lost_total") == 1
        assert stream.source_counts["relay"] >= 20 and stream.source_counts["result"] > 0
        result = future.result(10)
        assert result["cancelled"] is False  # the worker came back to a 409 and kept going
        assert _metric(relay, 'tierwise_relay_rejected_total{reason="late"}') >= 1


def test_a_killed_worker_process_is_a_clear_error(tmp_path: Path, stub: Stub) -> None:
    relay = start_relay(tmp_path)
    dispatcher = Dispatcher(lambda: LocalExecutor(1), "the local executor", 30)
    try:
        future = dispatcher.submit(_job(stub, ws_url(relay), "chaos-kill"))
        stream = hpc_stream(ws_url(relay), "chaos-kill", future)
        killed: list[float] = []

        def kill(count: int) -> None:
            if count == 20:
                me = psutil.Process()
                (worker,) = [
                    p for p in me.children(recursive=True) if "relay.local_endpoint" in p.cmdline()
                ]
                worker.send_signal(signal.SIGKILL)
                killed.append(time.monotonic())

        with pytest.raises(StreamError, match="the HPC job failed") as err:
            collect(stream, kill)
        assert err.value.status_code == 502
        assert time.monotonic() - killed[0] < 5
    finally:
        dispatcher.close()
        relay.stop()


def test_a_relay_killed_and_restarted_loses_nothing(
    tmp_path: Path, stub: Stub, pool: ThreadPoolExecutor
) -> None:
    port = free_port()
    relays = [start_relay(tmp_path, port=port)]
    base = ws_url(relays[0])

    def restart(count: int) -> None:
        if count == 20:
            relays[0].process.kill()  # SIGKILL: no close frames, all state gone
            relays[0].process.wait(10)
            relays.append(start_relay(tmp_path, port=port))

    try:
        future = pool.submit(run_worker, _job(stub, base, "chaos-restart"))
        events = collect(hpc_stream(base, "chaos-restart", future), restart)
        _assert_exact(events)
        assert future.result(10)["cancelled"] is False
    finally:
        for relay in relays:
            relay.stop()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"token","seq":1,"delta":' + _nested(100_000) + "}",
        '{"type":"token","seq":1' + "0" * 5000 + ',"delta":{}}',
        '{"type":"token","seq":1,"delta":{"content":' + "9" * 5000 + "}}",
        '{"type":"token","seq":1,"delta":5}',
        '{"type":"token","seq":1,"delta":{"content":["x"]}}',
        '{"type":"usage","seq":1,"usage":NaN}',
        '{"type":"done","seq":1.5}',
        '{"type":"tokens","seq":1,"delta":{"content":"x"}}',
    ],
    ids=[
        "deep",
        "huge-seq",
        "huge-number",
        "delta-type",
        "content-type",
        "nan",
        "float-seq",
        "unknown-type",
    ],
)
def test_a_malformed_producer_message_fails_the_stream_within_a_second(
    frame: str, tmp_path: Path
) -> None:
    relay = start_relay(tmp_path)
    channel = "chaos-badmsg"
    try:
        url = ws_url(relay) + protocol.channel_path(channel, "produce")
        with connect(url, additional_headers=auth(channel, "produce"), open_timeout=5) as ws:
            json.loads(ws.recv(timeout=5))
            stream = hpc_stream(ws_url(relay), channel, Future())
            sent: list[float] = []

            def send_bad() -> None:
                sent.append(time.monotonic())
                ws.send(frame)

            _later(0.3, send_bad)
            with pytest.raises(StreamError, match="broke the relay protocol") as err:
                collect(stream)
            assert err.value.status_code == 502
            assert time.monotonic() - sent[0] < 1.0
        assert "Traceback" not in relay.log.read_text()
    finally:
        relay.stop()

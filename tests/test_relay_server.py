"""The relay process over real sockets: auth, limits, backpressure, death, cancel, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from relay import protocol
from tests.servers import REPO, Service
from tests.servers.relay import SECRET, auth, start_relay, token, ws_url

pytestmark = pytest.mark.integration


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Service]:
    service = start_relay(
        tmp_path,
        "--consumer-grace-s",
        "0.5",
        "--buffer-messages",
        "16",
        "--idle-timeout-s",
        "1.5",
    )
    yield service
    service.stop()


def _open(relay: Service, channel: str, role: protocol.Role, after: int = 0) -> ClientConnection:
    url = ws_url(relay) + protocol.channel_path(channel, role, after)
    ws = connect(url, additional_headers=auth(channel, role), open_timeout=5)
    hello = json.loads(ws.recv(timeout=5))
    assert hello["type"] == "hello"
    return ws


def _send_tokens(ws: ClientConnection, first: int, last: int) -> None:
    for seq in range(first, last + 1):
        ws.send(json.dumps({"type": "token", "seq": seq, "delta": {"content": f"t{seq} "}}))


def _read(
    ws: ClientConnection, until_terminal: bool = True, limit: int = 10**6
) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < limit:
        message = json.loads(ws.recv(timeout=10))
        got.append(message)
        ws.send(json.dumps({"type": "ack", "seq": message["seq"]}))
        if until_terminal and message["type"] in protocol.TERMINAL_TYPES:
            break
    return got


def _metric(relay: Service, line_start: str) -> float:
    for line in httpx.get(f"{relay.url}/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_health_and_metrics_over_plain_http(relay: Service) -> None:
    health = httpx.get(f"{relay.url}/health")
    assert health.status_code == 200 and health.json()["ok"] is True
    metrics = httpx.get(f"{relay.url}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE tierwise_relay_channels gauge" in metrics.text


def test_bad_tokens_get_401_before_the_upgrade(relay: Service) -> None:
    url = ws_url(relay) + protocol.channel_path("chan-auth1", "produce")
    expired = protocol.mint_token(SECRET.encode(), "chan-auth1", "produce", ttl_s=-1)
    wrong_secret = protocol.mint_token(b"x" * 32, "chan-auth1", "produce", ttl_s=60)
    cases = {
        "missing": {},
        "expired": {"Authorization": f"Bearer {expired}"},
        "wrong secret": {"Authorization": f"Bearer {wrong_secret}"},
        "consumer token used to produce": {
            "Authorization": f"Bearer {token('chan-auth1', 'consume')}"
        },
    }
    for name, headers in cases.items():
        with pytest.raises(InvalidStatus) as err:
            connect(url, additional_headers=headers, open_timeout=5)
        assert err.value.response.status_code == 401, name
    assert _metric(relay, 'tierwise_relay_auth_failures_total{reason="expired"}') == 1
    assert httpx.get(f"{relay.url}/v1/elsewhere").status_code == 404


def test_malformed_tokens_get_401_quietly(relay: Service) -> None:
    """Odd tokens are refused like wrong ones: 401, no 500, no traceback in the log."""
    good = token("chan-auth2", "produce")
    version, expiry, mac = good.split(".")
    bad = [
        f"{version}.{'9' * 5000}.{mac}".encode(),
        f"{version}.{expiry}.{mac[:-1]}".encode() + "\u00e9".encode(),
        f"{version}.{expiry}.{mac[:-1]}".encode() + b"\xff",
        f"{version}.0{expiry}.{mac}".encode(),
    ]
    url = f"{relay.url}{protocol.channel_path('chan-auth2', 'produce')}"
    for value in bad:
        response = httpx.get(url, headers={"Authorization": b"Bearer " + value})
        assert response.status_code == 401, value[:40]
    assert _metric(relay, 'tierwise_relay_auth_failures_total{reason="malformed"}') == len(bad)
    assert "Traceback" not in relay.log.read_text()


def test_stream_completes_in_order_and_channel_is_then_closed(relay: Service) -> None:
    consumer = _open(relay, "chan-order", "consume")
    producer = _open(relay, "chan-order", "produce")
    _send_tokens(producer, 1, 100)
    producer.send(json.dumps({"type": "usage", "seq": 101, "usage": {"total_tokens": 9}}))
    producer.send(json.dumps({"type": "done", "seq": 102, "finish_reason": "stop"}))
    got = _read(consumer)
    assert [m["seq"] for m in got] == list(range(1, 103))
    assert [m["type"] for m in got[-2:]] == ["usage", "done"]
    time.sleep(0.3)
    with pytest.raises(InvalidStatus) as err:  # a finished channel cannot be reopened
        _open(relay, "chan-order", "produce")
    assert err.value.response.status_code == 410


def test_backpressure_pauses_the_producer_and_loses_nothing(relay: Service) -> None:
    """Buffer of 16 messages, 3000 sent as fast as possible, consumer slower: all arrive once."""
    consumer = _open(relay, "chan-press", "consume")
    producer = _open(relay, "chan-press", "produce")
    total = 3000

    def produce() -> None:
        _send_tokens(producer, 1, total)
        producer.send(json.dumps({"type": "done", "seq": total + 1, "finish_reason": "stop"}))

    thread = threading.Thread(target=produce)
    thread.start()
    seqs: list[int] = []
    while True:
        message = json.loads(consumer.recv(timeout=10))
        seqs.append(message["seq"])
        if len(seqs) % 4 == 0:  # the relay asks for an ack every buffer/4 messages
            consumer.send(json.dumps({"type": "ack", "seq": message["seq"]}))
        if message["type"] == "done":
            consumer.send(json.dumps({"type": "ack", "seq": message["seq"]}))
            break
        if len(seqs) < 200:
            time.sleep(0.002)
    thread.join(10)
    assert seqs == list(range(1, total + 2))
    assert _metric(relay, "tierwise_relay_backpressure_waits_total") > 0


def test_a_producer_paused_for_backpressure_is_not_judged_silent(relay: Service) -> None:
    """The relay stops reading a producer whose buffer is full; however long the consumer
    takes (here past the 1.5 s idle timeout), that silence is not the producer's."""
    consumer = _open(relay, "chan-pause", "consume")
    producer = _open(relay, "chan-pause", "produce")
    _send_tokens(producer, 1, 40)  # the buffer holds 16: the rest waits in the socket
    producer.send(json.dumps({"type": "done", "seq": 41, "finish_reason": "stop"}))
    first = [json.loads(consumer.recv(timeout=5)) for _ in range(16)]
    time.sleep(2.5)  # no ack, so the relay keeps the producer paused
    consumer.send(json.dumps({"type": "ack", "seq": first[-1]["seq"]}))
    got = first + _read(consumer)
    assert [m["seq"] for m in got] == list(range(1, 42))
    assert got[-1]["type"] == "done"
    assert _metric(relay, "tierwise_relay_backpressure_waits_total") > 0
    assert _metric(relay, "tierwise_relay_producer_lost_total") == 0


def test_oversize_message_closes_the_producer_and_tells_the_consumer(tmp_path: Path) -> None:
    relay = start_relay(tmp_path, "--max-message-bytes", "1024", "--buffer-bytes", "65536")
    try:
        consumer = _open(relay, "chan-big1", "consume")
        producer = _open(relay, "chan-big1", "produce")
        _send_tokens(producer, 1, 2)
        big = {"type": "token", "seq": 3, "delta": {"content": "x" * 4096}}
        with pytest.raises(ConnectionClosed) as err:
            producer.send(json.dumps(big))
            producer.recv(timeout=5)
        assert err.value.rcvd is not None and err.value.rcvd.code == 1009
        got = _read(consumer)
        assert [m["type"] for m in got] == ["token", "token", "error"]
        assert "1024-byte limit" in got[-1]["message"]
    finally:
        relay.stop()


def _producer_process(
    relay: Service, channel: str, count: int, delay_ms: int
) -> subprocess.Popen[str]:
    url = ws_url(relay) + protocol.channel_path(channel, "produce")
    command = [
        sys.executable,
        "-m",
        "tests.servers.relay",
        url,
        token(channel, "produce"),
        str(count),
        str(delay_ms),
    ]
    return subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


@pytest.mark.parametrize("how", ["killed", "frozen"])
def test_dead_producer_becomes_an_error_within_three_seconds(relay: Service, how: str) -> None:
    """Killed: the 2 s reconnect grace; frozen: 1.5 s of silence, judged every 0.375 s."""
    channel = f"chan-dead-{how}"
    consumer = _open(relay, channel, "consume")
    process = _producer_process(relay, channel, count=100000, delay_ms=5)
    try:
        got = _read(consumer, until_terminal=False, limit=20)
        assert [m["seq"] for m in got] == list(range(1, 21))
        os.kill(process.pid, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        died = time.monotonic()
        while True:
            message = json.loads(consumer.recv(timeout=5))
            if message["type"] == "error":
                break
        assert time.monotonic() - died < 3.0
        assert "stopped responding" in message["message"]
        assert message["reason"] == "producer_lost" and message["source"] == "relay"
    finally:
        process.kill()
        process.wait(5)


def test_consumer_leaving_cancels_the_producer(relay: Service) -> None:
    consumer = _open(relay, "chan-leave", "consume")
    process = _producer_process(relay, "chan-leave", count=100000, delay_ms=5)
    try:
        _read(consumer, until_terminal=False, limit=5)
        consumer.close()  # gone without a word; grace is 0.5 s
        left = time.monotonic()
        out, _ = process.communicate(timeout=10)
        assert time.monotonic() - left < 3
        assert any(json.loads(line).get("type") == "cancel" for line in out.splitlines()[1:])
    finally:
        process.kill()
    assert _metric(relay, 'tierwise_relay_cancels_total{reason="consumer_left"}') == 1


def test_after_is_capped_at_what_the_relay_took_in(relay: Service) -> None:
    consumer = _open(relay, "chan-cap", "consume")
    producer = _open(relay, "chan-cap", "produce")
    _send_tokens(producer, 1, 3)
    assert [m["seq"] for m in _read(consumer, until_terminal=False, limit=3)] == [1, 2, 3]
    consumer.close()
    ahead = _open(relay, "chan-cap", "consume", after=10**9)  # claims more than exists
    _send_tokens(producer, 4, 5)
    assert [m["seq"] for m in _read(ahead, until_terminal=False, limit=2)] == [4, 5]
    producer.close()
    ahead.close()


def test_consumer_resumes_without_loss_or_duplication(relay: Service) -> None:
    producer = _open(relay, "chan-resum", "produce")
    consumer = _open(relay, "chan-resum", "consume")
    _send_tokens(producer, 1, 10)
    first = _read(consumer, until_terminal=False, limit=6)
    consumer.close()  # drops 7..10 in flight
    _send_tokens(producer, 11, 14)
    producer.send(json.dumps({"type": "done", "seq": 15, "finish_reason": "stop"}))
    again = _open(relay, "chan-resum", "consume", after=first[-1]["seq"])
    rest = _read(again)
    assert [m["seq"] for m in first + rest] == list(range(1, 16))
    assert _metric(relay, 'tierwise_relay_resumes_total{role="consume"}') == 1


def test_producer_replay_after_reconnect_is_deduplicated(relay: Service) -> None:
    consumer = _open(relay, "chan-repla", "consume")
    producer = _open(relay, "chan-repla", "produce")
    _send_tokens(producer, 1, 5)
    time.sleep(0.2)
    producer.close()
    url = ws_url(relay) + protocol.channel_path("chan-repla", "produce")
    again = connect(url, additional_headers=auth("chan-repla", "produce"))
    hello = json.loads(again.recv(timeout=5))
    assert hello["resume_from"] == 5
    _send_tokens(again, 1, 8)  # a careless producer that resends everything
    again.send(json.dumps({"type": "done", "seq": 9, "finish_reason": "stop"}))
    assert [m["seq"] for m in _read(consumer)] == list(range(1, 10))
    assert _metric(relay, "tierwise_relay_duplicates_dropped_total") == 5


def test_bad_secret_in_the_environment_exits_with_a_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "relay", "--port", "1"],
        env={**os.environ, "TIERWISE_RELAY_SECRET": "short"},
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert result.returncode == 2 and "at least 32 bytes" in result.stderr
    assert "Traceback" not in result.stderr

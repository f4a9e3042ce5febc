"""The relay's wire rules and channel buffer, without sockets."""

from __future__ import annotations

import asyncio
import json

import pytest

from relay import protocol
from relay.channel import Accept, Channel, GapError, Limits
from relay.metrics import Metrics

SECRET = b"s" * 32


def test_token_grants_one_channel_and_role_until_expiry() -> None:
    token = protocol.mint_token(SECRET, "chan-0001", "produce", ttl_s=60, now=1000)
    assert protocol.verify_token(SECRET, token, "chan-0001", "produce", now=1059) == 1060
    for channel, role, secret, now, reason in (
        ("chan-0002", "produce", SECRET, 1000, "bad_mac"),  # another channel
        ("chan-0001", "consume", SECRET, 1000, "bad_mac"),  # another role
        ("chan-0001", "produce", b"t" * 32, 1000, "bad_mac"),  # another secret
        ("chan-0001", "produce", SECRET, 1060, "expired"),
    ):
        with pytest.raises(protocol.TokenError) as err:
            protocol.verify_token(secret, token, channel, role, now=now)
        assert err.value.reason == reason


def test_token_tampering_and_garbage_are_refused() -> None:
    token = protocol.mint_token(SECRET, "chan-0001", "produce", ttl_s=60, now=1000)
    version, expiry, mac = token.split(".")
    later = f"{version}.{int(expiry) + 3600}.{mac}"  # pushing the expiry breaks the MAC
    cases = {
        later: "bad_mac",
        "": "missing",
        "abc": "malformed",
        "v1.x.y": "malformed",
        f"{version}.0{expiry}.{mac}": "malformed",  # one canonical form: no leading zeros
        f"{version}.{'9' * 5000}.{mac}": "malformed",  # too many digits for int()
        f"{version}.{expiry}.{mac[:-1]}\u00e9": "malformed",  # not ASCII: compare_digest raises
        f"{version}.{expiry}\n.{mac}": "malformed",
        f"{version}.{expiry}.{mac}=": "malformed",  # padded base64
        f"{version}.-{expiry}.{mac}": "malformed",
        f"{version}.\u0661\u0662.{mac}": "malformed",  # Unicode digits int() would take
    }
    for bad, reason in cases.items():
        with pytest.raises(protocol.TokenError) as err:
            protocol.verify_token(SECRET, bad, "chan-0001", "produce", now=1000)
        assert err.value.reason == reason


def test_short_secret_is_refused_with_a_fix() -> None:
    with pytest.raises(ValueError, match="token_urlsafe"):
        protocol.check_secret(b"short")


def test_paths() -> None:
    assert protocol.parse_target("/v1/channels/abcdefgh/consume?after=7") == protocol.Target(
        "abcdefgh", "consume", 7
    )
    assert protocol.parse_target(protocol.channel_path("abcdefgh", "produce")).role == "produce"
    for bad in (
        "/v1/channels/abc/consume",
        "/x",
        "/v1/channels/abcdefgh/consume?after=-1",
        "/v1/channels/abcdefgh/consume?after=07",
        "/v1/channels/abcdefgh/consume?after=" + "9" * 19,
        "/v1/channels/abcdefgh/consume?after=%D9%A1",  # an Arabic-Indic one
    ):
        with pytest.raises(ValueError):
            protocol.parse_target(bad)


def test_producer_messages_are_validated() -> None:
    ok = protocol.parse_producer_message('{"type": "token", "seq": 3, "delta": {}}')
    assert ok is not None and (ok.seq, ok.type, ok.terminal) == (3, "token", False)
    assert protocol.parse_producer_message('{"type": "heartbeat"}') is None
    for bad in (
        '{"type": "token"}',
        '{"type": "nope", "seq": 1}',
        "[1]",
        "{",
        b"{}",
        '{"type": "token", "seq": true}',
        '{"type": "token", "seq": 1, "delta": "x"}',
        '{"type": "token", "seq": 1, "delta": {"tool_calls": {}}}',
        '{"type": "usage", "seq": 1, "usage": [1]}',
        '{"type": "error", "seq": 1, "message": 5}',
        '{"type": "done", "seq": 1, "finish_reason": Infinity}',
        '{"type": "done", "seq": 1, "x": ' + "[" * 17 + "]" * 17 + "}",
        '{"type": "done", "seq": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
    ):
        with pytest.raises(protocol.ProtocolError):
            protocol.parse_producer_message(bad)
    nested = {"type": "token", "seq": 1, "delta": {"tool_calls": [{"function": {"name": "f"}}]}}
    assert protocol.parse_producer_message(json.dumps(nested)) is not None


def _msg(seq: int, kind: str = "token") -> protocol.DataMessage:
    message = protocol.parse_producer_message(json.dumps({"type": kind, "seq": seq}))
    assert message is not None
    return message


def test_channel_keeps_order_drops_replays_and_refuses_gaps() -> None:
    async def scenario() -> None:
        channel = Channel("chan-0001", 0, Limits(buffer_messages=3))
        assert channel.accept(_msg(1)) is Accept.STORED
        assert channel.accept(_msg(2)) is Accept.STORED
        assert channel.accept(_msg(1)) is Accept.DUPLICATE
        with pytest.raises(GapError):
            channel.accept(_msg(4))
        assert channel.accept(_msg(3)) is Accept.STORED
        assert not channel.has_space() and not channel.space.is_set()  # producer must pause
        assert [json.loads(r)["seq"] for r in channel.after(1)] == [2, 3]
        channel.ack(2)
        assert channel.has_space() and [m.seq for m in channel.retained] == [3]
        assert channel.accept(_msg(4, "done")) is Accept.STORED
        assert channel.accept(_msg(5)) is Accept.IGNORED
        assert not channel.finished
        channel.ack(4)
        assert channel.finished

    asyncio.run(scenario())


def test_fresh_channel_resumes_where_the_consumer_is() -> None:
    """After a relay restart the consumer reports seq 5: a replay of 1..5 is dropped."""

    async def scenario() -> None:
        channel = Channel("chan-0001", 0, Limits())
        channel.ack(5)
        assert channel.position == 5
        assert all(channel.accept(_msg(s)) is Accept.DUPLICATE for s in range(1, 6))
        assert channel.accept(_msg(6)) is Accept.STORED
        failed = channel.fail("producer lost", protocol.PRODUCER_LOST)
        assert failed is not None and failed.seq == 7 and channel.terminal_seq == 7
        assert json.loads(failed.raw)["reason"] == "producer_lost" and channel.lost_producer
        assert channel.fail("again", "protocol") is None

    asyncio.run(scenario())


def test_metrics_render_prometheus_text() -> None:
    metrics = Metrics()
    metrics.inc("tierwise_relay_messages_total", type="token")
    metrics.inc("tierwise_relay_messages_total", 2, type="token")
    text = metrics.render({"tierwise_relay_channels": {(): 4}})
    assert 'tierwise_relay_messages_total{type="token"} 3' in text
    assert "# TYPE tierwise_relay_channels gauge\ntierwise_relay_channels 4" in text
    assert "tierwise_relay_producer_lost_total 0" in text
    with pytest.raises(KeyError):
        metrics.inc("undeclared_total")

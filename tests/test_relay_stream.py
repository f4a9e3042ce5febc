"""The real worker and the proxy-side stream, through a real relay process and a stub vLLM."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.consumer import HpcStream, StreamError, StreamTimeouts
from relay.worker import run_worker
from tests.servers import Service, Stub, free_port
from tests.servers.relay import start_relay, token, worker_job, ws_url

pytestmark = pytest.mark.integration

WORDS = [f"w{i}" for i in range(60)]


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=2)
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


def _job(stub: Stub, relay_base: str, channel: str, text: str, **relay: Any) -> dict[str, Any]:
    settings = {"reconnect_window_s": 10, **relay}
    return worker_job(f"{stub.url}/v1", relay_base, channel, text, **settings)


def _stream(relay_base: str, channel: str, future: Future[Any], **timeouts: float) -> HpcStream:
    options = StreamTimeouts(**{"reconnect_window_s": 10, "start_s": 20, "total_s": 60, **timeouts})
    return HpcStream(relay_base, channel, token(channel, "consume"), future, options)


def _collect(
    stream: HpcStream, on_event: Callable[[int], None] | None = None
) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        events = []
        async for event in stream.events():
            events.append(event)
            if on_event is not None:
                await asyncio.to_thread(on_event, len(events))
        return events

    return asyncio.run(run())


def _text(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"].get("content", "") for e in events if e["type"] == "token")


def test_tokens_usage_and_done_arrive_through_the_relay(
    tmp_path: Path, stub_factory: Callable[..., Stub], pool: ThreadPoolExecutor
) -> None:
    stub, relay = stub_factory("vllm"), start_relay(tmp_path)
    # Spaced tokens: with none, the whole answer can be done (and taken from the task's
    # result) before our relay connection opens, and nothing would show the relay path.
    stub.control(token_delay_ms=30)
    try:
        future = pool.submit(run_worker, _job(stub, ws_url(relay), "chan-basic", "hello there"))
        events = _collect(stream := _stream(ws_url(relay), "chan-basic", future))
        assert _text(events) == "[vllm] hello there"
        assert [e["type"] for e in events[-2:]] == ["usage", "done"]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert stream.source_counts["relay"] > 0
        sent = stub.requests()[0]["body"]
        assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
        assert future.result(10)["relayed"] is True
    finally:
        relay.stop()


def test_relay_restart_mid_stream_loses_and_repeats_nothing(
    tmp_path: Path, stub_factory: Callable[..., Stub], pool: ThreadPoolExecutor
) -> None:
    stub = stub_factory("vllm")
    stub.control(token_delay_ms=40)
    port = free_port()
    relays: list[Service] = [start_relay(tmp_path, port=port)]
    base = ws_url(relays[0])

    def restart_at(count: int) -> None:
        if count == 10:
            relays[0].stop()  # SIGTERM: every connection drops, all state is gone
            relays.append(start_relay(tmp_path, port=port))

    try:
        future = pool.submit(run_worker, _job(stub, base, "chan-restart", " ".join(WORDS)))
        stream = _stream(base, "chan-restart", future)
        events = _collect(stream, restart_at)
        assert _text(events) == "[vllm] " + " ".join(WORDS)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        metrics = httpx.get(f"{relays[-1].url}/metrics").text
        assert 'tierwise_relay_resumes_total{role="consume"} 1' in metrics
        assert 'tierwise_relay_messages_total{type="token"}' in metrics  # it carried tokens
    finally:
        for relay in relays:
            relay.stop()


def test_unreachable_relay_falls_back_to_the_batch_result(
    stub_factory: Callable[..., Stub], pool: ThreadPoolExecutor
) -> None:
    stub = stub_factory("vllm")
    nowhere = f"ws://127.0.0.1:{free_port()}"
    job = _job(stub, nowhere, "chan-nohub", "batch please", reconnect_window_s=0.5)
    future = pool.submit(run_worker, job)
    stream = _stream(nowhere, "chan-nohub", future, reconnect_window_s=0.5)
    events = _collect(stream)
    assert _text(events) == "[vllm] batch please"
    assert stream.source_counts == {"relay": 0, "result": len(events)}
    assert future.result()["relayed"] is False


def test_leaving_early_cancels_the_worker_and_the_upstream_call(
    tmp_path: Path, stub_factory: Callable[..., Stub], pool: ThreadPoolExecutor
) -> None:
    stub, relay = stub_factory("vllm"), start_relay(tmp_path)
    stub.control(token_delay_ms=50)
    try:
        future = pool.submit(run_worker, _job(stub, ws_url(relay), "chan-leave", " ".join(WORDS)))
        stream = _stream(ws_url(relay), "chan-leave", future)

        async def take_three() -> None:
            events = stream.events()
            for _ in range(3):
                await anext(events)
            await events.aclose()  # the user closed the tab

        asyncio.run(take_three())
        left = time.monotonic()
        result = future.result(timeout=5)
        assert result["cancelled"] is True
        assert time.monotonic() - left < 2
        assert len(result["events"]) < len(WORDS)  # it stopped generating
        deadline = time.monotonic() + 5
        while not stub.requests()[0].get("aborted") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stub.requests()[0].get("aborted") is True
    finally:
        relay.stop()


def test_upstream_failure_is_an_error_not_a_hang(
    tmp_path: Path, stub_factory: Callable[..., Stub], pool: ThreadPoolExecutor
) -> None:
    stub, relay = stub_factory("vllm"), start_relay(tmp_path)
    stub.control(fail_status=503)
    try:
        future = pool.submit(run_worker, _job(stub, ws_url(relay), "chan-fail5", "hi"))
        started = time.monotonic()
        with pytest.raises(StreamError, match="HTTP 503") as err:
            _collect(_stream(ws_url(relay), "chan-fail5", future))
        assert err.value.status_code == 502 and time.monotonic() - started < 5
    finally:
        relay.stop()


def test_failed_task_ends_the_stream_even_with_no_producer(tmp_path: Path) -> None:
    relay = start_relay(tmp_path)
    try:
        future: Future[Any] = Future()

        def fail_soon() -> None:
            time.sleep(0.3)
            future.set_exception(RuntimeError("Traceback ...\nWorkerLost: node went away"))

        ThreadPoolExecutor(1).submit(fail_soon)
        started = time.monotonic()
        with pytest.raises(StreamError, match="WorkerLost: node went away"):
            _collect(_stream(ws_url(relay), "chan-lost1", future))
        assert time.monotonic() - started < 3
    finally:
        relay.stop()


def test_nothing_from_the_job_hits_the_start_deadline(tmp_path: Path) -> None:
    relay = start_relay(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(StreamError, match="sent nothing within 1s") as err:
            _collect(_stream(ws_url(relay), "chan-quiet", Future(), start_s=1))
        assert err.value.status_code == 504 and time.monotonic() - started < 4
    finally:
        relay.stop()


def test_tool_call_deltas_are_forwarded(
    tmp_path: Path, stub_factory: Callable[..., Stub], pool: ThreadPoolExecutor
) -> None:
    stub, relay = stub_factory("vllm"), start_relay(tmp_path)
    try:
        job = _job(stub, ws_url(relay), "chan-tools", "please call tool")
        job["body"]["tools"] = [{"type": "function", "function": {"name": "lookup"}}]
        future = pool.submit(run_worker, job)
        events = _collect(_stream(ws_url(relay), "chan-tools", future))
        calls = [c for e in events if e["type"] == "token" for c in e["delta"]["tool_calls"]]
        assert calls[0]["function"]["name"] == "lookup"
        assert json.loads(calls[0]["function"]["arguments"]) == {"q": "x"}
        assert events[-1] == {
            "type": "done",
            "finish_reason": "tool_calls",
            "seq": events[-1]["seq"],
        }
    finally:
        relay.stop()

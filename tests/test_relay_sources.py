"""Whichever source is alive finishes the answer: the relay when Globus' result channel is
lost, and a refused job's error through the relay when its result never comes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from relay.consumer import HpcStream, StreamError, StreamTimeouts
from relay.dispatch import Dispatcher, DispatchError, ResultUnavailable, TaskHandle
from relay.local_endpoint import LocalExecutor
from relay.worker import run_worker
from tests.servers import Service, Stub, free_port
from tests.servers.relay import start_relay, token, worker_job, ws_url

pytestmark = pytest.mark.integration


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Service]:
    service = start_relay(tmp_path)
    yield service
    service.stop()


def _job(stub: Stub, relay_base: str, channel: str, text: str, **extra: Any) -> dict[str, Any]:
    return {
        **worker_job(f"{stub.url}/v1", relay_base, channel, text, reconnect_window_s=0.5),
        **extra,
    }


def _read(relay_base: str, channel: str, future: Future[Any]) -> tuple[str, HpcStream]:
    timeouts = StreamTimeouts(reconnect_window_s=0.5, start_s=30, total_s=60)
    stream = HpcStream(relay_base, channel, token(channel, "consume"), future, timeouts)

    async def run() -> str:
        parts = [e["delta"].get("content", "") async for e in stream.events() if "delta" in e]
        return "".join(parts)

    return asyncio.run(run()), stream


def _lost() -> TaskHandle:
    handle = TaskHandle()
    handle.settle(error=ResultUnavailable("the HPC task's result channel closed", 502))
    return handle


def test_a_lost_result_channel_leaves_the_relay_to_finish(
    relay: Service, stub_factory: Callable[..., Stub]
) -> None:
    stub = stub_factory("vllm")
    stub.control(token_delay_ms=20)
    with ThreadPoolExecutor(1) as pool:
        worker = pool.submit(run_worker, _job(stub, ws_url(relay), "chan-lostres", "a b c d"))
        text, stream = _read(ws_url(relay), "chan-lostres", _lost())
        assert worker.result(30)["relayed"] is True
    assert text == "[vllm] a b c d"
    assert stream.source_counts["result"] == 0


def test_with_both_sources_gone_the_error_comes_at_once() -> None:
    nowhere = f"ws://127.0.0.1:{free_port()}"
    with pytest.raises(StreamError) as failed:
        _read(nowhere, "chan-nothing", _lost())
    assert failed.value.status_code == 502
    assert str(failed.value) == "HPC tier unavailable: the HPC task's result channel closed"
    # Not the 504 of start_s: the stream ended when the relay's reconnect window ran out.


def test_a_refused_job_says_why_through_the_relay(
    relay: Service, stub_factory: Callable[..., Stub]
) -> None:
    """Its result may never come (result channel blocked): the relay carries the error."""
    stub = stub_factory("vllm")
    late = _job(stub, ws_url(relay), "chan-toolate", "hi", deadline={"start_by": 1.0})
    with ThreadPoolExecutor(1) as pool:
        pool.submit(run_worker, late)
        with pytest.raises(StreamError, match="after its deadline"):
            _read(ws_url(relay), "chan-toolate", Future())  # a result that never comes
    assert stub.requests() == []


def test_a_caller_leaving_never_cancels_the_sdks_future(
    stub_factory: Callable[..., Stub],
) -> None:
    stub = stub_factory("vllm")
    dispatcher = Dispatcher(lambda: LocalExecutor(1), "the local executor", 30)
    try:
        job = _job(stub, "", "chan-unused", "keep going")
        job["relay"] = None
        handle = dispatcher.submit(job)
        assert handle.cancel()  # what the consumer does when its caller leaves
        assert handle.sdk_future is not None
        result = handle.sdk_future.result(timeout=60)  # the task ran on, undisturbed
        assert result["events"][-1]["type"] == "done"
    finally:
        dispatcher.close()


def test_an_answer_too_large_for_the_result_finishes_from_the_relay(
    relay: Service, stub_factory: Callable[..., Stub]
) -> None:
    stub = stub_factory("vllm")
    dispatcher = Dispatcher(lambda: LocalExecutor(1), "the local executor", 30)
    words = " ".join(f"w{i}" for i in range(40))
    try:
        # A small budget stands in for Globus Compute's 10 MiB result limit.
        relayed = _job(stub, ws_url(relay), "chan-bigres", words, result_budget_bytes=200)
        handle = dispatcher.submit(relayed)
        text, stream = _read(ws_url(relay), "chan-bigres", handle)
        assert text == f"[vllm] {words}"
        assert stream.source_counts["result"] == 0
        with pytest.raises(ResultUnavailable, match="outgrew the HPC task's result"):
            handle.result(timeout=60)
        lost = dict(relayed, relay=None)  # nothing took the events: the answer is lost
        with pytest.raises(DispatchError, match="outgrew the HPC task's result and was lost"):
            dispatcher.submit(lost).result(timeout=60)
    finally:
        dispatcher.close()

"""`tierwise bench hpc-submit`: how long a request waits before Globus Compute has its task,
with the SDK's defaults (4 submissions per 16 s, up to 128 tasks a batch) and with
tierwise's (8 per 4 s, the service's published 20 per 10 s; one task a batch), measured in
the same run.

The real SDK Executor, built as the proxy builds it (relay.globus, one task per batch),
submits through the proxy's dispatcher to the stand-in web service (relay/standin.py, on
loopback, answering at once), one request every `interval_s`. The wait runs from the
dispatcher's submit() to the moment the task has an id: the part of time to first token
spent on this side before the endpoint can start the worker. The stand-in answers in
milliseconds, so what remains is the SDK's client-side limiter.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tierwise.bench.stats import summary_ms

ENDPOINT = "00000000-0000-4000-8000-000000000002"


def run(requests: int = 20, interval_s: float = 1.0) -> dict[str, Any]:
    from relay import globus, standin
    from relay.globus import GlobusOptions

    if not standin.port_free():
        raise RuntimeError(f"127.0.0.1:{standin.SDK_PORT} is taken; the stand-in service needs it")
    os.environ.update(standin.env(Path(tempfile.mkdtemp(prefix="tierwise-bench-gc-"))))
    for noisy in ("pika", "globus_sdk", "globus_compute_sdk", "tierwise.relay.dispatch"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)  # the dropped result channel
    ours = GlobusOptions(ENDPOINT)
    sdk = GlobusOptions(ENDPOINT, api_burst_limit=4, api_burst_window_s=16, batch_size=128)
    modes = [("sdk_default", sdk), ("tierwise", ours)]
    with standin.GlobusStandIn():
        function_id = globus.client().register_source_code("def f(job):\n    return job\n", "f")
        waits = {name: _waits(mode, function_id, requests, interval_s) for name, mode in modes}
    limits = {
        "sdk_default": "4 per 16 s, batches <= 128",
        "tierwise": f"{ours.api_burst_limit} per {ours.api_burst_window_s} s, "
        f"batches of {ours.batch_size}",
    }
    figures = {
        name: {**summary_ms(w), "max_ms": round(max(w) * 1000, 1)} for name, w in waits.items()
    }
    return {"requests": requests, "interval_s": interval_s, "limits": limits, **figures}


def _waits(options: Any, function_id: str, requests: int, interval_s: float) -> list[float]:
    """Submit `requests` jobs on a fixed schedule; each one's wait for its task id (s)."""
    from relay.dispatch import Dispatcher
    from relay.globus import EndpointExecutor

    dispatcher = Dispatcher(lambda: EndpointExecutor(options), "bench", 60, function_id)
    waits: list[float] = []
    pending: list[tuple[float, Any]] = []
    lock = threading.Lock()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() or pending:
            with lock:
                for started, handle in list(pending):
                    if handle.task_id is not None:
                        waits.append(time.perf_counter() - started)
                        pending.remove((started, handle))
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.perf_counter()
    try:
        for index in range(requests):
            time.sleep(max(0.0, start + index * interval_s - time.perf_counter()))
            submitted = time.perf_counter()
            handle = dispatcher.submit({"probe": True})
            with lock:
                pending.append((submitted, handle))
        done.set()
        watcher.join(timeout=120)
    finally:
        dispatcher.close()
    if len(waits) != requests:
        raise RuntimeError(f"only {len(waits)} of {requests} tasks were acknowledged")
    return waits


def format_results(results: dict[str, Any]) -> str:
    head = (
        f"wait before Globus Compute has the task, {results['requests']} requests, one every "
        f"{results['interval_s']:g} s (real SDK, stand-in service on loopback):"
    )
    rows = [
        f"  {name:<12} ({results['limits'][name]}): p50 {results[name]['p50_ms']:8.1f} ms   "
        f"p99 {results[name]['p99_ms']:8.1f} ms   max {results[name]['max_ms']:8.1f} ms"
        for name in ("sdk_default", "tierwise")
    ]
    return "\n".join([head, *rows])

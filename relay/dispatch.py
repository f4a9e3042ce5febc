"""Start the worker on a GPU node: through Globus Compute, or locally for development.

Both executors take the same calls — `register_source_code(source, "run_worker")` once, then
`submit_to_registered_function(function_id, kwargs={"job": ...})` — so the code path the
proxy runs is the same with either. The worker ships as source (see relay/worker.py), so
the endpoint needs no tierwise install.

The Globus SDK can retry for minutes when it cannot reach the service: every SDK call here
runs on one dedicated thread under our own deadline, and a call that overruns fails the
request with a message that says what was being done and what to check.
"""

from __future__ import annotations

import importlib.resources
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol, TypeVar

WORKER_FUNCTION = "run_worker"
CREDENTIAL_VARS = ("GLOBUS_COMPUTE_CLIENT_ID", "GLOBUS_COMPUTE_CLIENT_SECRET")
T = TypeVar("T")


class DispatchError(Exception):
    """The job could not be handed to the HPC side; the message says what to check."""


class TaskExecutor(Protocol):
    """The part of globus_compute_sdk.Executor the dispatcher uses."""

    def register_source_code(self, source: str, function_name: str) -> str: ...

    def submit_to_registered_function(
        self,
        function_id: str,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> Future[Any]: ...

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...


def worker_source() -> str:
    """The worker module's text, as the endpoint will exec it."""
    return importlib.resources.files("relay").joinpath("worker.py").read_text(encoding="utf-8")


class _SdkThread:
    """Runs SDK calls one at a time on a daemon thread: a call stuck in the SDK's retries
    holds only this thread, later calls time out behind it, and exit never waits for it
    (a ThreadPoolExecutor's threads are joined at interpreter exit)."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[
            tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None
        ]
        self._queue = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((future, fn, args))
        return future

    def stop(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)


class Dispatcher:
    """Registers the worker source once per executor and submits jobs, each call on a deadline."""

    def __init__(
        self, make_executor: Callable[[], TaskExecutor], label: str, call_timeout_s: float = 30.0
    ) -> None:
        self.label = label
        self.call_timeout_s = call_timeout_s
        self._make_executor = make_executor
        self._sdk = _SdkThread(f"dispatch-{label}")
        self._lock = threading.Lock()
        self._executor: TaskExecutor | None = None
        self._function_id: str | None = None

    def submit(self, job: Mapping[str, Any]) -> Future[Any]:
        """Hand one job to the executor; the future resolves to the worker's result dict."""
        with self._lock:
            try:
                if self._executor is None:
                    self._executor = self._call("connecting", self._make_executor)
                executor = self._executor
                if self._function_id is None:
                    self._function_id = self._call(
                        "registering the worker function",
                        executor.register_source_code,
                        worker_source(),
                        WORKER_FUNCTION,
                    )
                return self._call(
                    "submitting the task",
                    executor.submit_to_registered_function,
                    self._function_id,
                    (),
                    {"job": dict(job)},
                )
            except DispatchError:
                self._reset()
                raise

    def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        future = self._sdk.submit(fn, *args)
        try:
            return future.result(timeout=self.call_timeout_s)
        except FutureTimeout:
            raise DispatchError(
                f"{self.label} did not answer within {self.call_timeout_s:g}s while {what}; "
                "check that this host can reach Globus Compute and that the endpoint is online"
            ) from None
        except DispatchError:
            raise
        except Exception as exc:
            raise DispatchError(f"{self.label} failed while {what}: {exc}") from exc

    def _reset(self) -> None:
        """Forget a failed executor, so the next request builds a fresh one."""
        executor, self._executor, self._function_id = self._executor, None, None
        if executor is not None:
            self._sdk.submit(lambda: executor.shutdown(wait=False, cancel_futures=True))

    def close(self) -> None:
        with self._lock:
            self._reset()
        self._sdk.stop()


def globus_executor(endpoint_id: str) -> TaskExecutor:
    """A real globus_compute_sdk.Executor, logged in as a confidential client from the env."""
    missing = [name for name in CREDENTIAL_VARS if not os.environ.get(name)]
    if missing:
        # Without them the SDK would start an interactive login and block the proxy.
        raise DispatchError(
            f"set {' and '.join(missing)} (a Globus confidential client allowed to use endpoint "
            f"{endpoint_id}) in the proxy's environment"
        )
    from globus_compute_sdk import Client, Executor

    return Executor(endpoint_id=endpoint_id, client=Client())


class LocalExecutor:
    """Runs tasks on this machine the way an endpoint does, for development and tests.

    Functions are framed exactly as `Client.register_source_code` frames them
    (PureSourceTextInspect), arguments go through the SDK's own `Batch` and serializer, the
    task is packed as a Globus Compute `Task` message, and a fresh process runs it with the
    endpoint's `execute_task` — the same unpacking, deserialization and result packing a
    real endpoint worker does. Each task gets its own process, as a worker would.
    """

    def __init__(self, workers: int = 4, run_dir: str | None = None) -> None:
        from globus_compute_sdk.serialize import ComputeSerializer

        self._serializer = ComputeSerializer()
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="local-ep")
        self._functions: dict[str, str] = {}
        self._run_dir = run_dir or tempfile.mkdtemp(prefix="tierwise-local-endpoint-")

    def register_source_code(self, source: str, function_name: str) -> str:
        from globus_compute_sdk.serialize import ComputeSerializer, PureSourceTextInspect

        separator = PureSourceTextInspect._separator
        framed = f"{PureSourceTextInspect.identifier}{function_name}{separator}{source}"
        function_id = str(uuid.uuid4())
        self._functions[function_id] = ComputeSerializer.pack_buffers([framed])
        return function_id

    def submit_to_registered_function(
        self,
        function_id: str,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> Future[Any]:
        from globus_compute_common import messagepack
        from globus_compute_common.messagepack.message_types import Task
        from globus_compute_sdk.sdk.asynchronous.compute_future import ComputeFuture
        from globus_compute_sdk.sdk.batch import Batch

        if function_id not in self._functions:
            raise ValueError(f"function {function_id} is not registered with this executor")
        batch = Batch(task_group_id=None, serializer=self._serializer)
        batch.add(function_id, args, kwargs)
        (payload,) = batch.tasks[uuid.UUID(function_id)]
        task_id = uuid.uuid4()
        body = messagepack.pack(
            Task(task_id=task_id, task_buffer=self._functions[function_id] + payload)
        )
        future: Future[Any] = ComputeFuture(task_id=str(task_id))
        inner = self._threads.submit(self._execute, task_id, body)
        inner.add_done_callback(lambda done: self._settle(future, done))
        return future

    def _execute(self, task_id: uuid.UUID, body: bytes) -> Any:
        command = [sys.executable, "-m", "relay.local_endpoint", str(task_id), self._run_dir]
        process = subprocess.run(command, input=body, capture_output=True, check=False)
        if process.returncode != 0:
            tail = process.stderr.decode("utf-8", "replace")[-2000:]
            raise DispatchError(
                f"the local worker process for task {task_id} exited with code "
                f"{process.returncode}{': ' + tail if tail else ''}"
            )
        from globus_compute_common import messagepack

        return messagepack.unpack(process.stdout)

    def _settle(self, future: Future[Any], done: Future[Any]) -> None:
        """Resolve the task's future as the SDK's Executor does from a Result message."""
        from globus_compute_sdk.errors import TaskExecutionFailed

        if future.cancelled():
            return
        try:
            error = done.exception()
            if error is not None:
                future.set_exception(error)
            elif done.result().is_error:
                future.set_exception(TaskExecutionFailed(done.result().data, str(time.time())))
            else:
                future.set_result(self._serializer.deserialize(done.result().data))
        except InvalidStateError:
            pass  # cancelled by the caller meanwhile
        except Exception as exc:
            future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._threads.shutdown(wait=wait, cancel_futures=cancel_futures)

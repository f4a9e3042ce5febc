"""Start the worker on a GPU node: through Globus Compute, or locally for development.

Both executors take the same calls — `register_source_code(source, "run_worker")` once (or a
pre-registered function id), then `submit_to_registered_function(function_id, kwargs={"job":
...})` — so the code path the proxy runs is the same with either. The worker ships as source
(see relay/worker.py), so the endpoint needs no tierwise install.

What the SDK's Executor does on its own, and what we do about it:
- an error from a batch submission fails that batch, cancels every queued future and shuts
  the executor down. Each request here gets its own future (`TaskHandle`): the request whose
  submission failed gets a clear error (tried once more on a fresh executor when the service
  was only busy), requests cancelled by that shutdown are submitted again on a fresh executor,
  and nobody else's request sees the error;
- `future.cancel()` is local only (the task still runs) and breaks the SDK's result matching,
  so nothing here cancels an SDK future: the worker carries its own deadlines instead;
- its result channel can fail (AMQP blocked, 5 connection attempts) although the task runs:
  such a handle fails with `ResultUnavailable`, and the consumer finishes from the relay alone;
- it can retry for minutes when the service is unreachable: every SDK call runs on one
  dedicated thread under our deadline, a call that overruns is cancelled if it has not
  started and its late result (an executor) is shut down, and waiting for the dispatcher's
  lock is bounded too.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol, TypeVar

from relay.globus import SERVICE_PAYLOAD_LIMIT, refusal

WORKER_FUNCTION = "run_worker"
STATUS_TTL_S = 30.0  # re-ask the endpoint's status at most this often
T = TypeVar("T")
log = logging.getLogger("tierwise.relay.dispatch")


class DispatchError(Exception):
    """The job could not be handed to the HPC side. The message is safe to show API callers;
    the details went to the proxy's log."""

    def __init__(self, message: str, status_code: int = 503, retry: bool = False) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry = retry  # a fresh executor may succeed (the service was busy, or ours died)


class ResultUnavailable(DispatchError):
    """The task was submitted, but its result cannot come back through Globus Compute
    (result channel lost); the relay is the only source left."""


class TaskExecutor(Protocol):
    """The part of globus_compute_sdk.Executor the dispatcher uses, plus the endpoint's status."""

    def register_source_code(self, source: str, function_name: str) -> str: ...

    def submit_to_registered_function(
        self,
        function_id: str,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> Future[Any]: ...

    def endpoint_status(self) -> str: ...

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...


def worker_source() -> str:
    """The worker module's text, as the endpoint will exec it."""
    return importlib.resources.files("relay").joinpath("worker.py").read_text(encoding="utf-8")


class TaskHandle(Future[Any]):
    """One request's task. Its own future: cancelling it never touches the SDK's, and it
    outlives an executor that is rebuilt underneath it."""

    def __init__(self) -> None:
        super().__init__()
        self.sdk_future: Future[Any] | None = None

    @property
    def task_id(self) -> str | None:
        """Set once Globus Compute acknowledged the task (the consumer's accept check)."""
        return getattr(self.sdk_future, "task_id", None)

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        try:
            if error is not None:
                self.set_exception(error)
            else:
                self.set_result(result)
        except InvalidStateError:
            pass  # the caller left and cancelled this handle: nobody waits for it


class _SdkThread:
    """Runs SDK calls one at a time on a daemon thread: a call stuck in the SDK's retries
    holds only this thread, later calls time out behind it (and are cancelled before they
    start), and exit never waits for it (a ThreadPoolExecutor's threads are joined at exit)."""

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
    """Submits jobs to one executor, rebuilt when it fails; every SDK call on a deadline."""

    def __init__(
        self,
        make_executor: Callable[[], TaskExecutor],
        label: str,
        call_timeout_s: float = 30.0,
        function_id: str | None = None,
        max_job_bytes: int = SERVICE_PAYLOAD_LIMIT // 2,
    ) -> None:
        self.label = label
        self.call_timeout_s = call_timeout_s
        self.function_id = function_id  # pre-registered (allowed_functions); None: register
        self.max_job_bytes = max_job_bytes
        self._make_executor = make_executor
        self._sdk = _SdkThread(f"dispatch-{label}")
        self._lock = threading.Lock()
        self._executor: TaskExecutor | None = None
        self._registered: str | None = None
        self._online_at = float("-inf")

    def submit(self, job: Mapping[str, Any]) -> TaskHandle:
        """Hand one job to the executor; the handle resolves to the worker's result dict."""
        size = len(json.dumps(job, separators=(",", ":")))
        if size > self.max_job_bytes:
            raise DispatchError(
                f"the request is too large for the HPC tier ({size} bytes; at most "
                f"{self.max_job_bytes})",
                413,
            )
        handle = TaskHandle()
        self._submit(handle, dict(job), retries=1)
        return handle

    def _submit(self, handle: TaskHandle, job: dict[str, Any], retries: int) -> None:
        if not self._lock.acquire(timeout=self.call_timeout_s):
            raise DispatchError(
                f"the HPC tier is busy: no submission slot within {self.call_timeout_s:g}s"
            )
        try:
            executor, function_id = self._ready()
            sdk_future = self._call(
                "submitting the task",
                executor.submit_to_registered_function,
                function_id,
                (),
                {"job": job},
            )
        except DispatchError as exc:
            self._discard(self._executor)
            if not (exc.retry and retries > 0):
                raise
            sdk_future = None  # e.g. the executor shut itself down after another's batch
        finally:
            self._lock.release()
        if sdk_future is None:
            self._submit(handle, job, retries - 1)
            return
        handle.sdk_future = sdk_future
        sdk_future.add_done_callback(
            lambda done: self._settle(handle, job, retries, executor, done)
        )

    def _ready(self) -> tuple[TaskExecutor, str]:
        """The executor (built on first use), checked online, and the function id to run."""
        if self._executor is None:
            self._executor = self._call("connecting", self._make_executor, late=_shut_down)
            self._registered, self._online_at = None, float("-inf")
        executor = self._executor
        if time.monotonic() - self._online_at > STATUS_TTL_S:
            status = self._call("checking the endpoint's status", executor.endpoint_status)
            if status != "online":
                raise DispatchError(f"the HPC endpoint is {status}; try again later")
            self._online_at = time.monotonic()
        if self.function_id:
            return executor, self.function_id
        if self._registered is None:
            self._registered = self._call(
                "registering the worker function",
                executor.register_source_code,
                worker_source(),
                WORKER_FUNCTION,
            )
        return executor, self._registered

    def _settle(
        self,
        handle: TaskHandle,
        job: dict[str, Any],
        retries: int,
        executor: TaskExecutor,
        done: Future[Any],
    ) -> None:
        """Turn the SDK future's outcome into the handle's (runs on an SDK thread)."""
        submitted = getattr(done, "task_id", None) is not None
        if done.cancelled():
            if submitted:  # the executor shut down while the task runs
                handle.settle(error=ResultUnavailable("the HPC task's result channel closed", 502))
            else:  # cancelled by the shutdown after someone else's failed batch
                self._discard(executor)
                self._resubmit(handle, job, retries)
            return
        error = done.exception()
        if error is None:
            handle.settle(*_checked(done.result()))
        elif submitted:
            from globus_compute_sdk.errors import TaskExecutionFailed

            if isinstance(error, TaskExecutionFailed):
                handle.settle(error=error)
            else:  # the result watcher gave up, or the result was not JSON
                log.warning("%s: no result for task %s: %r", self.label, done.task_id, error)  # type: ignore[attr-defined]
                handle.settle(error=ResultUnavailable("the HPC task's result cannot be read", 502))
        else:  # the service refused the batch; the SDK shut that executor down
            self._discard(executor)
            why = refusal(error)
            log.warning("%s refused a submission: %s", self.label, why.detail)
            if why.retry and retries > 0:
                self._resubmit(handle, job, retries - 1)
            else:
                handle.settle(error=DispatchError(why.message, why.status_code))

    def _resubmit(self, handle: TaskHandle, job: dict[str, Any], retries: int) -> None:
        """Submit again on a fresh executor, off the SDK's thread that told us."""

        def run() -> None:
            try:
                self._submit(handle, job, retries)
            except DispatchError as exc:
                handle.settle(error=exc)

        if not handle.cancelled():
            threading.Thread(target=run, name=f"resubmit-{self.label}", daemon=True).start()

    def _call(
        self, what: str, fn: Callable[..., T], *args: Any, late: Callable[[T], None] | None = None
    ) -> T:
        future = self._sdk.submit(fn, *args)
        try:
            return future.result(timeout=self.call_timeout_s)
        except FutureTimeout:
            if not future.cancel() and late is not None:  # running: clean up what it returns
                future.add_done_callback(lambda done: done.exception() or late(done.result()))
            log.warning("%s: no answer within %gs while %s", self.label, self.call_timeout_s, what)
            raise DispatchError(
                f"the HPC tier did not answer within {self.call_timeout_s:g}s; try again later"
            ) from None
        except DispatchError:
            raise
        except Exception as exc:
            log.warning("%s failed while %s: %r", self.label, what, exc)
            why = refusal(exc)
            raise DispatchError(why.message, why.status_code, why.retry) from exc

    def _discard(self, executor: TaskExecutor | None) -> None:
        """Forget a failed executor (if it is still the current one); the next call builds one."""
        if executor is None or executor is not self._executor:
            return
        self._executor, self._registered = None, None
        self._sdk.submit(_shut_down, executor)

    def close(self) -> None:
        """Stop for good: nobody will read the open futures, so the SDK may drop them (its
        result watcher would otherwise hold the process open until they resolve)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            self._sdk.submit(lambda: executor.shutdown(wait=False, cancel_futures=True))
        self._sdk.stop()


def _checked(result: Any) -> tuple[Any, DispatchError | None]:
    """A result whose events were left out (too large for Globus) leaves the relay to finish,
    if it took them all."""
    if not (isinstance(result, dict) and result.get("omitted")):
        return result, None
    if result.get("relayed"):
        return None, ResultUnavailable("the answer outgrew the HPC task's result", 502)
    return None, DispatchError("the answer outgrew the HPC task's result and was lost", 502)


def _shut_down(executor: TaskExecutor) -> None:
    """Stop an executor without cancelling its futures: tasks already sent still run."""
    executor.shutdown(wait=False)

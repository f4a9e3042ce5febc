"""A Globus Compute endpoint on this machine, for development and tests: `LocalExecutor`.

It runs tasks the way a *hardened* endpoint does. Functions are framed exactly as
`Client.register_source_code` frames them (PureSourceTextInspect); arguments go through the
SDK's own `Batch` and the serializer the dispatcher uses; the task is packed as a Globus
Compute `Task` message; and a fresh process runs it with the endpoint's `execute_task`, with
the endpoint's `allowed_serializers` as its task deserializers and our result serializers —
the same unpacking, checks and result packing a real endpoint worker does. A function not
in `allowed_functions` is refused at submission with 403 FUNCTION_NOT_PERMITTED, as the
service refuses it; the executor then stops, as the SDK's does after a refused batch.

`python -m relay.local_endpoint TASK_ID RUN_DIR OPTIONS_JSON` is that worker process: it
reads a messagepack `Task` on stdin and writes the packed `Result` to stdout.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from typing import Any

from relay.globus import ALLOWED_SERIALIZERS, RESULT_SERIALIZERS, json_serializer


class Refused(Exception):
    """The stand-in service's answer to a submission it refuses (as GlobusAPIError reads)."""

    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code


class LocalExecutor:
    """Runs tasks on this machine the way a hardened endpoint does (see the module docstring).

    `functions` is the registry the "service" keeps (shared across executors, so a function
    registered once stays registered); `allowed_functions` / `allowed_serializers` are the
    endpoint's allow-lists (None: allow all, as an unhardened endpoint).
    """

    def __init__(
        self,
        workers: int = 4,
        *,
        functions: dict[str, str] | None = None,
        allowed_functions: Iterable[str] | None = None,
        allowed_serializers: Iterable[str] | None = ALLOWED_SERIALIZERS,
        run_dir: str | None = None,
    ) -> None:
        self._serializer = json_serializer()
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="local-ep")
        self._functions = {} if functions is None else functions
        self._allowed = None if allowed_functions is None else set(allowed_functions)
        self._options = hardened_options(allowed_serializers)
        self._run_dir = run_dir or tempfile.mkdtemp(prefix="tierwise-local-endpoint-")
        self._stopped = threading.Event()

    def register_source_code(self, source: str, function_name: str) -> str:
        from globus_compute_sdk.serialize import ComputeSerializer, PureSourceTextInspect

        separator = PureSourceTextInspect._separator
        framed = f"{PureSourceTextInspect.identifier}{function_name}{separator}{source}"
        function_id = str(uuid.uuid4())
        self._functions[function_id] = ComputeSerializer.pack_buffers([framed])
        return function_id

    def endpoint_status(self) -> str:
        return "online"

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

        if self._stopped.is_set():
            raise RuntimeError("this local executor is shut down")
        future: Future[Any] = ComputeFuture()
        if function_id not in self._functions or (
            self._allowed is not None and function_id not in self._allowed
        ):
            self._stopped.set()  # as the SDK's Executor stops after a refused batch
            future.set_exception(
                Refused(403, "FUNCTION_NOT_PERMITTED", f"function {function_id} is not allowed")
            )
            return future
        batch = Batch(task_group_id=None, serializer=self._serializer)
        batch.add(function_id, args, kwargs)
        (payload,) = batch.tasks[uuid.UUID(function_id)]
        task_id = uuid.uuid4()
        body = messagepack.pack(
            Task(task_id=task_id, task_buffer=self._functions[function_id] + payload)
        )
        future.task_id = str(task_id)  # type: ignore[attr-defined]
        inner = self._threads.submit(self._execute, task_id, body)
        inner.add_done_callback(lambda done: self._settle(future, done))
        return future

    def _execute(self, task_id: uuid.UUID, body: bytes) -> Any:
        return run_task(task_id, body, self._run_dir, self._options)

    def _settle(self, future: Future[Any], done: Future[Any]) -> None:
        """Resolve the task's future as the SDK's result watcher does from a Result message."""
        from globus_compute_sdk.errors import TaskExecutionFailed

        try:
            error = done.exception()
            if isinstance(error, WorkerLost):  # as the endpoint reports a lost worker
                future.set_exception(TaskExecutionFailed(str(error), str(time.time())))
            elif error is not None:
                future.set_exception(error)
            elif done.result().is_error:
                future.set_exception(TaskExecutionFailed(done.result().data, str(time.time())))
            else:
                future.set_result(self._serializer.deserialize(done.result().data))
        except InvalidStateError:
            pass  # cancelled meanwhile
        except Exception as exc:
            future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._stopped.set()
        self._threads.shutdown(wait=wait, cancel_futures=cancel_futures)


def hardened_options(
    allowed_serializers: Iterable[str] | None = ALLOWED_SERIALIZERS,
) -> dict[str, Any]:
    """execute_task's options on an endpoint with this `allowed_serializers` list."""
    return {
        "task_deserializers": list(allowed_serializers) if allowed_serializers else None,
        "result_serializers": list(RESULT_SERIALIZERS),
    }


class WorkerLost(RuntimeError):
    """The worker process died mid-task; a real endpoint reports this as a failed task."""


def run_task(task_id: uuid.UUID, body: bytes, run_dir: str, options: dict[str, Any]) -> Any:
    """Run one packed Task in a fresh worker process; returns the unpacked Result message."""
    command = [sys.executable, "-m", "relay.local_endpoint", str(task_id), run_dir]
    process = subprocess.run(
        [*command, json.dumps(options)], input=body, capture_output=True, check=False
    )
    if process.returncode != 0:
        tail = process.stderr.decode("utf-8", "replace")[-2000:]
        raise WorkerLost(
            f"the local worker process for task {task_id} exited with code "
            f"{process.returncode}{': ' + tail if tail else ''}"
        )
    from globus_compute_common import messagepack

    return messagepack.unpack(process.stdout)


def main() -> int:
    if len(sys.argv) != 4:
        print("usage: python -m relay.local_endpoint TASK_ID RUN_DIR OPTIONS_JSON", file=sys.stderr)
        return 2
    from globus_compute_endpoint.engines.helper import execute_task

    options = json.loads(sys.argv[3])
    body = sys.stdin.buffer.read()
    out = sys.stdout.buffer
    # The task may print; keep its output off the channel that carries the result.
    with contextlib.redirect_stdout(sys.stderr):
        packed = execute_task(
            body,
            uuid.UUID(sys.argv[1]),
            None,
            run_dir=sys.argv[2],
            task_deserializers=options.get("task_deserializers"),
            result_serializers=options.get("result_serializers"),
        )
    out.write(packed)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

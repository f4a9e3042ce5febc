"""Dispatch: the worker ships as source and runs through the SDK's serializer and the
endpoint's own task runner; Globus Compute that cannot be reached fails fast."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from globus_compute_sdk.errors import TaskExecutionFailed

from relay import globus
from relay.dispatch import Dispatcher, DispatchError, worker_source
from relay.local_endpoint import LocalExecutor
from tests.servers import REPO, Stub
from tests.servers.globus_offline import SDK_PORT, black_hole, offline_env, sdk_port_free


def test_worker_source_needs_only_the_standard_library_and_websockets() -> None:
    tree = ast.parse(worker_source())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    outside = modules - set(sys.stdlib_module_names) - {"__future__", "websockets"}
    assert not outside, f"the endpoint would need: {sorted(outside)}"


@pytest.mark.integration
def test_local_executor_runs_the_shipped_source_like_an_endpoint(
    stub_factory: Callable[..., Stub],
) -> None:
    stub = stub_factory("vllm")
    dispatcher = Dispatcher(lambda: LocalExecutor(workers=2), "the local executor", 30)
    try:
        job = {
            "upstream": {"url": f"{stub.url}/v1"},
            "body": {"model": "m", "messages": [{"role": "user", "content": "from source"}]},
            "relay": None,
        }
        future = dispatcher.submit(job)
        assert future.task_id  # type: ignore[attr-defined]  # a ComputeFuture, as the SDK's
        result = future.result(timeout=60)
        text = "".join(e["delta"]["content"] for e in result["events"] if e["type"] == "token")
        assert text == "[vllm] from source"
        assert result["events"][-1]["type"] == "done"
        assert result["worker"]["pid"] != os.getpid()  # ran in its own worker process
    finally:
        dispatcher.close()


@pytest.mark.integration
def test_a_failing_task_raises_the_sdks_error_with_the_remote_traceback() -> None:
    executor = LocalExecutor(workers=1)
    try:
        function_id = executor.register_source_code(
            "def run_worker(job):\n    raise RuntimeError('no GPU here: ' + job['why'])\n",
            "run_worker",
        )
        future = executor.submit_to_registered_function(function_id, (), {"job": {"why": "x"}})
        with pytest.raises(TaskExecutionFailed, match="RuntimeError: no GPU here: x"):
            future.result(timeout=60)
    finally:
        executor.shutdown()


def test_missing_credentials_fail_instead_of_starting_an_interactive_login(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GLOBUS_COMPUTE_CLIENT_ID", raising=False)
    monkeypatch.delenv("GLOBUS_COMPUTE_CLIENT_SECRET", raising=False)
    with pytest.raises(
        globus.GlobusSetupError, match="GLOBUS_COMPUTE_CLIENT_ID and GLOBUS_COMPUTE_CLIENT"
    ):
        globus.check_environment()


@pytest.mark.integration
def test_unreachable_globus_fails_within_our_deadline(tmp_path: Path) -> None:
    """The real SDK against a service that never answers: it would wait for minutes, and
    each timed-out call would run later and build an executor nobody uses."""
    if not sdk_port_free():
        pytest.skip(f"127.0.0.1:{SDK_PORT} is taken; the SDK's local environment needs it")
    with black_hole():
        result = subprocess.run(
            [sys.executable, "-m", "tests.servers.globus_offline", "2"],
            env={**os.environ, **offline_env(tmp_path), "GLOBUS_SDK_HTTP_TIMEOUT": "1"},
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=300,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout)
    assert outcome["errors"] == ["the HPC tier did not answer within 2s; try again later"] * 3
    # Calls queued behind the stuck one were cancelled; the executor it built was shut down.
    assert outcome["left_running"] == 0
    assert outcome["seconds"] < 30  # three deadlines, not the SDK's retries


@pytest.mark.integration
def test_an_executor_that_died_underneath_is_replaced_without_failing_the_request(
    stub_factory: Callable[..., Stub],
) -> None:
    """As when the SDK's Executor shut itself down after someone else's refused batch."""
    stub = stub_factory("vllm")
    built: list[LocalExecutor] = []

    def make() -> LocalExecutor:
        built.append(executor := LocalExecutor(1))
        if len(built) == 1:
            executor.shutdown()  # stopped before our submission reaches it
        return executor

    dispatcher = Dispatcher(make, "the local executor", 30)
    job = {
        "upstream": {"url": f"{stub.url}/v1"},
        "body": {"model": "m", "messages": [{"role": "user", "content": "still served"}]},
        "relay": None,
    }
    try:
        result = dispatcher.submit(job).result(timeout=60)
    finally:
        dispatcher.close()
    assert result["events"][-1]["type"] == "done"
    assert len(built) == 2


def test_results_are_json_and_a_pickled_result_is_refused() -> None:
    from globus_compute_sdk.errors import DeserializationError
    from globus_compute_sdk.serialize import DillDataBase64, JSONData

    serializer = globus.json_serializer()
    assert serializer.deserialize(JSONData().serialize({"events": []})) == {"events": []}
    with pytest.raises(DeserializationError):
        serializer.deserialize(DillDataBase64().serialize({"events": []}))


@pytest.mark.integration
def test_the_hardened_endpoint_refuses_dill_arguments(tmp_path: Path) -> None:
    """The SDK's default (dill) data would be refused where allowed_serializers is set."""
    import uuid

    from globus_compute_common import messagepack
    from globus_compute_common.messagepack.message_types import Task
    from globus_compute_sdk.serialize import ComputeSerializer

    from relay.local_endpoint import hardened_options, run_task

    functions: dict[str, str] = {}
    function_id = LocalExecutor(1, functions=functions).register_source_code(
        "def run_worker(job):\n    return job\n", "run_worker"
    )
    dill = ComputeSerializer()
    payload = dill.pack_buffers([dill.serialize(()), dill.serialize({"job": {"x": 1}})])
    task_id = uuid.uuid4()
    body = messagepack.pack(Task(task_id=task_id, task_buffer=functions[function_id] + payload))
    result = run_task(task_id, body, str(tmp_path), hardened_options())
    assert result.is_error
    assert "DillDataBase64" in result.data and "allowed" in result.data.lower()


@pytest.mark.integration
def test_an_unlisted_function_fails_its_request_and_the_next_one_is_served(
    stub_factory: Callable[..., Stub],
) -> None:
    stub = stub_factory("vllm")
    functions: dict[str, str] = {}
    listed = LocalExecutor(1, functions=functions).register_source_code(
        worker_source(), "run_worker"
    )
    job = {
        "upstream": {"url": f"{stub.url}/v1"},
        "body": {"model": "m", "messages": [{"role": "user", "content": "allowed"}]},
        "relay": None,
    }

    def hardened() -> LocalExecutor:
        return LocalExecutor(1, functions=functions, allowed_functions=[listed])

    unlisted = Dispatcher(hardened, "the local executor", 30)  # registers its own copy
    good = Dispatcher(hardened, "the local executor", 30, function_id=listed)
    try:
        with pytest.raises(DispatchError, match="does not allow this worker function"):
            unlisted.submit(job).result(timeout=60)
        result = good.submit(job).result(timeout=60)
        assert result["events"][-1]["type"] == "done"
        with pytest.raises(DispatchError) as refused:
            unlisted.submit(job).result(timeout=60)  # a fresh executor, refused again
        assert refused.value.status_code == 503
    finally:
        unlisted.close()
        good.close()


def test_a_job_over_the_payload_limit_is_refused_before_submission() -> None:
    dispatcher = Dispatcher(lambda: LocalExecutor(1), "the local executor", 30, max_job_bytes=100)
    try:
        with pytest.raises(DispatchError, match="too large") as refused:
            dispatcher.submit({"body": {"messages": [{"content": "x" * 200}]}})
        assert refused.value.status_code == 413
    finally:
        dispatcher.close()

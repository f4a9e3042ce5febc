"""`tierwise hpc register` and `tierwise hpc doctor`: set up Globus Compute once, check it first.

register: the worker is registered once, by the same confidential client the proxy uses, and
its id goes into both configs (the proxy's `hpc.function_id`, the endpoint's
`allowed_functions`), so a hardened endpoint accepts it and no proxy registers its own copy.

doctor: before any user request does, checks in order that the environment is complete, the
service answers and the endpoint is online, and that *this* client may run the worker there
— by running it once, as a probe that calls no model — and reports the compute node's
Python and `websockets`. Each check says what to change when it fails.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Literal, TypeVar

from relay import globus
from relay.dispatch import WORKER_FUNCTION, worker_source

T = TypeVar("T")
Outcome = Literal["ok", "warn", "fail"]
IDENTITY_HINT = (
    "start the endpoint under the same GLOBUS_COMPUTE_CLIENT_ID/_SECRET as the proxy, or map "
    "this client's identity on a multi-user endpoint"
)


@dataclass(frozen=True)
class Check:
    outcome: Outcome
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.outcome:<4}  {self.name}: {self.detail}"


def register(timeout_s: float = 60.0) -> str:
    """Register the worker source with Globus Compute; returns its function id."""
    compute = _within(timeout_s, "connecting to Globus Compute", globus.client)
    return str(
        _within(
            timeout_s,
            "registering the worker",
            lambda: compute.register_source_code(worker_source(), WORKER_FUNCTION),
        )
    )


def doctor(endpoint_id: str, function_id: str | None, timeout_s: float = 120.0) -> Iterator[Check]:
    """Run the checks in order; stop at the first one whose failure hides the rest."""
    try:
        globus.check_environment()
    except globus.GlobusSetupError as exc:
        yield Check("fail", "environment", str(exc))
        return
    yield Check("ok", "environment", "client credentials set, SDK directory writable")
    try:
        compute = _within(timeout_s, "connecting to Globus Compute", globus.client)
        status = _within(
            timeout_s,
            "asking for the endpoint's status",
            lambda: globus.endpoint_status(compute, endpoint_id),
        )
    except Exception as exc:
        yield Check("fail", "service", f"{_reason(exc)}; check the credentials and network")
        return
    if status != "online":
        yield Check("fail", "endpoint", f"{endpoint_id} is {status}: start it on the cluster")
        return
    yield Check("ok", "endpoint", f"{endpoint_id} is online")
    if function_id:
        yield Check("ok", "function", f"using the registered worker {function_id}")
    else:
        yield Check(
            "warn",
            "function",
            "no function_id: each proxy registers its own copy, which an endpoint with "
            "allowed_functions refuses; run `tierwise hpc register` and set hpc.function_id",
        )
    yield from _probe(endpoint_id, function_id, timeout_s)


def _probe(endpoint_id: str, function_id: str | None, timeout_s: float) -> Iterator[Check]:
    """Run the worker once (it answers a probe without calling the model)."""
    executor, future = None, None
    try:
        executor = globus.EndpointExecutor(globus.GlobusOptions(endpoint_id))
        function = function_id or executor.register_source_code(worker_source(), WORKER_FUNCTION)
        future = executor.submit_to_registered_function(function, (), {"job": {"probe": True}})
        result = future.result(timeout=timeout_s)
    except TimeoutError:
        if getattr(future, "task_id", None) is None:
            yield Check("fail", "probe", f"the service did not accept the task in {timeout_s:g}s")
        else:
            yield Check(
                "fail",
                "probe",
                f"no result within {timeout_s:g}s: the endpoint may be busy, or this host "
                "cannot reach the result channel (AMQP; try amqp_port: 443)",
            )
        return
    except Exception as exc:
        yield Check("fail", "probe", _probe_failure(exc))
        return
    finally:
        if executor is not None:
            executor.shutdown(wait=False)
    node = (result or {}).get("probe") or {}
    yield Check(
        "ok", "probe", f"the worker ran on {node.get('host')} (Python {node.get('python')})"
    )
    yield _websockets_check(node.get("websockets"))


def _probe_failure(exc: BaseException) -> str:
    from globus_compute_sdk.errors import TaskExecutionFailed

    status = getattr(exc, "http_status", None)
    if str(getattr(exc, "code", "") or "") == "FUNCTION_NOT_PERMITTED":
        return "the endpoint refuses this function: add its id to the endpoint's allowed_functions"
    if status in (401, 403):
        return f"this client may not submit to the endpoint: {IDENTITY_HINT}"
    if isinstance(exc, TaskExecutionFailed):
        if "deserializ" in str(exc).lower():
            allowed = " and ".join(globus.ALLOWED_SERIALIZERS)
            return f"the endpoint refused our data: its allowed_serializers must include {allowed}"
        return f"the worker failed on the endpoint: {_reason(exc)}"
    if status is None:
        return (
            f"no result ({_reason(exc)}): this host may not reach the result channel "
            "(AMQP, port 5671; try amqp_port: 443)"
        )
    return f"{globus.refusal(exc).message} ({_reason(exc)})"


def _websockets_check(version: str | None) -> Check:
    if version is None:
        return Check(
            "warn",
            "websockets",
            "not installed where the worker runs: tokens arrive only with the final result; "
            "pip install 'websockets>=15' in the endpoint's worker environment",
        )
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major < 15:
        return Check(
            "warn",
            "websockets",
            f"{version} on the compute node; >= 15 is needed behind an HTTP proxy",
        )
    return Check("ok", "websockets", f"{version} on the compute node")


def _reason(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


def _within(timeout_s: float, what: str, fn: Callable[[], T]) -> T:
    """Run fn on a daemon thread; give up (leaving it to the SDK's retries) after timeout_s."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=f"hpc-admin-{what}", daemon=True).start()
    try:
        return future.result(timeout=timeout_s)
    except TimeoutError:
        raise TimeoutError(f"no answer within {timeout_s:g}s while {what}") from None


def main_register(timeout_s: float) -> tuple[int, list[str]]:
    """The register command's exit code and lines to print."""
    try:
        function_id = register(timeout_s)
    except Exception as exc:
        return 1, [f"tierwise hpc register: {_reason(exc)}"]
    return 0, [
        function_id,
        "",
        "Put this id in both configs:",
        f"  proxy (litellm_params.hpc):   function_id: {function_id}",
        f"  endpoint (config.yaml):       allowed_functions: [{function_id}]",
        "Register again (and update both) whenever tierwise's worker changes.",
    ]


def main_doctor(
    endpoint_id: str, function_id: str | None, timeout_s: float
) -> tuple[int, list[str]]:
    checks = list(doctor(endpoint_id, function_id, timeout_s))
    failed = any(check.outcome == "fail" for check in checks)
    return (1 if failed else 0), [check.line() for check in checks]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`tierwise hpc register|doctor` (the SDK loads only when one runs)."""
    hpc = sub.add_parser("hpc", help="HPC tier: register the worker, check Globus Compute")
    commands = hpc.add_subparsers(dest="hpc", required=True)
    reg = commands.add_parser(
        "register", help="register the worker once; prints the function id for both configs"
    )
    reg.add_argument("--timeout-s", type=float, default=60.0)
    reg.set_defaults(handler=lambda args: _print(*main_register(args.timeout_s)))
    doc = commands.add_parser(
        "doctor", help="check credentials, the endpoint, and that this client may run the worker"
    )
    doc.add_argument("--endpoint-id", required=True, help="the Globus Compute endpoint's UUID")
    doc.add_argument("--function-id", help="the id from `tierwise hpc register` (recommended)")
    doc.add_argument("--timeout-s", type=float, default=120.0, help="wait this long per step")
    doc.set_defaults(
        handler=lambda args: _print(
            *main_doctor(args.endpoint_id, args.function_id, args.timeout_s)
        )
    )


def _print(code: int, lines: list[str]) -> int:
    print("\n".join(lines), file=sys.stdout if code == 0 else sys.stderr)
    return code

"""Globus Compute glue: JSON both ways, the executor we build, and what the service's errors mean.

Hardened endpoints list `allowed_serializers` (the documented example: source text for code,
JSON for data) and `allowed_functions`. So tasks go out as PureSourceTextInspect + JSONData,
results come back as JSONData, and the proxy deserializes nothing else: an endpoint (or
anyone who can write results) never gets the proxy to unpickle. The function id can be
registered once (`tierwise hpc register`) and named in the config, so the id stays the one
listed in the endpoint's `allowed_functions`.

The SDK is imported lazily: the proxy imports this module even when it uses `dispatch: local`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from globus_compute_sdk import Executor
    from globus_compute_sdk.serialize import ComputeSerializer

CREDENTIAL_VARS = ("GLOBUS_COMPUTE_CLIENT_ID", "GLOBUS_COMPUTE_CLIENT_SECRET")
# What a hardened endpoint's `allowed_serializers` must list for our tasks (the documented
# example) and the one strategy our results use.
ALLOWED_SERIALIZERS = (
    "globus_compute_sdk.serialize.PureSourceTextInspect",
    "globus_compute_sdk.serialize.JSONData",
)
RESULT_SERIALIZERS = ("globus_compute_sdk.serialize.JSONData",)
# The service refuses a batch over 10 MB; one task per batch by default, with room for framing.
SERVICE_PAYLOAD_LIMIT = 10 * 1000 * 1000


class GlobusSetupError(Exception):
    """This host is not set up to use Globus Compute; the message says what to set."""


@dataclass(frozen=True)
class GlobusOptions:
    """How we build the SDK's Executor (fields named as its parameters); the defaults match
    the service's published limits."""

    endpoint_id: str
    amqp_port: int | None = None  # the result channel's port; None: the service's own
    # The service allows about 20 submissions per 10 s; the SDK's default (4 per 16 s)
    # added seconds to time to first token at one request a second. 8 per 4 s = 20 per 10 s.
    api_burst_limit: int = 8
    api_burst_window_s: int = 4
    # One task per batch: a batch the service refuses fails only its own request.
    batch_size: int = 1
    user_endpoint_config: dict[str, Any] | None = field(default=None, hash=False)
    resource_specification: dict[str, Any] | None = field(default=None, hash=False)


EXECUTOR_SETTINGS = tuple(f.name for f in fields(GlobusOptions) if f.name != "endpoint_id")


def json_serializer() -> ComputeSerializer:
    """Source text for code, JSON for data, and deserialize nothing else (no pickles)."""
    from globus_compute_sdk.serialize import ComputeSerializer, JSONData, PureSourceTextInspect

    return ComputeSerializer(
        strategy_code=PureSourceTextInspect(),
        strategy_data=JSONData(),
        allowed_deserializer_types=list(ALLOWED_SERIALIZERS),
    )


def check_environment() -> None:
    """Refuse before the SDK would start an interactive login or fail on a read-only home."""
    missing = [name for name in CREDENTIAL_VARS if not os.environ.get(name)]
    if missing:
        raise GlobusSetupError(
            f"set {' and '.join(missing)} (a Globus confidential client; the endpoint must run "
            "under the same client, or map its identity) in the proxy's environment"
        )
    user_dir = os.environ.get("GLOBUS_COMPUTE_USER_DIR") or os.path.expanduser("~/.globus_compute")
    probe = user_dir if os.path.isdir(user_dir) else os.path.dirname(user_dir.rstrip("/"))
    if not os.access(probe, os.W_OK):
        raise GlobusSetupError(
            f"the Globus Compute SDK needs a writable {user_dir}; set GLOBUS_COMPUTE_USER_DIR "
            "to a writable directory in the proxy's environment"
        )


def client() -> Any:
    """A Client logged in as the confidential client from the environment, JSON serializer."""
    check_environment()
    from globus_compute_sdk import Client

    compute = Client(do_version_check=False)
    compute.fx_serializer = json_serializer()
    return compute


def executor(options: GlobusOptions) -> Executor:
    """The SDK's Executor with our serializers, limits and endpoint settings."""
    compute = client()
    from globus_compute_sdk import Executor

    settings = {k: v for k, v in asdict(options).items() if k != "endpoint_id"}
    return Executor(
        endpoint_id=options.endpoint_id,
        client=compute,
        serializer=json_serializer(),
        result_serializers=list(RESULT_SERIALIZERS),
        **settings,  # GlobusOptions' fields are named as the Executor's parameters
    )


def endpoint_status(compute: Any, endpoint_id: str) -> str:
    """'online', 'offline', ... as the service reports it."""
    return str(compute.get_endpoint_status(endpoint_id).get("status") or "unknown")


class EndpointExecutor:
    """The SDK's Executor for one endpoint, plus that endpoint's status (relay.dispatch's
    TaskExecutor)."""

    def __init__(self, options: GlobusOptions) -> None:
        self.endpoint_id = options.endpoint_id
        self.sdk = executor(options)

    def register_source_code(self, source: str, function_name: str) -> str:
        return str(self.sdk.register_source_code(source, function_name))

    def submit_to_registered_function(
        self, function_id: str, args: Any = None, kwargs: dict[str, Any] | None = None
    ) -> Any:
        return self.sdk.submit_to_registered_function(function_id, args, kwargs)

    def endpoint_status(self) -> str:
        return endpoint_status(self.sdk.client, self.endpoint_id)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.sdk.shutdown(wait=wait, cancel_futures=cancel_futures)


@dataclass(frozen=True)
class Refusal:
    """What a failed submission means: a message safe for API callers, its HTTP status,
    whether trying again (on a fresh executor) can help, and the detail for the log."""

    message: str
    status_code: int
    retry: bool
    detail: str


def refusal(exc: BaseException) -> Refusal:
    """Classify an error the SDK raised while submitting a batch (GlobusAPIError or other)."""
    status = getattr(exc, "http_status", None)
    code = str(getattr(exc, "code", "") or "")
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, GlobusSetupError):
        return Refusal("the HPC tier is not set up on this proxy; see its log", 503, False, detail)
    if code == "FUNCTION_NOT_PERMITTED" or (status == 403 and "function" in str(exc).lower()):
        return Refusal(
            "the HPC endpoint does not allow this worker function; see `tierwise hpc register`",
            503,
            False,
            detail,
        )
    if status in (401, 403):
        return Refusal(
            "this proxy may not submit to the HPC endpoint; see `tierwise hpc doctor`",
            503,
            False,
            detail,
        )
    if status == 413 or "PAYLOAD_TOO_LARGE" in code:
        return Refusal("the request is too large for the HPC tier", 413, False, detail)
    if status == 429:
        return Refusal("the HPC tier is rate limited; try again shortly", 503, True, detail)
    return Refusal("the HPC tier could not take the request", 503, True, detail)

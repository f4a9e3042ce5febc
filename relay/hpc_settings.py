"""`litellm_params.hpc`: the settings of one HPC deployment, validated before any job starts.

Apart from the provider so that reading them (the docs generator, `tierwise up`) needs no
LiteLLM import.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from relay import globus
from relay.globus import GlobusOptions
from relay.worker import DEFAULT_KEY_ENV, LOOPBACK


class HpcSettings(BaseModel):
    """`litellm_params.hpc` of one deployment. api_base is vLLM's address *on the GPU node*."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    relay_url: str = Field(..., description="ws(s)://host:port of the relay, as the proxy sees it")
    worker_relay_url: str | None = Field(
        None, description="the relay as the GPU node sees it (default: relay_url)"
    )
    allow_insecure_relay: bool = Field(
        False, description="allow ws:// to a relay off loopback (development only)"
    )
    dispatch: Literal["globus", "local"] = Field(
        "globus", description="globus: Globus Compute; local: a process pool here (testing)"
    )
    endpoint_id: str | None = Field(None, description="Globus Compute endpoint UUID (globus)")
    function_id: str | None = Field(
        None,
        description="the worker registered once with `tierwise hpc register` (needed by "
        "endpoints with allowed_functions); unset: registered by each proxy process",
    )
    api_key_env: str = Field(
        DEFAULT_KEY_ENV, description="env var *on the endpoint* holding vLLM's key, if any"
    )
    user_endpoint_config: dict[str, Any] | None = Field(
        None, description="values for the endpoint's config template (partition, walltime...)"
    )
    resource_specification: dict[str, Any] | None = Field(
        None, description="per-task resources, e.g. {num_nodes: 1, ranks_per_node: 1}"
    )
    amqp_port: int | None = Field(
        None, ge=1, le=65535, description="result channel port (443 where 5671 is blocked)"
    )
    api_burst_limit: int = Field(8, ge=1, le=8, description="submissions per burst window")
    api_burst_window_s: int = Field(
        4, ge=1, le=32, description="burst window; 8 per 4 s = the service's 20 per 10 s"
    )
    batch_size: int = Field(
        1, ge=1, le=128, description="tasks per submission; a refused batch fails all of them"
    )
    local_workers: int = Field(4, ge=1, le=64, description="parallel tasks (dispatch: local)")
    relay_secret_env: str = Field(
        "TIERWISE_RELAY_SECRET", description="env var holding the relay's shared secret"
    )
    token_ttl_s: float = Field(3600, gt=0, description="lifetime of the relay tokens a job gets")
    sdk_timeout_s: float = Field(30, gt=0, description="deadline for each Globus SDK call")
    accept_timeout_s: float = Field(
        60, gt=0, description="deadline for the service to accept the submitted task"
    )
    start_timeout_s: float = Field(
        600, gt=0, description="first token by then (batch queue wait); the job expires then"
    )
    generation_timeout_s: float | None = Field(
        None, gt=0, description="time to generate after the start (default: the call's timeout)"
    )
    connect_timeout_s: float = Field(5, gt=0, description="deadline for one relay connection")
    reconnect_window_s: float = Field(
        30, ge=0, description="how long a dropped relay link is retried before the job fails"
    )
    drain_s: float = Field(2, ge=0, description="worker's wait for the relay after the end")

    @model_validator(mode="after")
    def _check(self) -> HpcSettings:
        for name in ("relay_url", "worker_relay_url"):
            value = getattr(self, name)
            if value is None:
                continue
            if not value.startswith(("ws://", "wss://")):
                raise ValueError(f"{name} must start with ws:// or wss:// (got {value!r})")
            host = urlsplit(value).hostname or ""
            if value.startswith("ws://") and host not in LOOPBACK and not self.allow_insecure_relay:
                raise ValueError(
                    f"{name} must be wss:// off loopback (tokens and prompts would cross the "
                    "network in clear); set allow_insecure_relay: true only for development"
                )
        if self.dispatch == "globus" and not self.endpoint_id:
            raise ValueError("dispatch 'globus' needs endpoint_id (the endpoint's UUID)")
        return self

    def globus_options(self) -> GlobusOptions:
        chosen = self.model_dump(include=set(globus.EXECUTOR_SETTINGS))
        return GlobusOptions(endpoint_id=str(self.endpoint_id), **chosen)

"""The real Globus Compute SDK against a stand-in web service and a hardened endpoint.

The provider runs in this process with `dispatch: globus`; the SDK's Executor talks to the
stand-in (tests/servers/globus_offline.py), which runs each accepted task through the
endpoint's task runner with the documented allow-lists, and the worker streams through a
real relay to the stand-in vLLM. The stand-in's result channel refuses connections (as
where AMQP is blocked), so every answer here arrives through the relay alone; prompts
carrying `FAULT:<status>x<n>` make the service refuse their submissions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litellm.llms.custom_llm import CustomLLMError

from relay import admin
from relay.provider import HpcProvider
from tests.servers import Service, Stub, start_stub
from tests.servers.globus_offline import SDK_PORT, StandInService, offline_env, sdk_port_free
from tests.servers.relay import SECRET, start_relay, ws_url

pytestmark = pytest.mark.integration

ENDPOINT = "00000000-0000-4000-8000-000000000002"


@dataclass
class Stack:
    service: StandInService
    relay: Service
    stub: Stub
    function_id: str

    def settings(self, **overrides: Any) -> dict[str, Any]:
        return {
            "relay_url": ws_url(self.relay),
            "dispatch": "globus",
            "endpoint_id": ENDPOINT,
            "function_id": self.function_id,
            "sdk_timeout_s": 30,
            "accept_timeout_s": 120,
            "start_timeout_s": 120,
            **overrides,
        }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not sdk_port_free():
        pytest.skip(f"127.0.0.1:{SDK_PORT} is taken; the SDK's local environment needs it")
    tmp = tmp_path_factory.mktemp("globus-service")
    patch = pytest.MonkeyPatch()
    for name, value in {**offline_env(tmp / "sdk"), "TIERWISE_RELAY_SECRET": SECRET}.items():
        patch.setenv(name, value)
    stub = start_stub("vllm", tmp, ["stub-model"])
    relay = start_relay(tmp)
    try:
        with StandInService(tmp / "endpoint") as service:
            code, lines = admin.main_register(60)  # `tierwise hpc register`
            assert code == 0, lines
            function_id = lines[0]
            service.allowed_functions = {function_id}  # the endpoint's allowed_functions
            yield Stack(service, relay, stub, function_id)
    finally:
        relay.stop()
        stub.stop()
        patch.undo()


async def _ask(provider: HpcProvider, stack: Stack, content: str, **settings: Any) -> str:
    """One streamed request through the provider; the answer's text, or the error's status
    and message as 'status: message'."""
    call = {
        "model": "stub-model",
        "messages": [{"role": "user", "content": content}],
        "api_base": f"{stack.stub.url}/v1",
        "optional_params": {"hpc": stack.settings(**settings)},
        "timeout": 120,
    }
    try:
        return "".join([chunk["text"] async for chunk in provider.astreaming(**call)])
    except CustomLLMError as exc:
        return f"{exc.status_code}: {exc.message}"


def test_refused_submissions_fail_only_their_own_request(stack: Stack) -> None:
    provider = HpcProvider()
    prompts = [
        "plain question one",
        "FAULT:413x1 too large for the service",
        "plain question two",
        # Refused more often than the SDK retries (6 tries): we try once more, fresh.
        "FAULT:429x6 busy service",
        "FAULT:503x99 broken service",
        "plain question three",
    ]

    async def run() -> list[str]:
        return list(await asyncio.gather(*(_ask(provider, stack, p) for p in prompts)))

    answers = dict(zip(prompts, asyncio.run(run()), strict=True))
    for prompt in ("plain question one", "plain question two", "plain question three"):
        assert answers[prompt] == f"[vllm] {prompt}"
    assert answers["FAULT:429x6 busy service"] == "[vllm] FAULT:429x6 busy service"
    assert answers["FAULT:413x1 too large for the service"] == (
        "413: HPC tier unavailable: the request is too large for the HPC tier"
    )
    assert answers["FAULT:503x99 broken service"] == (
        "503: HPC tier unavailable: the HPC tier could not take the request"
    )
    refused = [status for status in stack.service.submissions if status != 200]
    assert {413, 429, 503} <= set(refused)
    # The executor was rebuilt after each refusal, and still serves.
    assert asyncio.run(_ask(provider, stack, "after the storm")) == "[vllm] after the storm"


def test_a_function_missing_from_allowed_functions_is_refused_with_advice(stack: Stack) -> None:
    provider = HpcProvider()
    # No function_id: this proxy registers its own copy, which the endpoint does not list.
    answer = asyncio.run(_ask(provider, stack, "who may run?", function_id=None))
    assert answer == (
        "503: HPC tier unavailable: the HPC endpoint does not allow this worker function; "
        "see `tierwise hpc register`"
    )
    assert str(ENDPOINT) not in answer  # no internal details for API callers


def test_doctor_passes_identity_and_reports_the_lost_result_channel(stack: Stack) -> None:
    code, lines = admin.main_doctor(ENDPOINT, stack.function_id, timeout_s=90)
    text = "\n".join(lines)
    assert code == 1, text
    assert f"ok    endpoint: {ENDPOINT} is online" in text
    assert f"ok    function: using the registered worker {stack.function_id}" in text
    assert "fail  probe:" in text and "result channel" in text and "amqp_port" in text


def test_doctor_stops_at_an_offline_endpoint(stack: Stack) -> None:
    stack.service.endpoint_status = "offline"
    try:
        code, lines = admin.main_doctor(ENDPOINT, stack.function_id, timeout_s=30)
    finally:
        stack.service.endpoint_status = "online"
    assert code == 1
    assert lines[-1] == f"fail  endpoint: {ENDPOINT} is offline: start it on the cluster"


def test_doctor_names_missing_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GLOBUS_COMPUTE_CLIENT_SECRET", raising=False)
    monkeypatch.setenv("GLOBUS_COMPUTE_CLIENT_ID", "00000000-0000-4000-8000-000000000001")
    code, lines = admin.main_doctor(ENDPOINT, None, timeout_s=5)
    assert code == 1
    assert lines[0].startswith("fail  environment: set GLOBUS_COMPUTE_CLIENT_SECRET")


def test_endpoint_settings_and_json_data_reach_the_service(stack: Stack) -> None:
    provider = HpcProvider()
    settings = {
        "user_endpoint_config": {"partition": "gpu", "walltime": "00:10:00"},
        "resource_specification": {"num_nodes": 1},
    }
    answer = asyncio.run(_ask(provider, stack, "configured request", **settings))
    assert answer == "[vllm] configured request"
    (batch,) = [b for b in stack.service.batches if "configured request" in str(b)]
    assert batch["user_endpoint_config"] == settings["user_endpoint_config"]
    assert batch["resource_specification"] == settings["resource_specification"]
    assert batch["result_serializers"] == ["globus_compute_sdk.serialize.concretes.JSONData"]
    (payload,) = batch["tasks"][stack.function_id]
    assert "11\n" in payload  # the job travels as JSON data, which the endpoint allows
    assert "api_key" not in payload.replace("api_key_env", "")  # no model-server key

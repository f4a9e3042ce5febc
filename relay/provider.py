"""LiteLLM custom provider `hpc/<model>`: run a chat request on a campus GPU, stream it back.

Register it in the proxy's config.yaml::

    litellm_settings:
      custom_provider_map:
        - {provider: hpc, custom_handler: relay.provider.hpc_provider}

and give each deployment its settings under `litellm_params.hpc` (see HpcSettings). The
request goes to a worker started on the GPU node (Globus Compute, or a local executor for
development); tokens come back through the WebSocket relay, and the task's final result
covers anything the relay could not deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from types import FrameType
from typing import Any, TypeVar

import httpx
from litellm import CustomLLM
from litellm.llms.custom_llm import CustomLLMError
from litellm.types.utils import Choices, GenericStreamingChunk, Message, ModelResponse, Usage
from pydantic import ValidationError

from relay import globus, protocol
from relay.consumer import HpcStream, StreamError, StreamTimeouts
from relay.dispatch import Dispatcher, DispatchError, TaskExecutor
from relay.hpc_settings import HpcSettings
from relay.local_endpoint import LocalExecutor

T = TypeVar("T")
SETTINGS_KEY = "hpc"
# Request fields the worker sets itself, or that must not reach the model server.
DROPPED_PARAMS = frozenset({SETTINGS_KEY, "stream", "stream_options"})


def parse_settings(raw: Any) -> HpcSettings:
    """Validate `litellm_params.hpc`; CustomLLMError(400) names each bad key and what fits."""
    if not isinstance(raw, dict):
        raise CustomLLMError(
            400, "litellm_params.hpc is missing: give it at least relay_url (and endpoint_id)"
        )
    try:
        return HpcSettings.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(hpc)"
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(HpcSettings.model_fields)
                lines.append(f"litellm_params.hpc.{key}: unknown key; allowed: {allowed}")
            else:
                message = str(err["msg"]).removeprefix("Value error, ")
                lines.append(f"litellm_params.hpc.{key}: {message}")
        raise CustomLLMError(400, "; ".join(lines)) from None


class HpcProvider(CustomLLM):
    """completion / acompletion / streaming / astreaming over the relay + Globus Compute."""

    def __init__(self) -> None:
        super().__init__()
        self._dispatchers: dict[tuple[Any, ...], Dispatcher] = {}
        self._lock = threading.Lock()

    # -- LiteLLM entry points ---------------------------------------------------------------

    async def astreaming(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> AsyncIterator[GenericStreamingChunk]:
        async for chunk in self._chunks(kwargs):
            yield chunk

    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        response: ModelResponse = kwargs["model_response"]
        chunks = await _unless_client_leaves(_client_request(), self._collect(kwargs))
        return _fill_response(response, kwargs["model"], chunks)

    async def _collect(self, call: dict[str, Any]) -> list[GenericStreamingChunk]:
        return [c async for c in self._chunks(call)]

    def streaming(self, *args: Any, **kwargs: Any) -> Iterator[GenericStreamingChunk]:
        return _iterate_in_private_loop(self._chunks(kwargs))

    def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        chunks = list(_iterate_in_private_loop(self._chunks(kwargs)))
        return _fill_response(kwargs["model_response"], kwargs["model"], chunks)

    # -- one request --------------------------------------------------------------------------

    async def _chunks(self, call: dict[str, Any]) -> AsyncIterator[GenericStreamingChunk]:
        optional = dict(call.get("optional_params") or {})
        settings = parse_settings(optional.get(SETTINGS_KEY))
        secret = _secret(settings)
        api_base = call.get("api_base")
        if not api_base:
            raise CustomLLMError(
                400, "set litellm_params.api_base to the model server's URL as the GPU node sees it"
            )
        if call.get("api_key"):
            raise CustomLLMError(
                400,
                "remove litellm_params.api_key from hpc deployments: the key would travel in "
                f"every task; set {settings.api_key_env} in the endpoint's environment instead",
            )
        channel = secrets.token_urlsafe(18)
        body = {k: v for k, v in optional.items() if k not in DROPPED_PARAMS}
        body["model"] = call["model"]
        body["messages"] = json.loads(json.dumps(call["messages"], default=_jsonable))
        generation_s = settings.generation_timeout_s or _seconds(call.get("timeout"), 600.0)
        now = time.time()
        job = {
            "upstream": {
                "url": api_base,
                "api_key_env": settings.api_key_env,
                "timeout_s": generation_s,
            },
            "body": body,
            "relay": {
                "url": (settings.worker_relay_url or settings.relay_url).rstrip("/")
                + protocol.channel_path(channel, "produce"),
                "token": protocol.mint_token(secret, channel, "produce", settings.token_ttl_s),
                "connect_timeout_s": settings.connect_timeout_s,
                "reconnect_window_s": settings.reconnect_window_s,
                "drain_s": settings.drain_s,
                "allow_insecure": settings.allow_insecure_relay,
            },
            # The worker exits unused if it starts after we stopped waiting for it.
            "deadline": {
                "start_by": now + settings.start_timeout_s,
                "finish_by": now + settings.start_timeout_s + generation_s,
            },
        }
        dispatcher = self._dispatcher(settings)
        logging_obj = call.get("logging_obj")
        if logging_obj is not None:
            # The hand-off, as LiteLLM's own providers mark it: from here a failure is the
            # tier's (tierwise/faults.py), before it the request's.
            logging_obj.pre_call(input=call["messages"], api_key=None)
        try:
            future = await asyncio.to_thread(dispatcher.submit, job)
        except DispatchError as exc:
            raise CustomLLMError(exc.status_code, f"HPC tier unavailable: {exc}") from None
        stream = HpcStream(
            settings.relay_url,
            channel,
            protocol.mint_token(secret, channel, "consume", settings.token_ttl_s),
            future,
            StreamTimeouts(
                connect_s=settings.connect_timeout_s,
                reconnect_window_s=settings.reconnect_window_s,
                accept_s=settings.accept_timeout_s,
                start_s=settings.start_timeout_s,
                total_s=settings.start_timeout_s + generation_s,
            ),
        )
        usage: dict[str, Any] | None = None
        try:
            async for event in stream.events():
                if event["type"] == "token":
                    for chunk in _token_chunks(event.get("delta") or {}):
                        yield chunk
                elif event["type"] == "usage":
                    usage = event.get("usage")
                elif event["type"] == "done":
                    yield _chunk(
                        finished=True,
                        finish_reason=str(event.get("finish_reason") or "stop"),
                        usage=_usage(usage),
                    )
        except StreamError as exc:
            raise CustomLLMError(exc.status_code, str(exc)) from None

    def _dispatcher(self, settings: HpcSettings) -> Dispatcher:
        key = (
            settings.dispatch,
            settings.globus_options() if settings.dispatch == "globus" else None,
            settings.function_id,
            settings.local_workers,
            settings.sdk_timeout_s,
        )
        with self._lock:
            dispatcher = self._dispatchers.get(key)
            if dispatcher is None:
                dispatcher = _new_dispatcher(settings)
                self._dispatchers[key] = dispatcher
            return dispatcher


def _client_request() -> Any | None:
    """The proxy's HTTP request this call answers (a Starlette Request), if there is one.

    LiteLLM hands a custom provider no handle on its client, and the proxy keeps awaiting a
    non-streaming call after the client has gone. Its endpoint awaits us, so its frame is on
    our stack: take the first `request` local that can tell a disconnect.
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("request")
        if callable(getattr(candidate, "is_disconnected", None)):
            return candidate
        frame = frame.f_back
    return None


async def _unless_client_leaves(
    request: Any | None, work: Coroutine[Any, Any, T], every_s: float = 0.25
) -> T:
    """Await `work`; if the client disconnects first, cancel it (which cancels the HPC job
    and aborts the model server's generation) and raise CustomLLMError(499)."""
    task = asyncio.ensure_future(work)
    if request is None:
        return await task
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=every_s)
            if not task.done() and await request.is_disconnected():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise CustomLLMError(499, "the client disconnected; the HPC job was cancelled")
    finally:
        if not task.done():  # we were cancelled ourselves
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return task.result()


def _new_dispatcher(settings: HpcSettings) -> Dispatcher:
    if settings.dispatch == "local":
        workers = settings.local_workers
        functions: dict[str, str] = {}  # the "service's" registry outlives an executor

        def local() -> TaskExecutor:
            return LocalExecutor(workers, functions=functions)

        return Dispatcher(local, "the local executor", settings.sdk_timeout_s)
    options = settings.globus_options()

    def remote() -> TaskExecutor:
        return globus.EndpointExecutor(options)

    return Dispatcher(
        remote,
        f"Globus Compute (endpoint {options.endpoint_id})",
        settings.sdk_timeout_s,
        function_id=settings.function_id,
    )


def _secret(settings: HpcSettings) -> bytes:
    value = os.environ.get(settings.relay_secret_env, "")
    try:
        return protocol.check_secret(value.encode())
    except ValueError as exc:
        raise CustomLLMError(
            500, f"{settings.relay_secret_env} in the proxy's environment: {exc}"
        ) from None


def _seconds(timeout: Any, default: float) -> float:
    if isinstance(timeout, int | float) and timeout > 0:
        return float(timeout)
    if isinstance(timeout, httpx.Timeout) and timeout.read:
        return float(timeout.read)
    return default


def _jsonable(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump()
    raise TypeError(f"cannot send a {type(value).__name__} in a message")


def _chunk(
    text: str = "",
    tool_use: Any = None,
    finished: bool = False,
    finish_reason: str = "",
    usage: Any = None,
) -> GenericStreamingChunk:
    return {
        "text": text,
        "tool_use": tool_use,
        "is_finished": finished,
        "finish_reason": finish_reason,
        "usage": usage,
        "index": 0,
    }


def _token_chunks(delta: dict[str, Any]) -> list[GenericStreamingChunk]:
    """LiteLLM chunks for one forwarded delta: its text, then one per tool-call delta."""
    out = [_chunk(text=delta["content"])] if delta.get("content") else []
    for call in delta.get("tool_calls") or []:
        function = call.get("function") or {}
        out.append(
            _chunk(
                tool_use={
                    "id": call.get("id"),
                    "type": "function",
                    "function": {
                        "name": function.get("name"),
                        "arguments": function.get("arguments") or "",
                    },
                    "index": int(call.get("index") or 0),
                }
            )
        )
    return out


def _usage(raw: Any) -> Any:
    if not isinstance(raw, dict):
        return None
    prompt, completion = int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(raw.get("total_tokens") or prompt + completion),
    }


def _fill_response(
    response: ModelResponse, model: str, chunks: list[GenericStreamingChunk]
) -> ModelResponse:
    """Assemble a non-streaming answer: text, tool calls merged by index, usage, finish."""
    text = "".join(c["text"] for c in chunks)
    calls: dict[int, dict[str, Any]] = {}
    finish, usage = "stop", None
    for chunk in chunks:
        tool = chunk.get("tool_use")
        if tool:
            slot = calls.setdefault(
                tool["index"],
                {"id": None, "type": "function", "function": {"name": None, "arguments": ""}},
            )
            slot["id"] = slot["id"] or tool.get("id")
            slot["function"]["name"] = slot["function"]["name"] or tool["function"].get("name")
            slot["function"]["arguments"] += tool["function"].get("arguments") or ""
        if chunk["is_finished"]:
            finish, usage = chunk["finish_reason"] or finish, chunk["usage"]
    message = Message(
        content=text or None,
        role="assistant",
        tool_calls=[calls[i] for i in sorted(calls)] or None,
    )
    response.choices = [Choices(finish_reason=finish, index=0, message=message)]
    response.model = model
    if usage:
        response.usage = Usage(**usage)  # type: ignore[attr-defined]
    return response


def _iterate_in_private_loop(
    agen: AsyncIterator[GenericStreamingChunk],
) -> Iterator[GenericStreamingChunk]:
    """Drive an async generator from sync code (litellm.completion) on its own event loop."""
    loop = asyncio.new_event_loop()
    iterator = agen.__aiter__()
    try:
        while True:
            try:
                yield loop.run_until_complete(iterator.__anext__())
            except StopAsyncIteration:
                return
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            loop.run_until_complete(aclose())
        loop.close()


hpc_provider = HpcProvider()

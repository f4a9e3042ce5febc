"""The LiteLLM proxy callback: routes the `auto` group by tierwise, leaves the rest alone.

Registered from the proxy's config.yaml as `litellm_settings: callbacks: [litellm_plugin.tierwise]`.
Hook by hook (LiteLLM only calls hooks defined on the registered class itself):

- async_pre_call_hook: parse the request, run the pre-route steps, decide (awaiting the
  opt-in LLM judge when the score sits near a band edge), store the
  decision in the request metadata; malformed input -> HTTP 400 with tierwise's reason;
  any other error inside tierwise -> the default tier (fail open, logged, counted).
- async_filter_deployments: narrow `auto`'s healthy deployments to the decided tier, or the
  next tier of the fallback chain when this request already failed there.
- async_pre_call_deployment_hook: the per-attempt steps (context fitting) for the tier called.
- async_post_call_response_headers_hook: x-tierwise-tier / -score / -reason.
- async_log_success_event / async_post_call_failure_deployment_hook: feed the SLA latency EMA
  (time to first token for streams) and the health breaker.
- async_post_call_streaming_iterator_hook: a stream that dies mid-way is a tier fault too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger

from litellm_plugin import attempts, feedback
from litellm_plugin import cache as answer_cache
from litellm_plugin.engine import Engine, tier_of
from litellm_plugin.loop_lag import LoopLag
from litellm_plugin.metadata import metadata_of, record_in
from litellm_plugin.settings import TIER_KEY, setup_from_proxy_config
from litellm_plugin.steps import Attempt, ProxyCall
from litellm_plugin.tier_call import is_internal
from tierwise.adapt.scorer import ADAPT_NOTE
from tierwise.faults import Fault, caller_of
from tierwise.request import RequestError
from tierwise.rules import RoutingError

log = logging.getLogger("tierwise.litellm")

CHAT_CALL_TYPES = frozenset({"completion", "acompletion"})


class TierwiseHandler(CustomLogger):
    """One instance per proxy process; every hook returns at once for other model groups."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.lag = LoopLag()

    @classmethod
    def from_proxy_config(cls, proxy_config: dict[str, Any], where: str) -> TierwiseHandler:
        """Validate the config (ConfigError names the key) and start the signal sources."""
        engine = Engine(setup_from_proxy_config(proxy_config, where))
        engine.start()
        if engine.cache is not None:
            answer_cache.install(engine, engine.cache)
        return cls(engine)

    # -- before the call -------------------------------------------------------------------

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any
    ) -> dict | None:
        engine = self.engine
        if not engine.is_ours(data.get("model")):
            return None
        self.lag.ensure_running()
        if call_type not in CHAT_CALL_TYPES:
            raise HTTPException(
                status_code=400,
                detail={"error": f"tierwise: {engine.unsupported_endpoint(str(call_type))}"},
            )
        metadata = metadata_of(data)
        if metadata is None:
            metadata = data["metadata"] = {}
        try:
            request = engine.request_view(data, metadata)
        except RequestError as exc:
            raise _bad_request(exc) from None
        call = ProxyCall(data=data, request=request, scope=request.scope)
        fail_open = False
        try:
            await self._run_steps("before_route", call)
            if call.skip_routing:
                decision = engine.default_decision("answered before routing by a pre-route step")
            else:
                # Off the event loop: scoring runs on a thread (native code, GIL released)
                # and an LLM judge near a band edge is awaited, never waited on.
                decision = await engine.adecide(request)
        except (RequestError, RoutingError) as exc:
            raise _bad_request(exc) from None
        except Exception as exc:  # tierwise broke: serve the default tier instead
            decision, fail_open = engine.fail_open(exc, "pre-call"), True
        call.decision = decision
        await self._run_steps("after_route", call)
        record = engine.record_of(decision, fail_open=fail_open, caller=caller_of(request.scope))
        engine.attach(metadata, record)
        if engine.cache is not None:
            answer_cache.install(engine, engine.cache)
        if engine.cache is not None or ADAPT_NOTE in request.memo:
            engine.remember_memo(data.get("litellm_call_id"), request.memo)
        self._ensure_retries(data, record)
        return data

    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list,
        messages: Any,
        request_kwargs: dict | None = None,
        parent_otel_span: Any = None,
    ) -> list[dict]:
        if not self.engine.is_ours(model):
            return healthy_deployments
        try:
            return self.engine.select(healthy_deployments, request_kwargs)
        except Exception as exc:
            self.engine.fail_open(exc, "deployment filter")
            default = self.engine.setup.default_tier
            return [d for d in healthy_deployments if tier_of(d) == default] or healthy_deployments

    async def async_pre_call_deployment_hook(
        self, kwargs: dict[str, Any], call_type: Any
    ) -> dict | None:
        record = record_in(metadata_of(kwargs))
        if record is not None:
            attempts.start(kwargs)
        if not self.engine.steps:
            return None
        info = kwargs.get("model_info") or (metadata_of(kwargs) or {}).get("model_info") or {}
        tier_name = info.get(TIER_KEY) if isinstance(info, dict) else None
        if record is None or not isinstance(tier_name, str):
            return None
        try:
            tier = self.engine.setup.config.tier(tier_name)
        except KeyError:
            return None
        attempt = Attempt(kwargs=kwargs, tier=tier, decision=record)
        for step in self.engine.steps:
            try:
                await step.before_attempt(attempt)
            except Exception as exc:
                self.engine.fail_open(exc, f"step {step.name}.before_attempt")
        return kwargs

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: dict) -> None:
        """LiteLLM hands the request to the provider now: the attempt counts as sent."""
        try:
            params = kwargs.get("litellm_params") or {}
            if record_in(params.get("metadata")) is not None:
                attempts.mark_sent(kwargs, self.lag.total_ms())
        except Exception:
            log.exception("tierwise: marking an attempt as sent failed (ignored)")

    # -- after the call --------------------------------------------------------------------

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict
    ) -> AsyncGenerator[Any, None]:
        """Pass the stream through, noting the loop lag when its first chunk was read, and
        count a stream that dies mid-way against its tier.

        A stream's death surfaces here and nowhere else: the router returned the stream long
        ago, so no deployment failure hook runs. Only an exception out of the upstream's
        iterator counts (LiteLLM raises one when the body breaks off: an incomplete chunked
        body, a reset, a read timeout); a client that leaves is a GeneratorExit or a
        cancellation, which are not Exceptions and count nothing.
        """
        record = record_in(metadata_of(request_data))
        first = record is not None
        try:
            async for item in response:
                if first:
                    attempts.mark_first(request_data, self.lag.total_ms())
                    first = False
                yield item
        except Exception as exc:
            if record is not None:
                self._stream_died(record, exc)
            raise

    async def async_post_call_response_headers_hook(
        self,
        data: dict,
        user_api_key_dict: Any,
        response: Any,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, Any] | None = None,
    ) -> dict[str, str] | None:
        record = record_in(metadata_of(data))
        if record is None:
            return None
        if response is None:  # the request failed: no tier served it
            return self.engine.headers(record, None, failed=True)
        served = (litellm_call_info or {}).get("model_info", {}).get(TIER_KEY)
        return self.engine.headers(record, served if isinstance(served, str) else None)

    async def async_log_success_event(
        self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        try:
            params = kwargs.get("litellm_params") or {}
            metadata = params.get("metadata") or {}
            if not self.engine.is_ours(metadata.get("model_group")) or params.get("mock_response"):
                return
            if is_internal(metadata):
                return  # tierwise's own summarizer or judge call: not a user request
            tier = (params.get("model_info") or {}).get(TIER_KEY)
            if not isinstance(tier, str):
                return
            payload = kwargs.get("standard_logging_object") or {}
            cache_hit = bool(payload.get("cache_hit") or kwargs.get("cache_hit"))
            ttft_ms = attempts.ttft_ms(kwargs, start_time, end_time, self.lag.total_ms())
            caller = (record_in(metadata) or {}).get("caller")
            if not cache_hit:  # a replay says nothing of the tier
                deployment = str((params.get("model_info") or {}).get("id") or tier)
                self.engine.observe_success(tier, ttft_ms, caller, deployment)
            usage = payload.get("total_tokens") is not None
            self.engine.log_request(
                metadata,
                tier=tier,
                model=str(kwargs.get("model") or ""),
                ok=True,
                latency_ms=attempts.ms_between(start_time, end_time),
                ttft_ms=ttft_ms,
                tokens_in=payload.get("prompt_tokens") if usage else None,
                tokens_out=int(payload.get("completion_tokens") or 0),
                cache_hit=cache_hit,
                cost_usd=payload.get("response_cost"),
                request_id=feedback.response_id(response_obj),
                sketch=feedback.sketch_of_call(self.engine, kwargs),
            )
        except Exception:
            log.exception("tierwise: recording a success failed (ignored)")

    async def async_post_call_failure_hook(
        self,
        request_data: dict,
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> Any:
        """The request failed for good: one failed row in the decision log, and a request
        fault goes back to its caller as the 4xx it is (LiteLLM would say 500)."""
        try:
            metadata = metadata_of(request_data) or {}
            record = record_in(metadata)
            if not self.engine.is_ours(request_data.get("model")) or record is None:
                return None
            error = f"{type(original_exception).__name__}: {original_exception}"[:300]
            self.engine.log_request(metadata, tier=None, ok=False, error=error)
            fault = record.get("fault")
            if isinstance(fault, dict):
                return HTTPException(
                    status_code=int(fault["status"]),
                    detail={"error": f"tierwise: request refused: {fault['error']}"},
                )
        except Exception:
            log.exception("tierwise: recording a failed request failed (ignored)")
        return None

    async def async_post_call_failure_deployment_hook(
        self,
        request_data: Any,
        exception: Exception,
        call_type: Any,
        fallback_depth: int | None = None,
    ) -> None:
        try:
            metadata = metadata_of(request_data) or {}
            if not self.engine.is_ours(metadata.get("model_group")):
                return
            tier = (metadata.get("model_info") or {}).get(TIER_KEY)
            record = record_in(metadata)
            if not isinstance(tier, str) or record is None:
                return
            verdict = attempts.judge(request_data, exception)
            if verdict.fault is Fault.REQUEST:
                # Remembered on the request: no fallback walk, and the caller's 4xx.
                record["fault"] = {"status": verdict.status, "error": verdict.error[:500]}
                attempts.spare_from_cooldown(request_data)
            error = f"{type(exception).__name__}: {verdict.error}"[:200]
            self.engine.observe_failure(tier, verdict.fault, error, record.get("caller"))
        except Exception:
            log.exception("tierwise: recording a failure failed (ignored)")

    def _stream_died(self, record: dict[str, Any], exc: Exception) -> None:
        """A tier fault on the tier that was streaming (the last one tried); a cache replay
        says nothing of a tier."""
        try:
            if record.get("cache"):
                return
            tried = record.get("attempts") or [record.get("tier")]
            tier = tried[-1]
            if not isinstance(tier, str):
                return
            verdict = attempts.judge_mid_stream(exc)
            error = f"stream died mid-way: {type(exc).__name__}: {verdict.error}"[:200]
            log.warning("tierwise: tier %s: %s; counted as a tier fault", tier, error)
            self.engine.observe_failure(tier, verdict.fault, error, record.get("caller"))
        except Exception:
            log.exception("tierwise: recording a mid-stream death failed (ignored)")

    # -- helpers ---------------------------------------------------------------------------

    async def _run_steps(self, hook: str, call: ProxyCall) -> None:
        for step in self.engine.steps:
            try:
                await getattr(step, hook)(call)
            except (RequestError, RoutingError):
                raise
            except Exception as exc:
                self.engine.fail_open(exc, f"step {step.name}.{hook}")

    def _ensure_retries(self, data: dict, record: dict[str, Any]) -> None:
        """Enough LiteLLM retries for each candidate deployment to be tried once: a retry
        re-enters async_filter_deployments, which moves on down the fallback chain."""
        needed = self.engine.attempts_needed(record)
        current = data.get("num_retries")
        if not isinstance(current, int):
            current = _router_num_retries()
        if needed > current:
            data["num_retries"] = needed


def _bad_request(exc: Exception) -> HTTPException:
    return HTTPException(status_code=400, detail={"error": f"tierwise: {exc}"})


def _router_num_retries() -> int:
    try:
        from litellm.proxy import proxy_server
    except ImportError:
        return 0
    value = getattr(proxy_server.llm_router, "num_retries", 0)
    return value if isinstance(value, int) else 0


_handler: TierwiseHandler | None = None


def proxy_handler() -> TierwiseHandler:
    """The process's handler, built from the running proxy's own config on first use."""
    global _handler
    if _handler is None:
        from litellm.proxy import proxy_server

        where = str(proxy_server.user_config_file_path or "config.yaml")
        state = dict(proxy_server.proxy_config.get_config_state())
        _handler = TierwiseHandler.from_proxy_config(state, where)
        engine = _handler.engine
        feedback.install(engine)
        config = engine.setup.config
        tiers = ", ".join(t.name for t in config.ranked_tiers)
        judge = f", LLM judge on {config.judge_tier.name}" if config.scoring.judge.enabled else ""
        # A start-up line in the proxy's own output: what is routed, over what, scored how.
        print(
            f"tierwise: routing model group {engine.settings.model_group!r} over tiers {tiers} "
            f"(scorer {engine.router.scorer.name}{judge})",
            file=sys.stderr,
            flush=True,
        )
    return _handler

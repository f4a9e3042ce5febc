"""tierwise for Python users of `litellm.Router` (no proxy): a CustomRoutingStrategyBase.

    router = litellm.Router(model_list=[...deployments of "auto" tagged tierwise_tier...])
    TierwiseStrategy.install(router)              # optional: tierwise={...} section
    await router.acompletion(model="auto", messages=[...])

LiteLLM's `set_custom_routing_strategy` replaces deployment selection for *every* model
group, so this strategy hands every other group straight back to the router's original
selection. For `auto` it decides once per request (stored in the request metadata like the
proxy plugin does), lets the router compute the healthy deployments (cooldowns, filters,
and tierwise's own filter narrowing them to the tier), then picks one at random, as
LiteLLM's default simple-shuffle does. The handler it registers in `litellm.callbacks`
feeds the SLA EMA and health breaker from real calls, as in the proxy.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import litellm
from litellm.router import Router
from litellm.types.router import CustomRoutingStrategyBase

from litellm_plugin.engine import Engine
from litellm_plugin.handler import TierwiseHandler
from litellm_plugin.metadata import metadata_of, record_in
from litellm_plugin.settings import setup_from_proxy_config
from tierwise.rules import RoutingError


class TierwiseStrategy(CustomRoutingStrategyBase):
    """Routes the `auto` group by tierwise; all other groups keep LiteLLM's selection."""

    def __init__(self, router: Router, tierwise: Mapping[str, Any] | None = None) -> None:
        setup = setup_from_proxy_config(
            {"model_list": router.model_list, "tierwise": dict(tierwise or {})}, "litellm.Router"
        )
        self.router = router
        self.engine = Engine(setup)
        self.handler = TierwiseHandler(self.engine)
        self._original_async = router.async_get_available_deployment
        self._original_sync = router.get_available_deployment

    @classmethod
    def install(cls, router: Router, tierwise: Mapping[str, Any] | None = None) -> TierwiseStrategy:
        """Build, register the outcome/filter callback, start signals, set on the router."""
        strategy = cls(router, tierwise)
        litellm.callbacks.append(strategy.handler)
        strategy.engine.start()
        router.set_custom_routing_strategy(strategy)
        return strategy

    async def async_get_available_deployment(
        self,
        model: str,
        messages: list[dict[str, str]] | None = None,
        input: str | list | None = None,
        specific_deployment: bool | None = False,
        request_kwargs: dict | None = None,
    ) -> Any:
        if not self.engine.is_ours(model):
            return await self._original_async(
                model=model,
                messages=messages,
                input=input,
                specific_deployment=specific_deployment,
                request_kwargs=request_kwargs or {},
            )
        kwargs = request_kwargs if request_kwargs is not None else {}
        self._decide_once(messages, kwargs)
        healthy = await self.router.async_get_healthy_deployments(
            model=model, request_kwargs=kwargs, messages=messages, input=input
        )
        if isinstance(healthy, dict):
            return healthy
        return random.choice(healthy)

    def get_available_deployment(
        self,
        model: str,
        messages: list[dict[str, str]] | None = None,
        input: str | list | None = None,
        specific_deployment: bool | None = False,
        request_kwargs: dict | None = None,
    ) -> Any:
        """Sync calls: the same decision over the group's deployments (LiteLLM's cooldowns
        are only consulted on the async path, which is the one the proxy uses)."""
        if not self.engine.is_ours(model):
            return self._original_sync(
                model=model,
                messages=messages,
                input=input,
                specific_deployment=specific_deployment,
                request_kwargs=request_kwargs,
            )
        kwargs = request_kwargs if request_kwargs is not None else {}
        self._decide_once(messages, kwargs)
        group = [dict(d) for d in self.router.get_model_list(model_name=model) or []]
        return random.choice(self.engine.select(group, kwargs))

    def _decide_once(self, messages: Any, kwargs: dict[str, Any]) -> None:
        """Decide on the first attempt; retries and fallback hops reuse the stored record."""
        metadata = metadata_of(kwargs)
        if metadata is None:
            metadata = kwargs["metadata"] = {}
        if record_in(metadata) is not None:
            return
        # Bad input raises RequestError / RoutingError to the caller, as litellm would.
        request = self.engine.request_view({"messages": messages}, metadata)
        try:
            decision, fail_open = self.engine.decide(request), False
        except RoutingError:
            raise
        except Exception as exc:
            decision, fail_open = self.engine.fail_open(exc, "routing strategy"), True
        self.engine.attach(metadata, self.engine.record_of(decision, fail_open=fail_open))

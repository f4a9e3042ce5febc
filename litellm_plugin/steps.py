"""Hook points on the plugin's pre-call path, for the features that wrap a routing decision.

A request for `auto` goes through, in order:

    before_route(call)    call.decision is None. A step that can answer by itself sets
                          call.data["mock_response"] (LiteLLM then answers with that text,
                          streamed or not, without calling any deployment) and may set
                          call.skip_routing = True to save the scoring.
    (tierwise decides)
    after_route(call)     call.decision is set.
    before_attempt(attempt)
                          once per deployment attempt, after LiteLLM picked the deployment,
                          so after a fallback it runs again for the new tier. tierwise's
                          own context fitting (litellm_plugin/context.py) is such a step:
                          it rewrites attempt.kwargs["messages"] in place.

Steps are listed in the `tierwise.steps` setting as dotted paths to a factory that takes the
`PluginSetup` and returns a `Step`. A step that raises is logged and skipped (fail open),
except that RequestError / RoutingError reach the client as a 400.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tierwise.config import ConfigError, TierConfig
from tierwise.decision import Decision
from tierwise.request import ChatRequest, Scope

if TYPE_CHECKING:
    from litellm_plugin.settings import PluginSetup


@dataclass
class ProxyCall:
    """One `auto` request on its way in: LiteLLM's mutable request body and tierwise's view."""

    data: dict[str, Any]
    request: ChatRequest
    scope: Scope
    decision: Decision | None = None
    skip_routing: bool = False
    notes: dict[str, Any] = field(default_factory=dict)  # shared between a request's steps


@dataclass
class Attempt:
    """One call to one deployment: the kwargs LiteLLM is about to send, and its tier."""

    kwargs: dict[str, Any]
    tier: TierConfig
    decision: dict[str, Any]  # the decision record stored in the request's metadata


class Step:
    """Base class: override the hooks you need; the defaults do nothing."""

    name = "step"

    async def before_route(self, call: ProxyCall) -> None:
        return None

    async def after_route(self, call: ProxyCall) -> None:
        return None

    async def before_attempt(self, attempt: Attempt) -> None:
        return None


StepFactory = Callable[["PluginSetup"], Step]


def load_steps(paths: tuple[str, ...], setup: PluginSetup) -> list[Step]:
    """Import and build each configured step; ConfigError names the path that failed."""
    steps = []
    for path in paths:
        module_name, _, attr = path.replace(":", ".").rpartition(".")
        try:
            factory: Any = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(f"tierwise.steps: cannot load {path!r}: {exc}") from None
        step = factory(setup)
        if not isinstance(step, Step):
            raise ConfigError(
                f"tierwise.steps: {path!r} returned {type(step).__name__}, not a "
                "litellm_plugin.steps.Step"
            )
        steps.append(step)
    return steps

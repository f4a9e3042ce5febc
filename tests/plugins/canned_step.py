"""A pre-route step that answers one fixed question itself, as a cache hit would."""

from __future__ import annotations

from litellm_plugin.settings import PluginSetup
from litellm_plugin.steps import Attempt, ProxyCall, Step

QUESTION = "what is the canned answer?"
ANSWER = "canned: forty-two"


class CannedAnswer(Step):
    name = "canned"

    async def before_route(self, call: ProxyCall) -> None:
        if call.request.last_user_text.strip().lower() == QUESTION:
            call.data["mock_response"] = ANSWER
            call.skip_routing = True

    async def before_attempt(self, attempt: Attempt) -> None:
        # Tell the upstream which tier the attempt was fitted for (a context fitter would
        # rewrite the messages here instead).
        headers = dict(attempt.kwargs.get("headers") or {})
        headers["x-fitted-for"] = attempt.tier.name
        attempt.kwargs["headers"] = headers


def build(setup: PluginSetup) -> CannedAnswer:
    return CannedAnswer()

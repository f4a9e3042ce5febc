"""`POST /tierwise/feedback` on the LiteLLM proxy: an application rates an `auto` answer.

    curl -H "Authorization: Bearer $KEY" -d '{"id": "chatcmpl-...", "score": 0}' \
         http://proxy:4000/tierwise/feedback

Authenticated by LiteLLM's own `user_api_key_auth` (the same keys as chat), scoped like the
cache: a key can rate only answers it received (someone else's id reads as unknown). The
outcome goes into the decision log's `outcomes` table beside the request's row; nothing
leaves the machine. Needs `telemetry.log: true` (the rows to rate) in the `tierwise:` section.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from litellm_plugin.engine import Engine
from tierwise.adapt.outcomes import OutcomeError, open_log, record_outcome
from tierwise.adapt.scorer import ADAPT_NOTE
from tierwise.adapt.store import log_path
from tierwise.request import Scope

log = logging.getLogger("tierwise.litellm")

PATH = "/tierwise/feedback"


def response_id(response_obj: Any) -> str:
    """The id the client saw (`chatcmpl-...`), which a feedback call names."""
    value = getattr(response_obj, "id", None)
    if value is None and isinstance(response_obj, dict):
        value = response_obj.get("id")
    return value if isinstance(value, str) else ""


def sketch_of_call(engine: Engine, kwargs: dict[str, Any]) -> str | None:
    """The question's sketch (hex) kept in this process for the call, not in its metadata."""
    trace = engine.memo_of(kwargs.get("litellm_call_id")).get(ADAPT_NOTE)
    sketch = trace.get("sketch") if isinstance(trace, dict) else None
    return sketch if isinstance(sketch, str) else None


def install(engine: Engine) -> None:
    """Add the route to the running proxy's app (once), ahead of any catch-all route."""
    from litellm.proxy import proxy_server
    from litellm.proxy.auth.user_api_key_auth import user_api_key_auth

    app = proxy_server.app
    if any(getattr(route, "path", None) == PATH for route in app.router.routes):
        return

    async def feedback(
        request: Request,
        auth: Any = Depends(user_api_key_auth),  # noqa: B008 (FastAPI's way to declare it)
    ) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, {"error": "tierwise: the body must be JSON"}) from None
        if not isinstance(body, dict):
            raise HTTPException(400, {"error": 'tierwise: send {"id": ..., "score": 0..1}'})
        scope = scope_of(auth, body)
        try:
            stored = await asyncio.to_thread(_store, engine, body, scope)
        except OutcomeError as exc:
            raise HTTPException(exc.status_code, {"error": f"tierwise: {exc}"}) from None
        return JSONResponse({"id": stored.request_id, "tier": stored.tier, "score": stored.value})

    app.add_api_route(PATH, feedback, methods=["POST"], include_in_schema=True)
    app.router.routes.insert(0, app.router.routes.pop())
    log.info("tierwise: feedback route %s installed", PATH)


def scope_of(auth: Any, body: dict[str, Any]) -> Scope:
    """The scope the chat request was logged under (engine.scope_of, from the auth object)."""
    from litellm.proxy.litellm_pre_call_utils import LiteLLMProxyRequestSetup

    user = body.get("user") if isinstance(body.get("user"), str) else None
    return Scope(
        user=user or getattr(auth, "end_user_id", None) or getattr(auth, "user_id", None),
        team=getattr(auth, "team_id", None),
        api_key=LiteLLMProxyRequestSetup.get_logged_api_key(auth),
    )


def _store(engine: Engine, body: dict[str, Any], scope: Scope) -> Any:
    config = engine.router.config
    if not config.telemetry.log:
        raise OutcomeError("feedback needs the decision log: set tierwise.telemetry.log: true", 409)
    conn = open_log(log_path(config))
    try:
        return record_outcome(conn, body.get("id"), scope.key(), body.get("score"), "feedback")  # type: ignore[arg-type]
    finally:
        conn.close()

"""Open WebUI glue: the only module that imports Open WebUI (always inside a function).

Who is asking, which models are installed and which of them this user may use, calling one
of them as this user (access control on), and telling a valves save from a valves load.
Everything else in the adapter works on plain data and is tested without Open WebUI.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from openwebui_pipe.answers import describe
from openwebui_pipe.ladder import SetupError, is_routable


@dataclass
class Attempt:
    """What one call to an installed model gave back."""

    ok: bool
    response: Any = None
    error: str = ""
    status: int | None = None  # the HTTP status of a failure, when one came back


def saving_valves() -> bool:
    """Whether Open WebUI is building Valves to save them (not to load them for a call).

    Open WebUI constructs Valves both when an admin saves them and before every call, with
    no hook that tells the two apart. Only a save should refuse a model that is not
    installed right now: at load time a model missing because its connection is down must
    not take `auto` off the model list (the call then reports it). So the install check
    looks for Open WebUI's save handler on the call stack.
    """
    frame = sys._getframe(1)
    for _ in range(40):
        if frame is None:
            return False
        if frame.f_code.co_name == "update_function_valves_by_id":
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def live_models() -> list[Mapping[str, Any]]:
    """The models Open WebUI lists right now (empty before its first model listing)."""
    main = sys.modules.get("open_webui.main")
    models = getattr(getattr(getattr(main, "app", None), "state", None), "MODELS", None)
    if not models:
        return []
    return [m for _, m in models.items()]


async def user_of(raw: Mapping[str, Any] | None) -> Any:
    from open_webui.models.users import Users

    user = await Users.get_user_by_id(str((raw or {}).get("id") or ""))
    if user is None:
        raise SetupError("no signed-in user came with this request")
    return user


async def installed_models(request: Any, user: Any, own_id: str) -> list[Mapping[str, Any]]:
    models = request.app.state.MODELS
    if not models:
        from open_webui.utils.models import get_all_models

        await get_all_models(request, user=user)
        models = request.app.state.MODELS
    return [m for _, m in models.items() if is_routable(m, own_id)]


async def allowed_ids(installed: list[Mapping[str, Any]], user: Any) -> set[str]:
    """Models this user may use, by Open WebUI's own access rules."""
    from open_webui.utils.models import get_filtered_models

    return {str(m["id"]) for m in await get_filtered_models(list(installed), user)}


def is_stream(response: Any) -> bool:
    from starlette.responses import StreamingResponse

    return isinstance(response, StreamingResponse)


async def call_model(request: Any, form_data: dict[str, Any], user: Any) -> Attempt:
    """Call one installed model as this user; never bypasses Open WebUI's access control."""
    from open_webui.utils.chat import generate_chat_completion
    from starlette.responses import Response, StreamingResponse

    try:
        response = await generate_chat_completion(request, form_data, user, bypass_filter=False)
    except Exception as exc:  # Open WebUI raises HTTPException with the upstream's status
        status = getattr(exc, "status_code", None)
        error = describe(getattr(exc, "detail", None) or exc)
        return Attempt(False, error=error, status=status if isinstance(status, int) else None)
    if isinstance(response, StreamingResponse):
        return Attempt(True, response)
    if isinstance(response, Response):
        if response.status_code >= 400:
            body = bytes(response.body).decode("utf-8", "replace")
            error = f"HTTP {response.status_code}: {describe(body)}"
            return Attempt(False, error=error, status=response.status_code)
        try:
            return Attempt(True, json.loads(bytes(response.body)))
        except ValueError:
            return Attempt(False, error=f"unreadable reply: {bytes(response.body)[:200]!r}")
    if isinstance(response, Mapping) and response.get("error"):
        return Attempt(False, error=describe(response["error"]))
    return Attempt(True, response)


async def feedback_row(feedback_id: str) -> dict[str, Any] | None:
    """One row of Open WebUI's `feedback` table (thumbs up/down, comments), as a dict."""
    from open_webui.models.feedbacks import Feedbacks

    found = await Feedbacks.get_feedback_by_id(feedback_id) if feedback_id else None
    return found.model_dump() if found is not None else None


async def function_valves(function_id: str) -> dict[str, Any]:
    """The saved valves of an installed function ({} when it has none)."""
    from open_webui.models.functions import Functions

    return dict(await Functions.get_function_valves_by_id(function_id) or {})


async def chat_messages(chat_id: str, user_id: str) -> dict[str, Any]:
    """The messages of this user's own chat, by id ({} when it is not theirs or not saved)."""
    from open_webui.models.chats import Chats

    chat = await Chats.get_chat_by_id_and_user_id(chat_id, user_id)
    history = ((chat.chat if chat is not None else None) or {}).get("history") or {}
    return dict(history.get("messages") or {})

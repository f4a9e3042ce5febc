"""A regenerated `auto` answer: the user asked for another answer to the same message.

That is a weak "not good enough" for the answer replaced, weaker than a thumbs down; it is
stored below 0.5, so the refit counts it as not good, and a later thumbs up on that answer
(the latest outcome counts) overrides it. Read from Open WebUI's own copy of the user's chat
when the new answer is asked for: the new message's parent (the user's message) lists its
answers in order, and the one before the new one is the answer the user just saw.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from openwebui_pipe.ratings import Rating, answer_id, store_rating
from tierwise.adapt.outcomes import OutcomeError, Stored

log = logging.getLogger("tierwise.openwebui")

REGENERATED = 0.25  # the outcome value of an answer the user regenerated


def replaced(messages: Mapping[str, Any], message_id: str, parent_id: str | None) -> str | None:
    """The answer the new message `message_id` replaces (None: the first answer, or the
    same answer continued)."""
    current = messages.get(message_id) or {}
    if current.get("content"):  # "Continue response": the same answer, made longer
        return None
    parent = messages.get(str(current.get("parentId") or parent_id or "")) or {}
    children = [str(c) for c in parent.get("childrenIds") or []]
    earlier = children[: children.index(message_id)] if message_id in children else children
    answers = [c for c in earlier if (messages.get(c) or {}).get("role") == "assistant"]
    return answers[-1] if answers else None


async def note(metadata: Mapping[str, Any], user_id: str, path: Path) -> Stored | None:
    """Store a `regenerate` outcome for the answer this request replaces, if it was ours.

    Only this user's own chat is read; an answer `auto` did not give (another model's) has
    no decision and is skipped. Never raises: the chat it runs beside must not notice.
    """
    from openwebui_pipe import host

    try:
        chat_id, message_id = str(metadata["chat_id"]), str(metadata["message_id"])
        messages = await host.chat_messages(chat_id, user_id)
        previous = replaced(messages, message_id, metadata.get("user_message_id"))
        if previous is None:
            return None
        ids = {"chat_id": chat_id, "message_id": previous}
        rating = Rating(answer_id(ids), user_id, REGENERATED)
        return await asyncio.to_thread(store_rating, path, rating, "regenerate")
    except OutcomeError as exc:
        log.debug("tierwise: regeneration not stored: %s", exc)
    except Exception:
        log.exception("tierwise auto: noting a regeneration failed (ignored)")
    return None

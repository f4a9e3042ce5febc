"""Open WebUI's thumbs up/down on an `auto` answer, as an outcome beside its decision.

The Pipe logs each answer under `answer_id()`, Open WebUI's own name for the message
(`owui:<chat id>:<message id>`). When a user rates a message, Open WebUI stores a row in
its `feedback` table and publishes `feedback.created` (or `.updated`) to its *event*
functions; `feedback_event.py` is one, and hands the event here. We read the rating back
from Open WebUI's table (never from the event's payload, which carries no ids) and store
it as an outcome scoped to the user who owns the feedback row: Open WebUI sets that user
from the session, so nobody can rate another user's answer (their scope would not match
the decision's, and the outcome store answers "unknown").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierwise.adapt.outcomes import OutcomeError, Stored, open_log, record_outcome
from tierwise.request import Scope

log = logging.getLogger("tierwise.openwebui")

PREFIX = "owui"
EVENTS = frozenset({"feedback.created", "feedback.updated"})
RETRY_S = 1.0  # a rating may race the decision log's writer: look once more after this


def answer_id(metadata: Mapping[str, Any] | None) -> str:
    """The decision log's request id for the answer Open WebUI is asking for ("" = none)."""
    chat_id = (metadata or {}).get("chat_id")
    message_id = (metadata or {}).get("message_id")
    if not isinstance(chat_id, str) or not isinstance(message_id, str):
        return ""
    if not chat_id or not message_id:
        return ""
    return f"{PREFIX}:{chat_id}:{message_id}"[:200]


@dataclass(frozen=True)
class Rating:
    request_id: str
    user_id: str
    value: float  # 1 = thumbs up (good), 0 = thumbs down (not good enough)
    # (a regeneration is a Rating too: regenerations.REGENERATED, source "regenerate")


def rating_of(feedback: Mapping[str, Any] | None) -> Rating | None:
    """A thumbs up/down on one message, from an Open WebUI feedback row (None: not one)."""
    if not feedback or feedback.get("type") != "rating":
        return None
    data = feedback.get("data") or {}
    meta = feedback.get("meta") or {}
    value = {"1": 1.0, "-1": 0.0}.get(str(data.get("rating")))
    request_id = answer_id(meta)
    user_id = feedback.get("user_id")
    if value is None or not request_id or not isinstance(user_id, str) or not user_id:
        return None
    return Rating(request_id, user_id, value)


def store_rating(path: Path, rating: Rating, source: str = "rating") -> Stored:
    """Write the outcome into the decision log at `path`; OutcomeError if not this user's."""
    conn = open_log(path)
    try:
        scope = Scope(user=rating.user_id).key()
        return record_outcome(conn, rating.request_id, scope, rating.value, source, repeat=False)
    finally:
        conn.close()


async def forward(event: Mapping[str, Any], pipe_id: str) -> Stored | None:
    """Store the rating an Open WebUI event announces, if it rates an answer of `pipe_id`.

    Never raises for a rating it cannot use (another model's answer, another user's, the
    decision log off): those are logged at debug level and dropped.
    """
    from openwebui_pipe import host
    from openwebui_pipe.ladder import base_config
    from tierwise.adapt.store import log_path

    if event.get("event") not in EVENTS:
        return None
    feedback_id = (event.get("subject") or {}).get("id")
    rating = rating_of(await host.feedback_row(str(feedback_id or "")))
    if rating is None:
        return None
    valves = await host.function_valves(pipe_id)
    config = base_config(str(valves.get("config_path") or ""))
    if not config.telemetry.log:
        return None
    path = log_path(config)
    for attempt in range(2):
        try:
            return await asyncio.to_thread(store_rating, path, rating)
        except OutcomeError as exc:
            if exc.status_code != 404 or attempt:
                log.debug("tierwise: rating %s not stored: %s", rating.request_id, exc)
                return None
            await asyncio.sleep(RETRY_S)
    return None

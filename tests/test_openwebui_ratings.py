"""Ratings from Open WebUI's feedback rows, as outcomes (the end to end path, through a real
browser and a real Open WebUI, is in tests/test_openwebui.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openwebui_pipe.ratings import Rating, answer_id, rating_of, store_rating
from openwebui_pipe.regenerations import replaced
from tests.test_adapt import adapt_config, logged
from tierwise.adapt.outcomes import OutcomeError, open_log, training_examples
from tierwise.config import load_config
from tierwise.request import Scope
from tierwise.router import TierRouter


def feedback(rating: Any = -1, **changes: Any) -> dict[str, Any]:
    """A row of Open WebUI's feedback table as its thumbs buttons save it."""
    row = {
        "id": "f1",
        "user_id": "uma",
        "type": "rating",
        "data": {"rating": rating, "model_id": "auto"},
        "meta": {"chat_id": "c1", "message_id": "m1", "arena": False},
    }
    return {**row, **changes}


def test_the_answer_is_named_by_open_webuis_chat_and_message_ids() -> None:
    assert answer_id({"chat_id": "c1", "message_id": "m1", "task": None}) == "owui:c1:m1"
    for missing in (None, {}, {"chat_id": "c1"}, {"chat_id": "", "message_id": "m1"}):
        assert answer_id(missing) == ""
    assert answer_id({"chat_id": 3, "message_id": "m1"}) == ""


def test_thumbs_up_is_good_and_thumbs_down_is_not() -> None:
    assert rating_of(feedback(-1)) == Rating("owui:c1:m1", "uma", 0.0)
    assert rating_of(feedback(1)) == Rating("owui:c1:m1", "uma", 1.0)
    assert rating_of(feedback("-1")) == Rating("owui:c1:m1", "uma", 0.0)  # RatingData: str|int


@pytest.mark.parametrize(
    "row",
    [
        None,
        feedback(None),  # the comment form before a thumb was chosen
        feedback(5),
        feedback(type="arena"),
        feedback(meta={"chat_id": "c1"}),  # names no message
        feedback(user_id=""),
    ],
)
def test_anything_else_is_not_a_rating(row: dict[str, Any] | None) -> None:
    assert rating_of(row) is None


def test_a_rating_is_stored_once_and_only_for_the_user_who_got_the_answer(tmp_path: Path) -> None:
    router = TierRouter(load_config(adapt_config(tmp_path)))
    tier = logged(router, "What is the capital of France?", "owui:c1:m1", Scope(user="uma"))
    path = tmp_path / "log.db"
    stored = store_rating(path, Rating("owui:c1:m1", "uma", 0.0))
    assert (stored.tier, stored.value) == (tier, 0.0)
    store_rating(path, Rating("owui:c1:m1", "uma", 0.0))  # Open WebUI saved it again
    with pytest.raises(OutcomeError) as other:
        store_rating(path, Rating("owui:c1:m1", "admin", 1.0))
    assert other.value.status_code == 404
    conn = open_log(path)
    try:
        rows = conn.execute("SELECT source, value, scope FROM outcomes").fetchall()
        assert rows == [("rating", 0.0, Scope(user="uma").key())]
        assert [e.good for e in training_examples(conn, "cloud")] == [False]
    finally:
        conn.close()


def history(*answers: str, saved: bool = True) -> dict[str, Any]:
    """Open WebUI's message map: one user message `u` and its answers in order."""
    children = list(answers if saved else answers[:-1])
    messages: dict[str, Any] = {"u": {"id": "u", "role": "user", "childrenIds": children}}
    for a in answers:
        messages[a] = {"id": a, "role": "assistant", "parentId": "u", "childrenIds": []}
    if not saved:  # the new answer not written into the chat yet
        del messages[answers[-1]]
    return messages


def test_a_regeneration_replaces_the_answer_just_before_it() -> None:
    assert replaced(history("a1"), "a1", "u") is None  # the first answer replaces nothing
    assert replaced(history("a1", "a2"), "a2", "u") == "a1"
    assert replaced(history("a1", "a2", "a3"), "a3", "u") == "a2"  # not every earlier one
    assert replaced(history("a1", "a2", saved=False), "a2", "u") == "a1"  # parent from metadata
    assert replaced(history("a1", "a2", saved=False), "a2", None) is None  # no way to tell
    assert replaced({}, "a1", "u") is None
    continued = history("a1", "a2")
    continued["a2"]["content"] = "The capital is"
    assert replaced(continued, "a2", "u") is None  # Continue Response: not a new answer

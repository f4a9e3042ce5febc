"""
title: tierwise ratings
author: tierwise
version: 0.1.0
license: Apache-2.0
description: Thumbs up/down on an `auto` answer become outcomes in tierwise's decision log
"""

# An Open WebUI *event* function (id `tierwise_ratings`), installed beside the `auto` Pipe
# by `tierwise openwebui install`. Open WebUI calls it on every event it publishes; it acts
# only on a rating being saved (feedback.created / feedback.updated) and hands it to
# openwebui_pipe.ratings, which stores it next to the decision that produced the answer.
# Nothing leaves the machine. Switch this function off to stop collecting ratings.

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from openwebui_pipe.ratings import forward


class Event:
    class Valves(BaseModel):
        pipe_id: str = Field("auto", description="The tierwise Pipe whose answers are rated.")

    def __init__(self) -> None:
        self.valves = self.Valves()

    async def event(self, event: dict[str, Any]) -> None:
        """Store a rating of one of the Pipe's answers as an outcome (others are ignored)."""
        await forward(event, self.valves.pipe_id)

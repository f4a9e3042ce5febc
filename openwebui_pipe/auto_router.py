"""
title: tierwise auto router
author: tierwise
version: 0.2.0
license: Apache-2.0
description: Model `auto`: each chat goes to the cheapest tier (local, HPC, cloud) fit for it
"""

# The Open WebUI Pipe users paste into Admin -> Functions (id `auto`), or that
# `tierwise openwebui install --url ... --token ...` installs. It is deliberately thin: the
# valves, and a Pipe that hands each call to openwebui_pipe.engine. The `tierwise` package
# must be installed in Open WebUI's Python environment (docs/openwebui.md, Install); no
# `requirements:` line, because tierwise is not a registry package. Open WebUI's loader
# rewrites a few import spellings in function files, so this file never uses them
# (tests/test_openwebui_pipe.py checks).

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from openwebui_pipe import host
from openwebui_pipe.engine import AutoRouter
from openwebui_pipe.ladder import SetupError, is_routable, valve_problems, valve_shape_problem


class Pipe:
    class Valves(BaseModel):
        tier_models: str = Field(
            "",
            description=(
                "Tier -> installed model ids, e.g. 'local=llama3.2:1b; cloud=gpt-4o'. Tiers "
                "not named here are mapped automatically: models tagged 'tierwise:<tier>', "
                "then the config's model names; Ollama models fill the cheapest tier."
            ),
        )
        thresholds: str = Field(
            "",
            description="Lowest score (0..1) per tier, e.g. 'hpc=0.33; cloud=0.67'.",
        )
        config_path: str = Field(
            "",
            description="A tierwise YAML file on this server; empty: the built-in ladder.",
        )
        fallback: bool = Field(
            True, description="When a tier fails, try the next tier the user may use."
        )
        semantic_cache: bool = Field(
            False, description="Answer paraphrases of recent questions from the cache."
        )
        summarize: bool = Field(
            False, description="Summarize long chats to fit the chosen tier's window."
        )
        llm_judge: bool = Field(
            False,
            description="Ask the cheapest model to rate chats whose score sits near a band "
            "edge (adds that call's time to those chats).",
        )
        show_status: bool = Field(True, description="Show tier, model and reason above replies.")

        @model_validator(mode="after")
        def _check(self) -> Any:
            # Shape errors are always refused; install-dependent ones only when saving (at
            # load time a model whose connection is down must not take `auto` away).
            problem = valve_shape_problem(self.tier_models, self.thresholds)
            if problem:
                raise SetupError(problem)
            if not host.saving_valves():
                return self
            installed = [m for m in host.live_models() if is_routable(m, "auto")]
            problems = valve_problems(
                self.tier_models,
                self.thresholds,
                self.config_path,
                self.semantic_cache,
                self.summarize,
                installed,
            )
            if problems:
                raise SetupError("; ".join(problems))
            return self

    def __init__(self) -> None:
        self.valves = self.Valves()
        self.router = AutoRouter()

    async def pipe(
        self,
        body: dict[str, Any],
        __user__: dict[str, Any] | None = None,
        __request__: Any = None,
        __event_emitter__: Any = None,
        __task__: str | None = None,
        __metadata__: dict[str, Any] | None = None,
    ) -> Any:
        """Route one chat (or background task) to an installed model and stream it back."""
        return await self.router.pipe(
            self.valves,
            body,
            __user__,
            __request__,
            __event_emitter__,
            __task__,
            metadata=__metadata__,
        )

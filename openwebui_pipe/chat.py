"""One chat's state on its way through the pipe: the route chosen for it and what happened."""

from __future__ import annotations

from dataclasses import dataclass, field

from openwebui_pipe.status import brief_reason, short_status, status_text
from tierwise.config import TierwiseConfig
from tierwise.decision import Decision
from tierwise.request import ChatRequest
from tierwise.summarize import Fitted
from tierwise.telemetry import Telemetry


@dataclass
class Route:
    """The tiers to try for one chat, in order, with the models and status to show."""

    config: TierwiseConfig  # the tiers this user may use
    decision: Decision | None  # None for background tasks
    wanted: Decision | None  # set when the full ladder picks a tier this user may not use
    tiers: list[str] = field(default_factory=list)
    notes: tuple[str, ...] = ()
    request: ChatRequest | None = None  # the core's view of the chat (None for tasks)
    ladder: TierwiseConfig | None = None  # every user's tiers (prices for telemetry)

    @property
    def limit(self) -> str:
        """The access limit, when it changed the tier: 'not permitted' is not 'down'."""
        if self.wanted is None:
            return ""
        top = self.config.ranked_tiers[-1].name
        return f"{self.wanted.tier} is not permitted for your account (you may use up to {top})"

    @property
    def status(self) -> str:
        """The detailed status line (the expanded view)."""
        model = self.model_for(self.tiers[0])
        if self.decision is None:
            return f"auto → {model} ({self.tiers[0]}) · background task"
        line = status_text(self.decision, model, self.limit, self.wanted)
        return f"{line} · {'; '.join(self.notes)}" if self.notes else line

    def model_for(self, tier: str) -> str:
        return self.config.tier(tier).models[0]

    def logged(self) -> Decision:
        """The decision telemetry records; a background task's names the cheapest tier."""
        if self.decision is not None:
            return self.decision
        first = self.config.tier(self.tiers[0])
        return Decision(
            tier=first.name,
            models=first.models,
            score=float("nan"),
            band="",
            reasons=("background task: the cheapest tier first",),
            fallback_chain=tuple(self.tiers[1:]),
            scorer="none",
        )


@dataclass
class Chat:
    """One chat on its way through the pipe, recorded once when it finishes."""

    route: Route
    telemetry: Telemetry | None
    started: float
    fitted: Fitted | None = None  # how the chat was fitted to the tier last tried
    first_chunk: float | None = None  # when the first streamed chunk went out
    fell_back: str = ""  # why the decided tier did not answer ("" = it did)
    caller: str | None = None  # who asked, as the health breaker counts callers
    request_id: str = ""  # Open WebUI's name for the answer (ratings.answer_id), "" = none
    recorded: bool = False

    def first_token_ms(self) -> float | None:
        """Time from the pipe's start to the first streamed chunk (None: not streamed)."""
        if self.first_chunk is None:
            return None
        return (self.first_chunk - self.started) * 1000

    def summary(self, tier: str) -> str:
        """The short final line for an answer `tier` gave."""
        decision = self.route.decision
        if decision is None:
            reason = "background task"
        elif self.fell_back:
            reason = self.fell_back
        elif self.route.wanted is not None:
            reason = f"{brief_reason(self.route.wanted)}, {self.route.wanted.tier} not permitted"
        else:
            reason = brief_reason(decision)
        if self.fitted is not None and self.fitted.changed:
            reason += ", summarized"
        return short_status(self.route.model_for(tier), tier, reason, self.first_token_ms())

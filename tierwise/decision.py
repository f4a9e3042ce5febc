"""The routing decision: which tier, why, and where to go if it fails."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Decision:
    tier: str
    models: tuple[str, ...]
    score: float
    band: str
    reasons: tuple[str, ...]
    fallback_chain: tuple[str, ...]
    scorer: str = "heuristic"
    drivers: tuple[str, ...] = ()
    probe: bool = False
    # The chosen tier cannot hold the conversation as it is: call router.prepare() to fit it.
    needs_fit: bool = False
    prompt_tokens: int | None = None
    decided_in_ms: float = 0.0
    task_kind: str | None = None  # Score.task_kind: writing, chat, math, code, ... or None
    notes: dict[str, Any] = field(default_factory=dict)
    # What the LLM judge did (JudgeOutcome.as_dict()); None when it was not wanted or is off.
    judge: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "models": list(self.models),
            "score": round(self.score, 4),
            "band": self.band,
            "scorer": self.scorer,
            "reasons": list(self.reasons),
            "fallback_chain": list(self.fallback_chain),
            "probe": self.probe,
            "needs_fit": self.needs_fit,
            "prompt_tokens": self.prompt_tokens,
            "decided_in_ms": round(self.decided_in_ms, 3),
            "task_kind": self.task_kind,
            **({"adapt": self.adapt_trace} if self.adapt_trace else {}),
            **({"judge": self.judge} if self.judge else {}),
        }

    @property
    def adapt_trace(self) -> dict[str, Any]:
        """What the feedback loop logs: the scorer's own score, the question's sketch (hex),
        the adaptation version and whether this was an exploration (empty when adapt is off)."""
        trace = self.notes.get("adapt")
        if not isinstance(trace, Mapping):
            return {}
        return {**trace, "explored": bool(self.notes.get("explored"))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Rebuild from as_dict() output (e.g. after it travelled in a host's metadata)."""
        score = data.get("score")
        return cls(
            tier=str(data["tier"]),
            models=tuple(data.get("models") or ()),
            score=float(score) if score is not None else float("nan"),
            band=str(data.get("band") or ""),
            reasons=tuple(data.get("reasons") or ()),
            fallback_chain=tuple(data.get("fallback_chain") or ()),
            scorer=str(data.get("scorer") or ""),
            probe=bool(data.get("probe")),
            prompt_tokens=data.get("prompt_tokens"),
            decided_in_ms=float(data.get("decided_in_ms") or 0.0),
            task_kind=data.get("task_kind"),
            notes=_notes_of(data.get("adapt")),
            judge=dict(data["judge"]) if isinstance(data.get("judge"), Mapping) else None,
        )

    def short_reason(self) -> str:
        """One line for a response header: the last rule that acted decides the tier."""
        return self.reasons[-1] if self.reasons else "default"

    def explain(self) -> str:
        """A few lines for people: the tier, the score, each rule that acted."""
        lines = [f"-> {self.tier} (score {self.score:.2f}, {self.band}, by {self.scorer})"]
        lines += [f"   {reason}" for reason in self.reasons]
        if self.fallback_chain:
            lines.append(f"   if {self.tier} fails: {' -> '.join(self.fallback_chain)}")
        return "\n".join(lines)


def _notes_of(trace: Any) -> dict[str, Any]:
    """The notes from_dict() restores: the feedback loop's trace, when one travelled."""
    if not isinstance(trace, Mapping):
        return {}
    return {"adapt": dict(trace), "explored": bool(trace.get("explored"))}

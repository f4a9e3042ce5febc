"""What kind of task a prompt is: open writing and chat vs math, code and reasoning.

Small models write emails, play roles, pull facts out of a passage and chat about as well as
frontier ones; they fall behind on arithmetic, code and multi-step reasoning. The kinds are
named from the words and the shape of a prompt (an imperative opener, a quoted passage, a
persona), each as evidence in [0, 1]; the score reports the strongest as `Score.task_kind`, a
key per-install corrections (the feedback loop) can be grouped by.

Cost: one lowercase pass and set look-ups, like the heuristic's dimensions. Nothing here is
fitted, and the learned head does not read these marks: leave-one-source-out CV found they
add nothing to the static embedding (mean AUROC 0.638 with them, 0.637 without;
docs/routing-quality.md).
"""

from __future__ import annotations

import math
import re

_WORD = re.compile(r"[a-z']+")
# "You are a pirate", "act as my interviewer", "pretend to be", "imagine you are"
_PERSONA = re.compile(
    r"\b(?:act as|acting as|pretend (?:to be|you are|you're)|imagine (?:you are|you're)|"
    r"you are (?:a|an|my)\b|role ?play|in the (?:voice|style) of|take on the role)"
)
# A passage handed over to work on: a colon then a new line, quotes, or a long second line.
_PASSAGE = re.compile(r":\s*\n|\n\s*\n|\"[^\"]{60,}\"|'[^']{60,}'")


def _words(*groups: str) -> frozenset[str]:
    return frozenset(w for g in groups for w in g.split())


WRITING = _words(
    "write draft compose email letter essay story poem poems haiku blog article post speech",
    "slogan tweet caption headline lyrics song script toast cover tagline bio biography",
    "announcement invitation description review paragraph outline proposal memo newsletter",
    "creative persuasive apology thank-you",
)
EXTRACTION = _words(
    "extract summarize summarise summary rewrite rephrase paraphrase translate classify",
    "categorize categorise convert reformat format correct proofread grammar identify",
    "sort tag label detect list tl;dr shorten simplify edit fix spelling punctuation",
    "sentence sentences passage text following below above",
)
CHAT = _words(
    "hi hello hey thanks thank ok okay cool lol favorite favourite recommend",
    "suggest suggestions ideas tips advice opinion think feel best movies movie books book",
    "gift gifts trip travel recipe recipes weekend fun hobby should",
)
KINDS = ("writing", "roleplay", "extraction", "chat", "math", "code", "reasoning")
# The kinds the learned scorer's open-chat head serves (tierwise/scoring/learned.py).
OPEN_CHAT = frozenset({"writing", "roleplay", "extraction", "chat"})


def _saturate(hits: float, per_hit: float) -> float:
    return 1.0 - math.exp(-per_hit * hits)


def open_kinds(text: str) -> dict[str, float]:
    """Evidence in [0, 1] for each open-ended kind (writing, roleplay, extraction, chat).

    The first few words weigh double: "Write a ..." is a writing task whatever follows.
    """
    lower = text[:4000].lower()
    words = _WORD.findall(lower)
    head = set(words[:6])
    bag = set(words)

    def evidence(vocabulary: frozenset[str]) -> float:
        return len(bag & vocabulary) + 2 * len(head & vocabulary)

    return {
        "writing": _saturate(evidence(WRITING), 0.35),
        "roleplay": _saturate(len(_PERSONA.findall(lower)), 0.9),
        "extraction": _saturate(evidence(EXTRACTION) + 2 * bool(_PASSAGE.search(text)), 0.3),
        "chat": _saturate(evidence(CHAT), 0.35),
    }


def task_kind(text: str, dims: dict[str, float]) -> str | None:
    """The kind with the most evidence, None when no kind has any.

    `dims` are the heuristic's dimensions of the same text (tierwise.scoring.heuristic
    .features), which already measure math, code and reasoning: they are reused, not redone.
    """
    evidence = open_kinds(text)
    for kind in ("math", "code", "reasoning"):
        evidence[kind] = dims[kind]
    name, value = max(evidence.items(), key=lambda kv: kv[1])
    return name if value > 0 else None


def is_open_chat(kind: str | None, dims: dict[str, float]) -> bool:
    """Whether a prompt is open chat (the open-chat head's traffic): an open kind, no choices.

    A multiple-choice question about a passage is an exam item, not a chat request.
    """
    return kind in OPEN_CHAT and dims["choices"] == 0

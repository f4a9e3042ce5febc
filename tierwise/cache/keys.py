"""What a cached answer is keyed on: who asked, in what conversation, and the question itself.

Two requests may share an answer only if they share the partition: the same tenant scope,
model group, system prompt, earlier turns and answer-shaping parameters. Inside a partition
the question is matched exactly (normalized text) or semantically (embedding cosine).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from typing import Any

from tierwise.request import ChatRequest

# Request parameters that change what a correct answer looks like.
ANSWER_SHAPING = ("response_format", "max_tokens", "max_completion_tokens", "n", "stop", "seed")
_SPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[^\W\d_][\w'’-]*")
_SENTENCE_END = re.compile(r"[.!?:;]\s*$")


def _digest(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:32]


def normalize(text: str) -> str:
    """Case, width and spacing differences do not make a different question."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def scope_part(request: ChatRequest, scope: str) -> str | None:
    """The tenant part of the partition, or None when the request cannot be scoped."""
    if scope == "global":
        return "global"
    s = request.scope
    if scope == "team" and s.team:
        return "team:" + hashlib.sha256(s.team.encode()).hexdigest()[:24]
    if s.anonymous:
        return None
    return "scope:" + s.key()


def context_part(request: ChatRequest) -> str:
    """Everything but the last user message that determines the answer."""
    last = len(request.messages) - 1
    while last >= 0 and request.messages[last].role != "user":
        last -= 1
    earlier = [
        (m.role, m.text, [dict(c) for c in m.tool_calls], m.tool_call_id, m.images)
        for m in request.messages[: max(last, 0)]
    ]
    shaping = {k: request.raw.get(k) for k in ANSWER_SHAPING if request.raw.get(k) is not None}
    return _digest({"model": request.model, "earlier": earlier, "shaping": shaping})


def exact_key(partition: str, question: str) -> str:
    return _digest({"p": partition, "q": normalize(question)})


def anchors(text: str) -> frozenset[str]:
    """Numbers and names in a question: paraphrases keep them, near-misses change them.

    Names are capitalized words that do not open a sentence, plus words shaped like names
    anywhere (inner capitals as in "PyTorch", acronyms as in "GPU"), case-folded.
    """
    found = {n.replace(",", "") for n in _NUMBER.findall(text)}
    for match in _WORD.finditer(text):
        word = match.group()
        if len(word) < 2 or not word[0].isupper():
            continue
        name_shaped = any(c.isupper() for c in word[1:])
        before = text[: match.start()]
        opens_sentence = not before.strip() or _SENTENCE_END.search(before) is not None
        if name_shaped or not opens_sentence:
            found.add(word.casefold())
    return frozenset(found)


def _vocabulary(text: str) -> frozenset[str]:
    words = {w.casefold() for w in _WORD.findall(text)}
    return frozenset(words | {n.replace(",", "") for n in _NUMBER.findall(text)})


def _numbers(text: str) -> Counter[str]:
    return Counter(n.replace(",", "") for n in _NUMBER.findall(text))


def anchors_agree(a: str, b: str) -> bool:
    """A safe semantic match: the same numbers, as often, and each one's names in the other.

    Counting numbers catches "2 houses with 3 bedrooms" -> "3 houses with 3 bedrooms",
    which a set comparison would pass.
    """
    if _numbers(a) != _numbers(b):
        return False
    return anchors(a) <= _vocabulary(b) and anchors(b) <= _vocabulary(a)

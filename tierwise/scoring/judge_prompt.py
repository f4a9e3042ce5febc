"""What the LLM judge is asked, and how its answer is read: no I/O, no host.

The judge is the cheapest tier's model. It is shown the request (head and tail) and asked
for one difficulty rating from 1 to 10, in three ranges that map onto the three bands, so a
rating lands inside the band it names whatever the configured cut points are. Anything that
is not one clear rating (prose with several numbers, a refusal, an empty answer) raises
UnreadableVerdict, and the caller keeps its own score.
"""

from __future__ import annotations

import re

from tierwise.config import Bands
from tierwise.request import ChatRequest

INSTRUCTIONS = (
    "You decide which assistant should answer a request. Rate how hard the request is for a "
    "small language model (1 to 8 billion parameters) on a scale from 1 to 10:\n"
    "1-3: a small model answers it as well as the strongest ones (small talk, simple facts, "
    "short rewrites, routine letters and emails, summaries of given text).\n"
    "4-6: a mid-size model is needed (several steps of reasoning, longer code, careful "
    "analysis or comparison).\n"
    "7-10: only a frontier model answers it well (hard mathematics or proofs, subtle logic, "
    "expert knowledge, long precise code).\n"
    "Do not answer the request. Reply with the number only."
)
REQUEST_OPEN, REQUEST_CLOSE = "<request>", "</request>"
ASK = "Rating (1-10):"
_CUT = "\n[...]\n"

# A rating said as a word, accepted only as a short answer of its own ("Hard.", "medium").
_WORDS = {
    "low": 2,
    "easy": 2,
    "simple": 2,
    "trivial": 1,
    "medium": 5,
    "moderate": 5,
    "high": 8,
    "hard": 8,
    "difficult": 8,
}
_OUT_OF_TEN = re.compile(r"\b(\d+(?:\.\d+)?)\**\s*(?:/|out of)\s*10\b", re.IGNORECASE)
_LABELLED = re.compile(
    r"\b(?:rating|score|difficulty)\s*(?:is|[:=])?\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE
)
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")


class UnreadableVerdict(ValueError):
    """The judge's answer holds no single rating from 1 to 10."""


def judge_text(request: ChatRequest, max_chars: int) -> str:
    """The text the judge rates: the last user turn, its head and tail past max_chars."""
    text = request.last_user_text.strip()
    if len(text) <= max_chars:
        return text
    half = (max_chars - len(_CUT)) // 2
    return text[:half] + _CUT + text[-half:]


def judge_messages(text: str) -> list[dict[str, str]]:
    """The chat the judge tier is sent (OpenAI message dicts)."""
    return [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": f"{REQUEST_OPEN}\n{text}\n{REQUEST_CLOSE}\n{ASK}"},
    ]


def parse_rating(answer: str) -> float:
    """The rating in a judge's answer: "7", "Rating: 7", "**7**/10", "hard"; else raises."""
    text = answer.strip()
    for pattern in (_OUT_OF_TEN, _LABELLED):
        found = pattern.search(text)
        if found:
            return _in_range(float(found.group(1)), answer)
    numbers = {float(n) for n in _NUMBER.findall(text)}
    if len(numbers) == 1:
        return _in_range(numbers.pop(), answer)
    if numbers:
        raise UnreadableVerdict(f"several numbers, no rating: {_clip(answer)}")
    word = text.strip(" .!*\"'`").lower()
    if word in _WORDS:
        return float(_WORDS[word])
    raise UnreadableVerdict(f"no rating in the answer: {_clip(answer)}")


def rating_score(rating: float, bands: Bands) -> float:
    """A 1-10 rating as a score inside the band its range names (1-3 LOW, 4-6 MEDIUM, 7-10
    HIGH), spread evenly across that band."""
    if rating < 3.5:
        return bands.medium * (max(rating, 1.0) - 0.5) / 3
    if rating < 6.5:
        return bands.medium + (bands.high - bands.medium) * (rating - 3.5) / 3
    return bands.high + (1 - bands.high) * (min(rating, 10.0) - 6.5) / 4


def _in_range(value: float, answer: str) -> float:
    if not 1 <= value <= 10:
        raise UnreadableVerdict(f"rating {value:g} is outside 1-10: {_clip(answer)}")
    return value


def _clip(answer: str) -> str:
    flat = " ".join(answer.split())
    return repr(flat[:80] + ("..." if len(flat) > 80 else ""))

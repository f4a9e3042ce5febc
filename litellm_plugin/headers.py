"""Header values that cannot break HTTP, whatever text a reason or an upstream error holds.

h11 (under LiteLLM's uvicorn) refuses a value with control characters or leading/trailing
whitespace and closes the connection: the client then gets no response at all. So every
`x-tierwise-*` value goes through `header_value()`. The full text stays in the spend-log
metadata and the decision log; a header is a summary.
"""

from __future__ import annotations

HEADER_MAX = 240  # characters, ellipsis included
ELLIPSIS = "..."


def header_value(text: str, limit: int = HEADER_MAX) -> str:
    """Printable ASCII on one line, runs of whitespace folded, trimmed, cut at a word boundary.

    Never empty (an empty value is legal but says nothing): "-" stands for no text.
    """
    printable = "".join(ch if 32 < ord(ch) < 127 else " " for ch in text)
    folded = " ".join(printable.split())
    if len(folded) > limit:
        room = limit - len(ELLIPSIS)
        cut = folded[: room + 1]
        space = cut.rfind(" ")
        # Cut at the last space when it keeps most of the text; else mid-word.
        head = cut[:space] if space >= room // 2 else folded[:room]
        folded = head.rstrip() + ELLIPSIS
    return folded or "-"

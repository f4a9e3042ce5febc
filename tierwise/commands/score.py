"""`tierwise score`: JSONL in, the same lines with score, band and tier added, in order.

Outside evaluation depends on this contract: one output line per non-empty input line,
the input object kept as it was, plus `score` (0..1), `band` and `tier`. A line that
cannot be scored keeps its place and gets an `error` field instead.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tierwise.progress import Progress
from tierwise.request import ChatRequest, RequestError
from tierwise.router import TierRouter
from tierwise.rules import RoutingError


def score_lines(router: TierRouter, lines: Iterable[bytes]) -> Iterator[tuple[dict[str, Any], str]]:
    """Yield (output object, warning) per non-empty input line; warning is '' when clean."""
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        warning = ""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = raw.decode("utf-8", errors="replace")
            warning = f"line {number}: invalid UTF-8 at byte {exc.start}; replaced with U+FFFD"
        try:
            item = json.loads(text)
        except json.JSONDecodeError as exc:
            yield {"error": f"line {number}: not JSON ({exc.msg})"}, f"line {number}: not JSON"
            continue
        if not isinstance(item, dict):
            yield (
                {"error": f"line {number}: expected a JSON object"},
                f"line {number}: not an object",
            )
            continue
        try:
            decision = router.decide(_request(item))
        except (RequestError, RoutingError) as exc:
            item["error"] = str(exc)
            yield item, f"line {number}: {exc}"
            continue
        item["score"] = round(decision.score, 6)
        item["band"] = decision.band
        item["tier"] = decision.tier
        if decision.task_kind:
            item["task_kind"] = decision.task_kind
        yield item, warning


def _request(item: dict[str, Any]) -> ChatRequest:
    if "messages" in item:
        return ChatRequest.from_openai(item)
    text = item.get("text")
    if not isinstance(text, str):
        raise RequestError("each line needs 'text' (a string) or 'messages' (a chat)")
    return ChatRequest.from_text(text)


def run(
    router: TierRouter, source: IO[bytes], sink: IO[str], total: int | None, show_progress: bool
) -> int:
    """Score every line of `source` into `sink`; exit code 1 if any line had an error."""
    problems = 0
    progress = Progress(total, "scoring") if show_progress else None
    for item, warning in score_lines(router, source):
        sink.write(json.dumps(item, ensure_ascii=False) + "\n")
        if warning:
            problems += "error" in item
            print(f"tierwise score: {warning}", file=sys.stderr)
        if progress:
            progress.advance()
    if progress:
        progress.close()
    sink.flush()
    if problems:
        print(
            f"tierwise score: {problems} line(s) could not be scored (see 'error')", file=sys.stderr
        )
    return 1 if problems else 0

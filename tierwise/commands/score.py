"""`tierwise score`: JSONL in, the same lines with score, band and tier added, in order.

Outside evaluation depends on this contract: one output line per non-empty input line,
the input object kept as it was, plus `score` (0..1), `band` and `tier`. A line that
cannot be scored keeps its place and gets an `error` field instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tierwise.commands.common import config_of
from tierwise.progress import Progress
from tierwise.request import ChatRequest, RequestError
from tierwise.router import TierRouter
from tierwise.rules import RoutingError

if TYPE_CHECKING:
    from tierwise.commands.common import Subparsers


def register(sub: Subparsers) -> None:
    score = sub.add_parser("score", help="score JSONL lines ({text} or {messages}); stdin default")
    score.add_argument("file", nargs="?", help="input JSONL (default: stdin)")
    score.add_argument("-o", "--output", help="write here instead of stdout")
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    score.set_defaults(handler=cmd_score)


def cmd_score(args: argparse.Namespace) -> int:
    router = TierRouter(config_of(args))
    sink = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        if args.file:
            path = Path(args.file)
            try:
                total = sum(1 for line in path.open("rb") if line.strip())
                with path.open("rb") as source:
                    return run(router, source, sink, total, not args.quiet)
            except OSError as exc:
                print(f"tierwise score: cannot read {path}: {exc.strerror}", file=sys.stderr)
                return 1
        return run(router, sys.stdin.buffer, sink, None, False)
    finally:
        if sink is not sys.stdout:
            sink.close()


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

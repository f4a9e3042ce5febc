"""`tierwise eval-summarize`: generate long chats, route every turn, print and save the figures."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import ExitStack
from importlib import resources
from pathlib import Path
from typing import Any

from tierwise.config import TierwiseConfig
from tierwise.tokens import default_counter
from tierwise.training import summarize_eval
from tierwise.training.data import DataError, iter_jsonl
from tierwise.training.http_summarizer import (
    HttpSummarizer,
    StandinServer,
    SummarizerServerError,
)
from tierwise.training.long_chats import generate

# What the stand-in answers to every summarizer call: a summary-shaped paragraph (the
# stand-in is a server, not a model, so the figures measure routing, calls and latency).
STANDIN_REPLY = (
    "The user has asked a series of questions on several subjects and the assistant answered "
    "each with a worked explanation. The user prefers precise answers with the steps shown, "
    "asked for definitions before examples, and twice asked the assistant to double-check "
    "arithmetic. Facts established so far: the questions covered science, mathematics, "
    "history and programming; earlier answers gave formulas, dates and short code samples. "
    "Open items: the user may return to the programming question and wants a concise recap."
)


def run(args: argparse.Namespace, config: TierwiseConfig) -> int:
    prompts, source = _prompts(args.prompts)
    if not prompts:
        return 1
    local = config.ranked_tiers[0]
    counter = default_counter()
    chats = generate(
        prompts,
        chats=args.chats,
        sizes=args.sizes,
        window=local.context_window,
        counter=counter,
        seed=args.seed,
    )
    with ExitStack() as stack:
        try:
            if args.summarizer_url:
                url, what = args.summarizer_url, f"{args.summarizer_url} ({args.summarizer_model})"
            else:
                log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                server = stack.enter_context(
                    StandinServer(
                        log_dir / "standin.log", STANDIN_REPLY, args.summarizer_latency_ms
                    )
                )
                url = server.base_url
                what = (
                    f"local stand-in server on {server.root} (fixed reply, "
                    f"{args.summarizer_latency_ms:g} ms added delay)"
                )
        except SummarizerServerError as exc:
            print(f"tierwise eval-summarize: {exc}", file=sys.stderr)
            return 1
        summarizer = HttpSummarizer(url, args.summarizer_model)
        stack.callback(summarizer.close)
        results = summarize_eval.run(config, chats, summarizer, show_progress=not args.quiet)
    setup: dict[str, Any] = {
        "chats": len(chats),
        "prompts": source,
        "seed": args.seed,
        "sizes": list(args.sizes),
        "local_tier": local.name,
        "local_window": local.context_window,
        "summarizer": what,
        "tokenizer": counter.source,
    }
    data = summarize_eval.report(results, setup)
    print(summarize_eval.format_report(data))
    if args.json:
        data["turns"] = summarize_eval.rows_as_dicts(results)
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"report written to {args.json}")
    return 0


def _prompts(path: Path) -> tuple[list[str], str]:
    """Texts from a JSONL file; the bundled examples when the default data is not present."""
    if not path.exists() and path.parts[:2] == ("..", "shared"):
        path = Path(str(resources.files("tierwise.defaults").joinpath("examples.jsonl")))
        print(f"tierwise eval-summarize: shared data not found; using {path}", file=sys.stderr)
    try:
        texts = [row["text"] for _, row in iter_jsonl(path) if isinstance(row.get("text"), str)]
    except FileNotFoundError:
        print(f"tierwise eval-summarize: {path}: no such file", file=sys.stderr)
        return [], str(path)
    except (DataError, OSError) as exc:
        print(f"tierwise eval-summarize: {exc}", file=sys.stderr)
        return [], str(path)
    texts = [t for t in texts if t.strip()]
    if not texts:
        print(f"tierwise eval-summarize: {path}: no lines with a 'text' string", file=sys.stderr)
    return texts, str(path)

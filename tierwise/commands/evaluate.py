"""`tierwise eval`, `eval-cache` and `eval-summarize`: quality figures on data files.

The parsers are here; each implementation loads only when its command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tierwise.commands.common import (
    SHARED_DATA,
    config_of,
    positive_int,
    unit_interval,
    window_multiples,
    write_json,
)

if TYPE_CHECKING:
    from tierwise.commands.common import Subparsers
    from tierwise.config import TierwiseConfig
    from tierwise.encoder import Encoder
    from tierwise.scoring.base import Scorer


def register(sub: Subparsers) -> None:
    evaluate = sub.add_parser("eval", help="accuracy / APGR of tierwise and baselines on files")
    evaluate.add_argument("files", nargs="*", type=Path, help="label or outcome JSONL files")
    evaluate.add_argument(
        "--cv",
        choices=("source",),
        help="leave-one-source-out cross-validation over the data directory instead of files",
    )
    evaluate.add_argument(
        "--data", type=Path, default=SHARED_DATA, help="data directory for --cv (outcomes/, ...)"
    )
    evaluate.add_argument(
        "--ceiling",
        action="store_true",
        help="with --cv source: also the upper bounds (in-source k-fold, judge agreement, "
        "MMLU subject prior) that show how far the shipped data lets routing go",
    )
    evaluate.add_argument(
        "--judge-sim",
        action="store_true",
        help="with --cv source: the LLM judge's effect on held-out AlpacaEval, simulated with "
        "other small models' judged outcomes as its verdict (an optimistic proxy)",
    )
    evaluate.add_argument("--json", type=Path, help="write the full report here")
    evaluate.add_argument(
        "--plot", type=Path, help="write the quality-cost curves of outcome files here (PNG)"
    )
    evaluate.add_argument(
        "--target-quality",
        type=unit_interval,
        default=0.8,
        help="share of the strong model's quality gain to keep when reporting the strong share "
        "(and so the cost) it takes; default 0.8",
    )
    evaluate.add_argument(
        "--split",
        choices=("all", "design", "held-out"),
        default="all",
        help="outcome rows to use: the project's design half, its held-out half, or all",
    )
    evaluate.set_defaults(handler=cmd_eval)

    eval_cache = sub.add_parser(
        "eval-cache", help="semantic cache: rewording hits vs look-alike false hits, by budget"
    )
    eval_cache.add_argument("--data", type=Path, default=SHARED_DATA)
    eval_cache.add_argument("--json", type=Path, help="write the full report here")
    eval_cache.add_argument("--plot", type=Path, help="write the curves as a PNG")
    eval_cache.add_argument("--no-guard", action="store_true", help="without the anchor guard")
    eval_cache.add_argument(
        "--write-thresholds",
        type=Path,
        help="write the design half's per-band curves here (the package ships "
        "tierwise/cache/thresholds.json)",
    )
    eval_cache.set_defaults(handler=cmd_eval_cache)

    summ = sub.add_parser(
        "eval-summarize",
        help="long chats: share of turns kept on their tier, with and without summarization",
    )
    summ.add_argument(
        "--prompts",
        type=Path,
        default=SHARED_DATA / "complexity" / "stream_balanced_dev.jsonl",
        help="JSONL with a 'text' per line: the questions and reply text chats are built from",
    )
    summ.add_argument("--chats", type=positive_int, default=30, help="how many chats")
    summ.add_argument(
        "--sizes",
        type=window_multiples,
        default=(2.0, 4.0, 8.0),
        help="comma-separated multiples of the cheapest tier's window to grow chats to",
    )
    summ.add_argument("--seed", type=int, default=7)
    summ.add_argument(
        "--summarizer-url",
        help="OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1); default: start the "
        "local stand-in server",
    )
    summ.add_argument("--summarizer-model", default="summarizer", help="model name to ask for")
    summ.add_argument(
        "--summarizer-latency-ms",
        type=float,
        default=0.0,
        help="delay the stand-in server adds before answering (ignored with --summarizer-url)",
    )
    summ.add_argument("--json", type=Path, help="write the report and every turn here")
    summ.add_argument("--quiet", action="store_true", help="no progress bar")
    summ.set_defaults(handler=cmd_eval_summarize)


def cmd_eval(args: argparse.Namespace) -> int:
    from tierwise.training import run as evaluation
    from tierwise.training.data import DataError
    from tierwise.training.metrics import OutcomeCurve

    if args.cv:
        from tierwise.commands import eval_cv

        return eval_cv.run(args)
    if args.ceiling or args.judge_sim:
        flag = "--ceiling" if args.ceiling else "--judge-sim"
        print(f"tierwise eval: {flag} goes with --cv source", file=sys.stderr)
        return 1
    if not args.files:
        print("tierwise eval: give JSONL files, or --cv source", file=sys.stderr)
        return 1
    scorers = scorers_to_evaluate(config_of(args))
    report: dict[str, object] = {"scorers": list(scorers), "split": args.split, "files": {}}
    panels: dict[str, dict[str, OutcomeCurve]] = {}
    for path in args.files:
        try:
            rows, results, curves = evaluation.evaluate_file(
                path, scorers, split=args.split, target_pgr=args.target_quality
            )
        except (DataError, OSError) as exc:
            print(f"tierwise eval: {exc}", file=sys.stderr)
            return 1
        print(evaluation.format_table(path, rows, results))
        report["files"][str(path)] = results  # type: ignore[index]
        if curves:
            panels[f"{path.name} ({args.split}, {len(rows)} rows)"] = curves
    print(evaluation.NOTES)
    if args.json:
        write_json(args.json, report)
        print(f"report written to {args.json}")
    if args.plot and panels:
        from tierwise.training.plot import plot_curves

        try:
            print(f"quality-cost curves written to {plot_curves(panels, args.plot)}")
        except ImportError as exc:
            print(f"tierwise eval: no plot: {exc}", file=sys.stderr)
    return 0


def scorers_to_evaluate(config: TierwiseConfig) -> dict[str, Scorer]:
    """The heuristic, the learned scorer and the cascade, as far as they run here."""
    from tierwise.scoring.cascade import CascadeScorer
    from tierwise.scoring.factory import learned_or_none
    from tierwise.scoring.heuristic import HeuristicScorer

    bands = config.scoring.bands
    heuristic = HeuristicScorer(bands=bands)
    scorers: dict[str, Scorer] = {"tierwise-heuristic": heuristic}
    learned = learned_or_none(config)
    if learned is not None:
        scorers["tierwise-learned"] = learned
        scorers["tierwise-cascade"] = CascadeScorer(
            heuristic, learned, config.scoring.cascade, bands=bands
        )
    return scorers


def cache_encoder(config: TierwiseConfig, command: str) -> Encoder | None:
    """The encoder with the cache's window; None (after saying why) when it cannot run here."""
    from tierwise.cache.embedders import window_encoder
    from tierwise.encoder import EncoderUnavailable

    try:
        return window_encoder(config)
    except EncoderUnavailable as exc:
        print(f"tierwise {command}: {exc}", file=sys.stderr)
        return None


def cmd_eval_cache(args: argparse.Namespace) -> int:
    from tierwise.training import cache_eval as evaluate

    config = config_of(args)
    encoder = cache_encoder(config, "eval-cache")
    if encoder is None:
        return 1
    budget = config.cache.max_false_hit_rate
    static = None
    if config.cache.static_gate:  # replay the gate the cache applies
        from tierwise.static_encoder import StaticEncoderUnavailable, shared_static_encoder

        try:
            static = shared_static_encoder()
        except StaticEncoderUnavailable as exc:
            print(f"tierwise eval-cache: {exc}", file=sys.stderr)
            return 1
    report = evaluate.run(
        args.data, encoder, guard=not args.no_guard, max_false_hit_rate=budget, static=static
    )
    print(evaluate.format_report(report))
    if args.write_thresholds:
        evaluate.write_thresholds(report, args.write_thresholds)
        print(f"thresholds written to {args.write_thresholds}")
    write_json(args.json, report)
    if args.plot:
        evaluate.plot(report, args.plot)
        print(f"plot written to {args.plot}")
    return 0


def cmd_eval_summarize(args: argparse.Namespace) -> int:
    from tierwise.commands import eval_summarize

    return eval_summarize.run(args, config_of(args))

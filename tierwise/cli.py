"""The `tierwise` command line: route, score, evaluate, benchmark, run and inspect."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierwise.commands import adapt as adapt_command
from tierwise.config import ConfigError, TierwiseConfig, load_config
from tierwise.request import ChatRequest, RequestError
from tierwise.router import TierRouter
from tierwise.rules import RoutingError
from tierwise.scoring.base import Scorer

if TYPE_CHECKING:
    from tierwise.encoder import Encoder

SHARED_DATA = Path("../shared/data")
EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="tierwise: %(levelname)s: %(message)s")
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"tierwise: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tierwise", description="Complexity-aware tiered routing (local -> HPC -> cloud)."
    )
    parser.add_argument("--config", help="tierwise YAML config (default: the embedded one)")
    sub = parser.add_subparsers(dest="command", required=True)

    route = sub.add_parser("route", help="decide the tier for one prompt; JSON out")
    route.add_argument("prompt", help="the user message ('-' reads it from stdin)")
    route.add_argument("--system", help="a system prompt to include")
    route.add_argument("--image", action="append", default=[], help="an image URL (repeatable)")
    route.add_argument("--tools", action="store_true", help="pretend the request defines tools")
    route.set_defaults(handler=cmd_route)

    score = sub.add_parser("score", help="score JSONL lines ({text} or {messages}); stdin default")
    score.add_argument("file", nargs="?", help="input JSONL (default: stdin)")
    score.add_argument("-o", "--output", help="write here instead of stdout")
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    score.set_defaults(handler=cmd_score)

    adapt_command.add_parser(sub)
    doctor = sub.add_parser("doctor", help="check config, GPU, tokenizer and host packages")
    doctor.set_defaults(handler=cmd_doctor)

    up = sub.add_parser(
        "up", help="start a LiteLLM proxy with the `auto` model (stand-ins for unset tiers)"
    )
    up.add_argument("--port", type=int, default=4000)
    up.add_argument("--host", default="127.0.0.1", help="address to listen on")
    up.add_argument(
        "--smoke", action="store_true", help="send a few requests, print where they went, exit"
    )
    up.set_defaults(handler=cmd_up)

    demo = sub.add_parser("demo", help="route the bundled example prompts and explain each")
    demo.set_defaults(handler=cmd_demo)

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
    evaluate.add_argument("--json", type=Path, help="write the full report here")
    evaluate.add_argument(
        "--plot", type=Path, help="write the quality-cost curves of outcome files here (PNG)"
    )
    evaluate.add_argument(
        "--target-quality",
        type=_unit_interval,
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

    calibrate = sub.add_parser(
        "calibrate", help="set the strong tier's threshold from your own outcome file"
    )
    calibrate.add_argument(
        "file",
        type=Path,
        help="outcome JSONL (text, weak, strong per row); for --tier-shares any JSONL with text",
    )
    goal = calibrate.add_mutually_exclusive_group(required=True)
    goal.add_argument(
        "--target-quality",
        type=_unit_interval,
        help="keep this share of the strong tier's quality gain (0.9 = 90%%), at least cost",
    )
    goal.add_argument(
        "--max-strong-share",
        type=_unit_interval,
        help="send at most this share of requests to the strong tier, as well as possible",
    )
    goal.add_argument(
        "--tier-shares",
        type=_shares,
        help="share of your prompts per tier, cheapest first (e.g. 0.5,0.3,0.2): sets every "
        "tier's min_score from the scores of the file's prompts",
    )
    calibrate.add_argument("--strong-tier", help="the tier to calibrate (default: the strongest)")
    calibrate.add_argument(
        "-o",
        "--output",
        type=Path,
        help="write the config here (default: update --config in place)",
    )
    calibrate.add_argument("--dry-run", action="store_true", help="print, write nothing")
    calibrate.set_defaults(handler=cmd_calibrate)

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

    bench = sub.add_parser("bench", help="benchmarks that print figures")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    decide = bench_sub.add_parser("decide", help="p50/p99 decision latency vs LiteLLM's")
    decide.add_argument("--data", type=Path, default=SHARED_DATA / "complexity")
    decide.add_argument("--repeat", type=int, default=3)
    decide.add_argument("--json", type=Path, help="write the figures here too")
    decide.set_defaults(handler=cmd_bench_decide)

    from relay import admin as hpc_admin  # parsers only: the SDK loads when a command runs

    hpc_admin.add_parser(sub)

    openwebui = sub.add_parser("openwebui", help="Open WebUI: install the auto Pipe")
    openwebui_sub = openwebui.add_subparsers(dest="openwebui", required=True)
    install = openwebui_sub.add_parser(
        "install", help="create or update the auto function through Open WebUI's API"
    )
    install.add_argument("--url", required=True, help="Open WebUI's address, e.g. http://host:8080")
    install.add_argument(
        "--token",
        default=os.environ.get("OPENWEBUI_TOKEN"),
        help="an admin's API key or JWT (default: $OPENWEBUI_TOKEN)",
    )
    install.add_argument("--id", default="auto", help="function id = model id (default: auto)")
    install.add_argument(
        "--tier-models", help="valve tier_models, e.g. 'local=llama3.2:1b; cloud=gpt-4o'"
    )
    install.add_argument("--thresholds", help="valve thresholds, e.g. 'hpc=0.33; cloud=0.67'")
    install.add_argument(
        "--valve", action="append", default=[], metavar="KEY=VALUE", help="any other valve"
    )
    install.add_argument("--public", action="store_true", help="let every user use 'auto'")
    install.add_argument(
        "--builtin-tools",
        action="store_true",
        help="keep Open WebUI's built-in tools on for 'auto' (default: off, see the README)",
    )
    install.set_defaults(handler=cmd_openwebui_install)

    proxy = bench_sub.add_parser(
        "proxy", help="added latency and throughput of `auto` vs a plain LiteLLM model group"
    )
    proxy.add_argument("--requests", type=int, default=200, help="sequential requests per side")
    proxy.add_argument("--concurrency", type=int, default=8)
    proxy.add_argument("--burst", type=int, default=400, help="requests per throughput burst")
    proxy.add_argument("--json", type=Path, help="write the figures here too")
    proxy.set_defaults(handler=cmd_bench_proxy)

    hostile = bench_sub.add_parser(
        "hostile",
        help="hostile requests interleaved with another user's: who stays on local, drops, "
        "added p50 (Redis signals on and off)",
    )
    hostile.add_argument("--hostile", type=int, default=100, help="hostile requests per proxy")
    hostile.add_argument("--normal", type=int, default=100, help="normal requests per proxy")
    hostile.add_argument("--json", type=Path, help="write the figures here too")
    hostile.set_defaults(handler=cmd_bench_hostile)

    bench_cache = bench_sub.add_parser(
        "cache", help="cache lookup p50/p99 at 1k/10k/100k entries, insert rate, memory"
    )
    bench_cache.add_argument("--data", type=Path, default=SHARED_DATA)
    bench_cache.add_argument("--sizes", default="1000,10000,100000", help="entry counts")
    bench_cache.add_argument("--json", type=Path, help="write the figures here too")
    bench_cache.set_defaults(handler=cmd_bench_cache)

    bench_score = bench_sub.add_parser(
        "score", help="p50/p99 of the learned path at ~64 and ~512 tokens; RSS after loading"
    )
    bench_score.add_argument("--data", type=Path, default=SHARED_DATA)
    bench_score.add_argument("--repeat", type=int, default=3)
    bench_score.add_argument("--json", type=Path, help="write the figures here too")
    bench_score.set_defaults(handler=cmd_bench_score)

    adapt_command.add_bench_parser(bench_sub, SHARED_DATA)
    blog = bench_sub.add_parser(
        "log", help="per-request cost of logging, and dashboard load time on a large log"
    )
    blog.add_argument("--rows", type=int, default=100_000, help="rows in the generated log")
    blog.add_argument("--calls", type=int, default=20_000, help="timed telemetry calls")
    blog.add_argument("--json", type=Path, help="write the figures here too")
    blog.set_defaults(handler=cmd_bench_log)

    dash = sub.add_parser("dashboard", help="serve the web dashboard over the decision log")
    dash.add_argument("--db", type=Path, help="decision log (default: from the config)")
    dash.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    dash.add_argument("--port", type=int, default=8765)
    dash.add_argument(
        "--demo",
        action="store_true",
        help="first write a simulated day of traffic (to --db, or a temporary file)",
    )
    dash.add_argument("--rows", type=int, default=20_000, help="rows for --demo")
    dash.set_defaults(handler=cmd_dashboard)

    report = sub.add_parser("report", help="the dashboard's summary as tables in the terminal")
    report.add_argument("--db", type=Path, help="decision log (default: from the config)")
    report.add_argument("--window", default="24h", help="1h, 6h, 24h, 7d, 30d or all")
    report.add_argument("--json", action="store_true", help="print the summary as JSON")
    report.set_defaults(handler=cmd_report)

    demo_log = sub.add_parser("demo-log", help="write a simulated, reproducible decision log")
    demo_log.add_argument("path", type=Path, help="SQLite file to create or append to")
    demo_log.add_argument("--rows", type=int, default=20_000)
    demo_log.add_argument("--hours", type=float, default=24.0, help="span ending now")
    demo_log.add_argument("--seed", type=int, default=7)
    demo_log.set_defaults(handler=cmd_demo_log)

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
    summ.add_argument("--chats", type=_positive_int, default=30, help="how many chats")
    summ.add_argument(
        "--sizes",
        type=_sizes,
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

    relay = bench_sub.add_parser(
        "relay", help="relay TTFT vs direct, tokens/s, concurrent streams intact"
    )
    relay.add_argument("--ttft-runs", type=int, default=50)
    relay.add_argument("--throughput-tokens", type=int, default=100_000)
    relay.add_argument("--streams", type=int, default=200)
    relay.add_argument("--tokens", type=int, default=500, help="tokens per concurrent stream")
    relay.add_argument("--runs", type=int, default=1, help="repeat the concurrent check")
    relay.add_argument(
        "--loaded",
        action="store_true",
        help="also run the concurrent check while two busy loops saturate the cores",
    )
    relay.add_argument("--json", type=Path, help="write the figures here too")
    relay.set_defaults(handler=cmd_bench_relay)

    hpc_submit = bench_sub.add_parser(
        "hpc-submit", help="wait before Globus Compute has a task: SDK defaults vs tierwise's"
    )
    hpc_submit.add_argument("--requests", type=int, default=20)
    hpc_submit.add_argument("--interval-s", type=float, default=1.0)
    hpc_submit.add_argument("--json", type=Path, help="write the figures here too")
    hpc_submit.set_defaults(handler=cmd_bench_hpc_submit)

    train = sub.add_parser("train", help="fit the scorers' weights from labelled data")
    train.add_argument("--data", type=Path, default=SHARED_DATA)
    train.add_argument(
        "--out", type=Path, default=Path(str(resources.files("tierwise.scoring"))) / "artifacts"
    )
    train.add_argument(
        "--heuristic-only", action="store_true", help="refit the heuristic weights only"
    )
    train.set_defaults(handler=cmd_train)
    return parser


def _unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is outside (0, 1]")
    return value


def _config(args: argparse.Namespace) -> TierwiseConfig:
    return load_config(args.config)


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return number


def _sizes(value: str) -> tuple[float, ...]:
    try:
        sizes = tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(not 0 < s <= 64 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated multiples between 0 and 64, like 2,4,8; got {value!r}"
        )
    return sizes


def cmd_route(args: argparse.Namespace) -> int:
    router = TierRouter(_config(args))
    messages: list[dict[str, object]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    content: object = prompt
    if args.image:
        content = [{"type": "text", "text": prompt}] + [
            {"type": "image_url", "image_url": {"url": url}} for url in args.image
        ]
    messages.append({"role": "user", "content": content})
    body: dict[str, object] = {"model": "auto", "messages": messages}
    if args.tools:
        body["tools"] = [{"type": "function", "function": {"name": "tool", "parameters": {}}}]
    try:
        decision = router.decide(ChatRequest.from_openai(body))
    except (RequestError, RoutingError) as exc:
        print(json.dumps({"error": str(exc)}))
        print(f"tierwise route: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(decision.as_dict(), indent=2))
    print(decision.explain(), file=sys.stderr)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from tierwise.commands import score

    router = TierRouter(_config(args))
    sink = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        if args.file:
            path = Path(args.file)
            try:
                total = sum(1 for line in path.open("rb") if line.strip())
                with path.open("rb") as source:
                    return score.run(router, source, sink, total, not args.quiet)
            except OSError as exc:
                print(f"tierwise score: cannot read {path}: {exc.strerror}", file=sys.stderr)
                return 1
        return score.run(router, sys.stdin.buffer, sink, None, False)
    finally:
        if sink is not sys.stdout:
            sink.close()


def cmd_doctor(args: argparse.Namespace) -> int:
    from tierwise.commands import doctor

    checks, code = doctor.run(args.config)
    print(doctor.format_checks(checks))
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    router = TierRouter(_config(args))
    examples = resources.files("tierwise.defaults").joinpath("examples.jsonl").read_text()
    print(f"{'tier':<7}{'score':>6}  {'band':<7}prompt")
    for line in examples.splitlines():
        text = json.loads(line)["text"]
        decision = router.decide_text(text)
        print(f"{decision.tier:<7}{decision.score:>6.2f}  {decision.band:<7}{text[:80]}")
    image = ChatRequest.from_openai(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                    ],
                }
            ]
        }
    )
    print("\nAn easy question with an image attached:")
    print(router.decide(image).explain())
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from tierwise.evaluation import run as evaluation
    from tierwise.evaluation.data import DataError
    from tierwise.evaluation.metrics import OutcomeCurve

    if args.cv:
        from tierwise.commands import eval_cv

        return eval_cv.run(args)
    if not args.files:
        print("tierwise eval: give JSONL files, or --cv source", file=sys.stderr)
        return 1
    config = _config(args)
    scorers = _scorers_to_evaluate(config)
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
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.json}")
    if args.plot and panels:
        from tierwise.evaluation.plot import plot_curves

        try:
            print(f"quality-cost curves written to {plot_curves(panels, args.plot)}")
        except ImportError as exc:
            print(f"tierwise eval: no plot: {exc}", file=sys.stderr)
    return 0


def _scorers_to_evaluate(config: TierwiseConfig) -> dict[str, Scorer]:
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


def cmd_calibrate(args: argparse.Namespace) -> int:
    import yaml

    from tierwise.calibrate import (
        CalibrationError,
        apply_threshold,
        pick_threshold,
        thresholds_for_shares,
        write_thresholds,
    )
    from tierwise.evaluation.data import DataError, is_outcome_file, iter_jsonl, load_rows

    config = _config(args)
    if args.config is None and args.output is None and not args.dry_run:
        print(
            "tierwise calibrate: no --config to update; give --output PATH for a calibrated copy "
            "of the embedded default",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        if args.tier_shares is not None:
            texts = [str(v["text"]) for _, v in iter_jsonl(args.file) if "text" in v]
            weak: list[bool] = []
            strong: list[bool] = []
        else:
            rows = load_rows(args.file)
            if not is_outcome_file(rows):
                raise DataError(f"{args.file}: calibration needs outcome rows (text, weak, strong)")
            texts = [r.text for r in rows]
            weak, strong = [bool(r.weak) for r in rows], [bool(r.strong) for r in rows]
    except (DataError, OSError) as exc:
        print(f"tierwise calibrate: {exc}", file=sys.stderr)
        return 1
    router = TierRouter(config)
    scores = [router.scorer.score(ChatRequest.from_text(t)).value for t in texts]
    summary: dict[str, object] = {"scorer": router.scorer.name, "file": str(args.file)}
    try:
        if args.config:
            raw = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
        else:
            default = resources.files("tierwise.defaults").joinpath("default.yaml").read_text()
            raw = yaml.safe_load(default)
        if args.tier_shares is not None:
            set_to = thresholds_for_shares(scores, config, args.tier_shares)
            updated = write_thresholds(raw, set_to)
            summary["rows"] = len(scores)
            summary["tier_shares"] = list(args.tier_shares)
        else:
            result = pick_threshold(
                scores,
                weak,
                strong,
                target_quality=args.target_quality,
                max_strong_share=args.max_strong_share,
            )
            updated, set_to = apply_threshold(raw, config, result.threshold, args.strong_tier)
            summary |= result.as_dict()
    except (CalibrationError, KeyError) as exc:
        print(f"tierwise calibrate: {exc}", file=sys.stderr)
        return EXIT_CONFIG if isinstance(exc, KeyError) else 1
    load_config(updated)  # the result must still be a valid config
    summary["min_score"] = {k: round(v, 4) for k, v in set_to.items()}
    print(json.dumps(summary, indent=2))
    if args.dry_run:
        return 0
    target = args.output or Path(args.config)
    if args.output is None:
        backup = target.with_name(target.name + ".bak")
        backup.write_text(target.read_text(encoding="utf-8"), encoding="utf-8")
        print(f"previous config kept as {backup}", file=sys.stderr)
    target.write_text(yaml.safe_dump(updated, sort_keys=False), encoding="utf-8")
    print(f"thresholds written to {target} (comments are not kept)", file=sys.stderr)
    return 0


def _shares(value: str) -> tuple[float, ...]:
    """'0.5,0.3,0.2' -> shares per tier, cheapest first."""
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r}: give one share per tier, cheapest first, e.g. 0.5,0.3,0.2"
        ) from None


def _cache_encoder(config: TierwiseConfig, command: str) -> Encoder | None:
    """The encoder with the cache's window; None (after saying why) when it cannot run here."""
    from tierwise.encoder import EncoderUnavailable, shared_encoder

    window = config.encoder.model_copy(update={"max_tokens": config.cache.window_tokens})
    try:
        return shared_encoder(window)
    except EncoderUnavailable as exc:
        print(f"tierwise {command}: {exc}", file=sys.stderr)
        return None


def cmd_eval_cache(args: argparse.Namespace) -> int:
    from tierwise.cache import evaluate

    config = _config(args)
    encoder = _cache_encoder(config, "eval-cache")
    if encoder is None:
        return 1
    budget = config.cache.max_false_hit_rate
    report = evaluate.run(args.data, encoder, guard=not args.no_guard, max_false_hit_rate=budget)
    print(evaluate.format_report(report))
    if args.write_thresholds:
        evaluate.write_thresholds(report, args.write_thresholds)
        print(f"thresholds written to {args.write_thresholds}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        evaluate.plot(report, args.plot)
        print(f"plot written to {args.plot}")
    return 0


def cmd_bench_cache(args: argparse.Namespace) -> int:
    from tierwise.bench import cache, decide

    config = _config(args)
    encoder = _cache_encoder(config, "bench cache")
    if encoder is None:
        return 1
    paths = sorted(args.data.glob("**/*.jsonl")) if args.data.is_dir() else []
    if not paths:
        paths = [Path(str(resources.files("tierwise.defaults").joinpath("examples.jsonl")))]
    prompts = decide.load_prompts(paths)
    sizes = [int(n) for n in args.sizes.split(",")]
    results = cache.run(encoder, prompts, sizes)
    print(cache.format_results(results, encoder.max_tokens))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def cmd_bench_decide(args: argparse.Namespace) -> int:
    from tierwise.bench import decide

    paths = sorted(args.data.glob("*.jsonl")) if args.data.is_dir() else []
    source = str(args.data)
    if not paths:
        paths = [Path(str(resources.files("tierwise.defaults").joinpath("examples.jsonl")))]
        source = "bundled examples"
    prompts = decide.load_prompts(paths)
    print(f"prompts: {len(prompts)} from {source}", file=sys.stderr)
    results = decide.run(_config(args), prompts, repeat=args.repeat)
    print(decide.format_results(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def cmd_openwebui_install(args: argparse.Namespace) -> int:
    from openwebui_pipe import install

    try:
        if not args.token:
            raise install.InstallError(
                "--token (or $OPENWEBUI_TOKEN) is required: an admin's API key"
            )
        valves = install.parse_valve_args(args.valve)
        if args.tier_models is not None:
            valves["tier_models"] = args.tier_models
        if args.thresholds is not None:
            valves["thresholds"] = args.thresholds
        api = install.OpenWebUI(args.url, args.token)
        result = install.install(
            api,
            function_id=args.id,
            valves=valves,
            public=args.public,
            builtin_tools=args.builtin_tools,
        )
    except install.InstallError as exc:
        print(f"tierwise openwebui install: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from litellm_plugin import up

    config = Path(args.config) if args.config else None
    return up.run(args.port, args.host, args.smoke, os.environ, config_path=config)


def cmd_bench_proxy(args: argparse.Namespace) -> int:
    from tierwise.bench import proxy

    results = proxy.run(
        args.config, requests=args.requests, concurrency=args.concurrency, burst=args.burst
    )
    print(proxy.format_results(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def cmd_bench_hostile(args: argparse.Namespace) -> int:
    from tierwise.bench import hostile

    results = hostile.run(hostile=args.hostile, normal=args.normal)
    print(hostile.format_results(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def cmd_bench_relay(args: argparse.Namespace) -> int:
    from tierwise.bench import relay

    def run() -> dict[str, Any]:
        return relay.run(
            args.ttft_runs,
            args.throughput_tokens,
            args.streams,
            args.tokens,
            runs=args.runs,
            loaded=args.loaded,
        )

    return _bench("relay", run, relay.format_results, args.json)


def cmd_bench_hpc_submit(args: argparse.Namespace) -> int:
    from tierwise.bench import hpc_submit

    def run() -> dict[str, Any]:
        return hpc_submit.run(args.requests, args.interval_s)

    code = _bench("hpc-submit", run, hpc_submit.format_results, args.json)
    # The SDK's exit handler would wait (about a minute) for results that the stand-in's
    # dropped result channel never delivers: nothing is left to do, so leave at once.
    sys.stdout.flush()
    os._exit(code)


def _bench(
    name: str,
    run: Callable[[], dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
    json_path: Path | None,
) -> int:
    """Run a benchmark that needs its own processes or ports; print (and keep) its figures."""
    try:
        results = run()
    except (RuntimeError, ImportError) as exc:
        print(f"tierwise bench {name}: {exc}", file=sys.stderr)
        return 1
    print(render(results))
    if json_path:
        json_path.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def cmd_bench_score(args: argparse.Namespace) -> int:
    from tierwise.bench import decide, score
    from tierwise.scoring.heuristic import HeuristicScorer
    from tierwise.scoring.learned import LearnedScorer
    from tierwise.static_encoder import NAME, StaticEncoderUnavailable, shared_static_encoder

    config = _config(args)
    paths = sorted(args.data.glob("**/*.jsonl")) if args.data.is_dir() else []
    if not paths:
        paths = [Path(str(resources.files("tierwise.defaults").joinpath("examples.jsonl")))]
    texts = decide.load_prompts(paths)
    bands = config.scoring.bands

    def load() -> LearnedScorer:
        return LearnedScorer(shared_static_encoder(), bands=bands)

    try:
        results = score.run(load, HeuristicScorer(bands=bands), texts, args.repeat)
    except StaticEncoderUnavailable as exc:
        print(f"tierwise bench score: {exc}", file=sys.stderr)
        return 1
    print(score.format_results(results, NAME))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def cmd_eval_summarize(args: argparse.Namespace) -> int:
    from tierwise.commands import eval_summarize

    return eval_summarize.run(args, _config(args))


def cmd_train(args: argparse.Namespace) -> int:
    from tierwise.evaluation.data import load_rows
    from tierwise.scoring import fit_heuristic

    complexity = args.data / "complexity"
    labels = complexity / "stream_1800.jsonl"
    # The heuristic's closed head is fitted on the exam outcomes (open chat has no choices).
    outcomes = [args.data / "outcomes" / f"{n}_dev.jsonl" for n in ("gsm8k", "mmlu")]
    if not labels.is_file() or not all(p.is_file() for p in outcomes):
        print(
            f"tierwise train: need {labels} and outcomes/gsm8k_dev.jsonl, mmlu_dev.jsonl "
            f"under {args.data}",
            file=sys.stderr,
        )
        return 1
    outcome_rows = [row for path in outcomes for row in load_rows(path)]
    model = fit_heuristic.fit(load_rows(labels), outcome_rows)
    out = fit_heuristic.save(model, [labels, *outcomes], args.out)
    print(f"heuristic weights written to {out}")
    if args.heuristic_only:
        return 0
    return _train_learned(args, model)


def _train_learned(args: argparse.Namespace, heuristic: object) -> int:
    from tierwise.encoder import cache_dir
    from tierwise.evaluation.cv import build_pool
    from tierwise.evaluation.sources import data_files, load_sources
    from tierwise.scoring import fit_learned
    from tierwise.static_encoder import NAME, StaticEncoderUnavailable, shared_static_encoder

    try:
        encoder = shared_static_encoder()
    except StaticEncoderUnavailable as exc:
        print(f"tierwise train: learned head skipped: {exc}", file=sys.stderr)
        return 1
    pool = build_pool(load_sources(args.data), encoder, NAME, cache=cache_dir())
    model, report = fit_learned.train(pool, NAME)
    out = fit_learned.save(model, report, data_files(args.data), args.out)
    print(json.dumps({"chosen": report["chosen"]}, indent=2))
    print(f"learned head written to {out}")
    return 0


def _log_path(args: argparse.Namespace, config: TierwiseConfig) -> Path:
    """--db, else the config's telemetry.path, else the default location."""
    from tierwise.telemetry.log import default_path

    if args.db is not None:
        return Path(args.db)
    configured = config.telemetry.path
    return Path(configured).expanduser() if configured else default_path()


def cmd_dashboard(args: argparse.Namespace) -> int:
    import tempfile

    from tierwise.dashboard.server import DashboardServer
    from tierwise.telemetry.demo import write_demo_log

    config = _config(args)
    if args.demo:
        db = args.db or Path(tempfile.mkdtemp(prefix="tierwise-demo-")) / "decisions.db"
        written = write_demo_log(db, rows=args.rows, config=config)
        print(f"demo: wrote {written:,} simulated requests to {db}", file=sys.stderr)
    else:
        db = _log_path(args, config)
        if not db.is_file():
            print(
                f"tierwise dashboard: no decision log at {db}; turn it on with "
                "`telemetry: {log: true}` in the config, or run with --demo",
                file=sys.stderr,
            )
            return 1
    tiers = [t.name for t in config.ranked_tiers]
    try:
        from tierwise.adapt.store import store_for

        adapt_dir = store_for(config).dir
        server = DashboardServer(db, tiers, host=args.host, port=args.port, adapt_dir=adapt_dir)
    except OSError as exc:
        print(
            f"tierwise dashboard: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 1
    print(f"tierwise dashboard: {server.url} (reading {db}; Ctrl-C stops)", file=sys.stderr)
    try:
        server.serve_forever()
    finally:
        server.httpd.server_close()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import sqlite3

    from tierwise.commands.report import format_report
    from tierwise.telemetry.schema import open_reader
    from tierwise.telemetry.summary import WINDOWS, summarize

    config = _config(args)
    if args.window not in WINDOWS:
        print(f"tierwise report: --window must be one of {', '.join(WINDOWS)}", file=sys.stderr)
        return EXIT_CONFIG
    db = _log_path(args, config)
    try:
        conn = open_reader(db)
        try:
            summary = summarize(conn, args.window, [t.name for t in config.ranked_tiers])
        finally:
            conn.close()
    except (FileNotFoundError, sqlite3.DatabaseError) as exc:
        print(f"tierwise report: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_report(summary, str(db)))
    return 0


def cmd_demo_log(args: argparse.Namespace) -> int:
    from tierwise.telemetry.demo import write_demo_log

    written = write_demo_log(
        args.path, rows=args.rows, hours=args.hours, seed=args.seed, config=_config(args)
    )
    print(f"wrote {written:,} simulated requests to {args.path}")
    return 0


def cmd_bench_log(args: argparse.Namespace) -> int:
    import tierwise.bench.log as bench_log

    results = bench_log.run(_config(args), rows=args.rows, calls=args.calls)
    print(bench_log.format_results(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0

"""The `tierwise` command line: route, score, eval, eval-summarize, bench, doctor, demo, train."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from tierwise.config import ConfigError, TierwiseConfig, load_config
from tierwise.request import ChatRequest, RequestError
from tierwise.router import TierRouter
from tierwise.rules import RoutingError

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
    route.add_argument("prompt", help="the user message")
    route.add_argument("--system", help="a system prompt to include")
    route.add_argument("--image", action="append", default=[], help="an image URL (repeatable)")
    route.add_argument("--tools", action="store_true", help="pretend the request defines tools")
    route.set_defaults(handler=cmd_route)

    score = sub.add_parser("score", help="score JSONL lines ({text} or {messages}); stdin default")
    score.add_argument("file", nargs="?", help="input JSONL (default: stdin)")
    score.add_argument("-o", "--output", help="write here instead of stdout")
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    score.set_defaults(handler=cmd_score)

    doctor = sub.add_parser("doctor", help="check config, GPU, tokenizer and host packages")
    doctor.set_defaults(handler=cmd_doctor)

    demo = sub.add_parser("demo", help="route the bundled example prompts and explain each")
    demo.set_defaults(handler=cmd_demo)

    evaluate = sub.add_parser("eval", help="accuracy / APGR of tierwise and baselines on files")
    evaluate.add_argument("files", nargs="+", type=Path, help="label or outcome JSONL files")
    evaluate.add_argument("--json", type=Path, help="write the full report here")
    evaluate.add_argument(
        "--split",
        choices=("all", "design", "held-out"),
        default="all",
        help="outcome rows to use: the project's design half, its held-out half, or all",
    )
    evaluate.set_defaults(handler=cmd_eval)

    bench = sub.add_parser("bench", help="benchmarks that print figures")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    decide = bench_sub.add_parser("decide", help="p50/p99 decision latency vs LiteLLM's")
    decide.add_argument("--data", type=Path, default=SHARED_DATA / "complexity")
    decide.add_argument("--repeat", type=int, default=3)
    decide.add_argument("--json", type=Path, help="write the figures here too")
    decide.set_defaults(handler=cmd_bench_decide)

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

    train = sub.add_parser("train", help="fit the scorers' weights from labelled data")
    train.add_argument("--data", type=Path, default=SHARED_DATA)
    train.add_argument(
        "--out", type=Path, default=Path(str(resources.files("tierwise.scoring"))) / "artifacts"
    )
    train.set_defaults(handler=cmd_train)
    return parser


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
    content: object = args.prompt
    if args.image:
        content = [{"type": "text", "text": args.prompt}] + [
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

    router = TierRouter(_config(args))
    report: dict[str, object] = {"scorer": router.scorer.name, "files": {}}
    for path in args.files:
        try:
            rows, results = evaluation.evaluate_file(path, router.scorer, split=args.split)
        except (DataError, OSError) as exc:
            print(f"tierwise eval: {exc}", file=sys.stderr)
            return 1
        print(evaluation.format_table(path, rows, results))
        report["files"][str(path)] = results  # type: ignore[index]
    print(evaluation.NOTES)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.json}")
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


def cmd_eval_summarize(args: argparse.Namespace) -> int:
    from tierwise.commands import eval_summarize

    return eval_summarize.run(args, _config(args))


def cmd_train(args: argparse.Namespace) -> int:
    from tierwise.evaluation.data import load_rows
    from tierwise.scoring import fit_heuristic

    labels = args.data / "complexity" / "stream_1800.jsonl"
    outcomes = sorted((args.data / "outcomes").glob("*_dev.jsonl"))
    if not labels.is_file() or not outcomes:
        print(
            f"tierwise train: need {labels} and outcomes/*_dev.jsonl under {args.data}",
            file=sys.stderr,
        )
        return 1
    outcome_rows = [row for path in outcomes for row in load_rows(path)]
    model = fit_heuristic.fit(load_rows(labels), outcome_rows)
    out = fit_heuristic.save(model, [labels, *outcomes], args.out)
    print(f"heuristic weights written to {out}")
    return 0

"""The `tierwise` command line: route, score, eval, bench, doctor, demo, train."""

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

    relay = bench_sub.add_parser(
        "relay", help="relay TTFT vs direct, tokens/s, concurrent streams intact"
    )
    relay.add_argument("--ttft-runs", type=int, default=50)
    relay.add_argument("--throughput-tokens", type=int, default=100_000)
    relay.add_argument("--streams", type=int, default=200)
    relay.add_argument("--tokens", type=int, default=500, help="tokens per concurrent stream")
    relay.add_argument("--json", type=Path, help="write the figures here too")
    relay.set_defaults(handler=cmd_bench_relay)

    train = sub.add_parser("train", help="fit the scorers' weights from labelled data")
    train.add_argument("--data", type=Path, default=SHARED_DATA)
    train.add_argument(
        "--out", type=Path, default=Path(str(resources.files("tierwise.scoring"))) / "artifacts"
    )
    train.set_defaults(handler=cmd_train)
    return parser


def _config(args: argparse.Namespace) -> TierwiseConfig:
    return load_config(args.config)


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


def cmd_bench_relay(args: argparse.Namespace) -> int:
    from tierwise.bench import relay

    try:
        results = relay.run(args.ttft_runs, args.throughput_tokens, args.streams, args.tokens)
    except (RuntimeError, ImportError) as exc:
        print(f"tierwise bench relay: {exc}", file=sys.stderr)
        return 1
    print(relay.format_results(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


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

"""`tierwise bench ...`: the benchmarks behind every speed and robustness figure.

Each prints its figures and the comparison measured in the same run; `--json` keeps them.
The benchmark code lives in tierwise/bench/ and loads only when its command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierwise.commands import adapt
from tierwise.commands.common import (
    SHARED_DATA,
    bundled_examples,
    config_of,
    data_files,
    run_and_print,
    write_json,
)

if TYPE_CHECKING:
    from tierwise.commands.common import Subparsers


def register(sub: Subparsers) -> None:
    bench = sub.add_parser("bench", help="benchmarks that print figures")
    kinds = bench.add_subparsers(dest="bench", required=True)

    def kind(name: str, help: str, handler: Any) -> argparse.ArgumentParser:
        parser = kinds.add_parser(name, help=help)
        parser.set_defaults(handler=handler)
        return parser

    decide = kind("decide", "p50/p99 decision latency vs LiteLLM's", cmd_decide)
    decide.add_argument("--data", type=Path, default=SHARED_DATA / "complexity")
    decide.add_argument("--repeat", type=int, default=3)

    proxy = kind(
        "proxy", "added latency and throughput of `auto` vs a plain LiteLLM model group", cmd_proxy
    )
    proxy.add_argument("--requests", type=int, default=200, help="sequential requests per side")
    proxy.add_argument("--concurrency", type=int, default=8)
    proxy.add_argument("--burst", type=int, default=400, help="requests per throughput burst")

    hostile = kind(
        "hostile",
        "hostile requests interleaved with another user's: who stays on local, drops, "
        "added p50 (Redis signals on and off)",
        cmd_hostile,
    )
    hostile.add_argument("--hostile", type=int, default=100, help="hostile requests per proxy")
    hostile.add_argument("--normal", type=int, default=100, help="normal requests per proxy")

    cache = kind(
        "cache", "cache lookup p50/p99 at 1k/10k/100k entries, insert rate, memory", cmd_cache
    )
    cache.add_argument("--data", type=Path, default=SHARED_DATA)
    cache.add_argument("--sizes", default="1000,10000,100000", help="entry counts")

    score = kind(
        "score", "p50/p99 of the learned path at ~64 and ~512 tokens; RSS after loading", cmd_score
    )
    score.add_argument("--data", type=Path, default=SHARED_DATA)
    score.add_argument("--repeat", type=int, default=3)

    log = kind(
        "log", "per-request cost of logging, and dashboard load time on a large log", cmd_log
    )
    log.add_argument("--rows", type=int, default=100_000, help="rows in the generated log")
    log.add_argument("--calls", type=int, default=20_000, help="timed telemetry calls")

    relay = kind("relay", "relay TTFT vs direct, tokens/s, concurrent streams intact", cmd_relay)
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

    submit = kind(
        "hpc-submit",
        "wait before Globus Compute has a task: SDK defaults vs tierwise's",
        cmd_submit,
    )
    submit.add_argument("--requests", type=int, default=20)
    submit.add_argument("--interval-s", type=float, default=1.0)

    adapt.add_bench_parser(kinds, SHARED_DATA)

    for parser in kinds.choices.values():
        parser.add_argument("--json", type=Path, help="write the figures here too")


def cmd_decide(args: argparse.Namespace) -> int:
    from tierwise.bench import decide

    paths = data_files(args.data, "*.jsonl")
    source = "bundled examples" if paths == [bundled_examples()] else str(args.data)
    prompts = decide.load_prompts(paths)
    print(f"prompts: {len(prompts)} from {source}", file=sys.stderr)
    results = decide.run(config_of(args), prompts, repeat=args.repeat)
    print(decide.format_results(results))
    write_json(args.json, results)
    return 0


def cmd_proxy(args: argparse.Namespace) -> int:
    from tierwise.bench import proxy

    results = proxy.run(
        args.config, requests=args.requests, concurrency=args.concurrency, burst=args.burst
    )
    print(proxy.format_results(results))
    write_json(args.json, results)
    return 0


def cmd_hostile(args: argparse.Namespace) -> int:
    from tierwise.bench import hostile

    results = hostile.run(hostile=args.hostile, normal=args.normal)
    print(hostile.format_results(results))
    write_json(args.json, results)
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from tierwise.bench import cache, decide
    from tierwise.commands.evaluate import cache_encoder

    encoder = cache_encoder(config_of(args), "bench cache")
    if encoder is None:
        return 1
    prompts = decide.load_prompts(data_files(args.data))
    sizes = [int(n) for n in args.sizes.split(",")]
    results = cache.run(encoder, prompts, sizes)
    print(cache.format_results(results, encoder.max_tokens))
    write_json(args.json, results)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from tierwise.bench import decide, score
    from tierwise.scoring.heuristic import HeuristicScorer
    from tierwise.scoring.learned import LearnedScorer
    from tierwise.static_encoder import NAME, StaticEncoderUnavailable, shared_static_encoder

    bands = config_of(args).scoring.bands
    texts = decide.load_prompts(data_files(args.data))

    def load() -> LearnedScorer:
        return LearnedScorer(shared_static_encoder(), bands=bands)

    try:
        results = score.run(load, HeuristicScorer(bands=bands), texts, args.repeat)
    except StaticEncoderUnavailable as exc:
        print(f"tierwise bench score: {exc}", file=sys.stderr)
        return 1
    print(score.format_results(results, NAME))
    write_json(args.json, results)
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    import tierwise.bench.log as bench_log

    results = bench_log.run(config_of(args), rows=args.rows, calls=args.calls)
    print(bench_log.format_results(results))
    write_json(args.json, results)
    return 0


def cmd_relay(args: argparse.Namespace) -> int:
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

    return run_and_print("bench relay", run, relay.format_results, args.json)


def cmd_submit(args: argparse.Namespace) -> int:
    from tierwise.bench import hpc_submit

    def run() -> dict[str, Any]:
        return hpc_submit.run(args.requests, args.interval_s)

    code = run_and_print("bench hpc-submit", run, hpc_submit.format_results, args.json)
    # The SDK's exit handler would wait (about a minute) for results that the stand-in's
    # dropped result channel never delivers: nothing is left to do, so leave at once.
    sys.stdout.flush()
    os._exit(code)

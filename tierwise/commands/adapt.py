"""`tierwise adapt` (refit, status, rollback) and `tierwise bench adapt` (the simulation)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierwise.config import load_config

if TYPE_CHECKING:
    from tierwise.commands.common import Subparsers


def register(sub: Subparsers) -> None:
    adapt = sub.add_parser(
        "adapt", help="refit the install's correction from logged outcomes (guarded)"
    )
    what = adapt.add_mutually_exclusive_group()
    what.add_argument("--rollback", action="store_true", help="go back to the previous version")
    what.add_argument("--status", action="store_true", help="show versions and outcomes only")
    adapt.add_argument(
        "--scope",
        default=None,
        metavar="KEY",
        help="a tenant's own versions (adapt.scope: tenant; the key `tierwise adapt` prints)",
    )
    adapt.set_defaults(handler=run)


def add_bench_parser(bench_sub: Any, data: Path) -> None:
    bench = bench_sub.add_parser(
        "adapt", help="replay outcome files as one organisation's traffic; APGR over the stream"
    )
    bench.add_argument("--data", type=Path, default=data)
    bench.add_argument(
        "--org",
        default="mmlu-held-out",
        help="mmlu-held-out | mmlu-design | mmlu-held-out:GROUP (mostly one MMLU subject group: "
        "stem, humanities, social, other)",
    )
    bench.add_argument("--seeds", type=int, default=5)
    bench.add_argument("--stream", type=int, default=2000, help="requests (= outcomes) replayed")
    bench.add_argument("--explore", type=float, default=0.03)
    bench.add_argument("--plot", type=Path, default=Path("bench-adapt.png"))
    bench.add_argument(
        "--guard",
        choices=("policy", "ranking"),
        default="policy",
        help="policy: adopt on the held-back quality at equal strong share (explored outcomes, "
        "by propensity); ranking: on each tier's own outcomes (the previous guard)",
    )
    bench.add_argument(
        "--bounds",
        action="store_true",
        help="also what feedback could buy: fits with both tiers' outcomes known, and "
        "exploration shares 3/10/25%%",
    )
    bench.set_defaults(handler=run_bench)


def run(args: argparse.Namespace) -> int:
    from tierwise.adapt.outcomes import open_log
    from tierwise.adapt.refresh import refresh_all
    from tierwise.adapt.status import adapt_status, format_status
    from tierwise.adapt.store import log_path, store_for

    config = load_config(args.config)
    try:
        store = store_for(config, args.scope)
    except ValueError as exc:
        print(f"tierwise adapt: {exc}", file=sys.stderr)
        return 1
    if args.rollback:
        try:
            version = store.rollback()
        except (ValueError, FileNotFoundError) as exc:
            print(f"tierwise adapt: {exc}", file=sys.stderr)
            return 1
        print(f"rolled back: version {version or 'none (the scorer as it is)'} is in service")
        return 0
    if not log_path(config).is_file():
        print(
            f"tierwise adapt: no decision log at {log_path(config)}: outcomes live there; turn "
            "on `telemetry: {log: true}` (and `adapt: {enabled: true}`) in the config",
            file=sys.stderr,
        )
        return 1
    if args.status:
        conn = open_log(log_path(config))
        try:
            print(format_status(adapt_status(conn, store)))
        finally:
            conn.close()
        return 0
    install, *tenants = refresh_all(config)
    print(f"{install.outcomes} usable outcomes; {install.result.why}")
    print(f"in service: version {install.version or 'none (the scorer as it is)'}")
    for done in tenants:
        serves = done.version or "none of its own (the install-wide one)"
        print(
            f"tenant {done.scope}: {done.outcomes} outcomes; {done.result.why}; in service: "
            f"{serves}"
        )
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from tierwise.bench.adapt import format_result, run_bench

    try:
        result = run_bench(
            args.data,
            org=args.org,
            seeds=args.seeds,
            stream_len=args.stream,
            explore=args.explore,
            plot=args.plot,
            guard=args.guard,
            bounds=args.bounds,
        )
    except (ValueError, OSError, ImportError) as exc:
        print(f"tierwise bench adapt: {exc}", file=sys.stderr)
        return 1
    print(format_result(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0

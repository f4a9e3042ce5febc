"""`tierwise dashboard`, `report` and `demo-log`: read (or simulate) the decision log."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tierwise.commands.common import EXIT_CONFIG, config_of, log_path

if TYPE_CHECKING:
    from tierwise.commands.common import Subparsers


def register(sub: Subparsers) -> None:
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


def cmd_dashboard(args: argparse.Namespace) -> int:
    import tempfile

    from tierwise.dashboard.server import DashboardServer
    from tierwise.telemetry.demo import write_demo_log

    config = config_of(args)
    if args.demo:
        db = args.db or Path(tempfile.mkdtemp(prefix="tierwise-demo-")) / "decisions.db"
        written = write_demo_log(db, rows=args.rows, config=config)
        print(f"demo: wrote {written:,} simulated requests to {db}", file=sys.stderr)
    else:
        db = log_path(args, config)
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

    config = config_of(args)
    if args.window not in WINDOWS:
        print(f"tierwise report: --window must be one of {', '.join(WINDOWS)}", file=sys.stderr)
        return EXIT_CONFIG
    db = log_path(args, config)
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
        args.path, rows=args.rows, hours=args.hours, seed=args.seed, config=config_of(args)
    )
    print(f"wrote {written:,} simulated requests to {args.path}")
    return 0

"""The `tierwise` command line: assembles the subcommands that live in tierwise/commands/.

Each command module registers its own arguments and handler; the heavy parts of a command
load only when it runs, so `tierwise --help` and the routing commands start quickly.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from tierwise.commands import (
    adapt,
    bench,
    calibrate,
    doctor,
    evaluate,
    observe,
    openwebui,
    route,
    score,
    train,
    up,
)
from tierwise.commands.common import EXIT_CONFIG
from tierwise.config import ConfigError

COMMANDS = (route, score, adapt, doctor, up, evaluate, calibrate, bench, openwebui, observe, train)


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
    for command in COMMANDS:
        command.register(sub)
    from relay import admin as hpc_admin  # parsers only: the SDK loads when a command runs

    hpc_admin.add_parser(sub)
    return parser

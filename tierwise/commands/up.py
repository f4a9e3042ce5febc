"""`tierwise up`: a LiteLLM proxy with the `auto` model, on the embedded default or --config."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tierwise.commands.common import Subparsers


def register(sub: Subparsers) -> None:
    up = sub.add_parser(
        "up", help="start a LiteLLM proxy with the `auto` model (stand-ins for unset tiers)"
    )
    up.add_argument("--port", type=int, default=4000)
    up.add_argument("--host", default="127.0.0.1", help="address to listen on")
    up.add_argument(
        "--smoke", action="store_true", help="send a few requests, print where they went, exit"
    )
    up.set_defaults(handler=cmd_up)


def cmd_up(args: argparse.Namespace) -> int:
    from litellm_plugin import up  # the host loads only for this command

    config = Path(args.config) if args.config else None
    return up.run(args.port, args.host, args.smoke, os.environ, config_path=config)

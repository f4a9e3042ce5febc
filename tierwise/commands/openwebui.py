"""`tierwise openwebui install`: create or update the `auto` Pipe through Open WebUI's API."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tierwise.commands.common import Subparsers


def register(sub: Subparsers) -> None:
    openwebui = sub.add_parser("openwebui", help="Open WebUI: install the auto Pipe")
    commands = openwebui.add_subparsers(dest="openwebui", required=True)
    install = commands.add_parser(
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
        help="keep Open WebUI's built-in tools on for 'auto' (default: off, see docs/openwebui.md)",
    )
    install.add_argument(
        "--no-ratings",
        action="store_true",
        help="do not install the event function that stores thumbs up/down (docs/feedback.md)",
    )
    install.set_defaults(handler=cmd_install)


def cmd_install(args: argparse.Namespace) -> int:
    from openwebui_pipe import install  # talks to Open WebUI over HTTP; no open_webui import

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
            ratings=not args.no_ratings,
        )
    except install.InstallError as exc:
        print(f"tierwise openwebui install: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0

"""`tierwise-relay` / `python -m relay`: run the WebSocket relay in the foreground.

The shared secret comes from the environment (TIERWISE_RELAY_SECRET by default) or a file,
never from the command line, where other users could read it in the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from relay.server import RelaySettings, run

EXIT_CONFIG = 2
# Settings that map one-to-one onto a command-line flag of the same name.
TUNABLE = (
    "host",
    "port",
    "buffer_messages",
    "buffer_bytes",
    "max_message_bytes",
    "heartbeat_s",
    "idle_timeout_s",
    "producer_grace_s",
    "consumer_idle_s",
    "consumer_grace_s",
    "orphan_timeout_s",
    "max_channels",
)
DEFAULT_SECRET_ENV = "TIERWISE_RELAY_SECRET"


def build_parser() -> argparse.ArgumentParser:
    d = RelaySettings.__dataclass_fields__
    parser = argparse.ArgumentParser(
        prog="tierwise-relay",
        description="WebSocket relay that streams tokens from HPC workers to the proxy.",
    )
    parser.add_argument("--host", default=d["host"].default, help="address to bind")
    parser.add_argument("--port", type=int, default=d["port"].default)
    parser.add_argument(
        "--secret-env",
        default=DEFAULT_SECRET_ENV,
        help="environment variable holding the shared token secret (>= 32 bytes)",
    )
    parser.add_argument("--secret-file", type=Path, help="read the secret from this file instead")
    parser.add_argument(
        "--buffer-messages",
        type=int,
        default=d["buffer_messages"].default,
        help="messages held per channel before the producer is paused",
    )
    parser.add_argument(
        "--buffer-bytes",
        type=int,
        default=d["buffer_bytes"].default,
        help="bytes held per channel before the producer is paused",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=d["max_message_bytes"].default,
        help="largest frame accepted; a bigger one closes the connection",
    )
    parser.add_argument(
        "--heartbeat-s",
        type=float,
        default=d["heartbeat_s"].default,
        help="how often clients are told to send a heartbeat",
    )
    parser.add_argument(
        "--idle-timeout-s",
        type=float,
        default=d["idle_timeout_s"].default,
        help="producer silence after which its consumer gets an error",
    )
    parser.add_argument(
        "--producer-grace-s",
        type=float,
        default=d["producer_grace_s"].default,
        help="wait for a dropped producer to reconnect before failing",
    )
    parser.add_argument(
        "--consumer-idle-s",
        type=float,
        default=d["consumer_idle_s"].default,
        help="consumer silence after which it counts as gone",
    )
    parser.add_argument(
        "--consumer-grace-s",
        type=float,
        default=d["consumer_grace_s"].default,
        help="wait for a departed consumer to resume before cancelling",
    )
    parser.add_argument(
        "--orphan-timeout-s",
        type=float,
        default=d["orphan_timeout_s"].default,
        help="cancel a channel no consumer has attached to for this long",
    )
    parser.add_argument("--max-channels", type=int, default=d["max_channels"].default)
    parser.add_argument("--certfile", help="serve wss:// with this certificate chain (PEM)")
    parser.add_argument("--keyfile", help="private key for --certfile")
    parser.add_argument("--log-level", default="WARNING")
    return parser


def settings_from_args(args: argparse.Namespace) -> RelaySettings:
    """Build settings or raise ValueError with a message that says what to fix."""
    if args.secret_file:
        try:
            secret = args.secret_file.read_bytes().strip()
        except OSError as exc:
            raise ValueError(
                f"cannot read --secret-file {args.secret_file}: {exc.strerror}"
            ) from None
    else:
        value = os.environ.get(args.secret_env, "")
        if not value:
            raise ValueError(
                f"set {args.secret_env} to the shared relay secret (the proxy needs the same "
                "value), or pass --secret-file"
            )
        secret = value.encode()
    if args.keyfile and not args.certfile:
        raise ValueError("--keyfile needs --certfile")
    tuned = {name: getattr(args, name) for name in TUNABLE}
    return RelaySettings(secret=secret, certfile=args.certfile, keyfile=args.keyfile, **tuned)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s tierwise-relay %(levelname)s %(message)s"
    )
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"tierwise-relay: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(_serve(settings))


async def _serve(settings: RelaySettings) -> int:
    task = asyncio.ensure_future(run(settings))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        return 0
    except OSError as exc:
        print(
            f"tierwise-relay: cannot listen on {settings.host}:{settings.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())

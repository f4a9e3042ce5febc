"""What the subcommands share: the config they load, argument types, figure output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierwise.config import TierwiseConfig, load_config

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

SHARED_DATA = Path("../shared/data")
EXIT_CONFIG = 2


def config_of(args: argparse.Namespace) -> TierwiseConfig:
    """The config named by the global --config, or the embedded default."""
    return load_config(args.config)


def bundled_examples() -> Path:
    return Path(str(resources.files("tierwise.defaults").joinpath("examples.jsonl")))


def data_files(data: Path, pattern: str = "**/*.jsonl") -> list[Path]:
    """JSONL files under a data directory, else the bundled examples (a fresh machine)."""
    paths = sorted(data.glob(pattern)) if data.is_dir() else []
    return paths or [bundled_examples()]


def write_json(path: Path | None, results: object) -> None:
    if path:
        path.write_text(json.dumps(results, indent=2) + "\n")


def run_and_print(
    name: str,
    run: Callable[[], dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
    json_path: Path | None,
) -> int:
    """Run a benchmark that needs its own processes or ports; print (and keep) its figures."""
    try:
        results = run()
    except (RuntimeError, ImportError) as exc:
        print(f"tierwise {name}: {exc}", file=sys.stderr)
        return 1
    print(render(results))
    write_json(json_path, results)
    return 0


def log_path(args: argparse.Namespace, config: TierwiseConfig) -> Path:
    """--db, else the config's telemetry.path, else the default location."""
    from tierwise.telemetry.log import default_path

    if args.db is not None:
        return Path(args.db)
    configured = config.telemetry.path
    return Path(configured).expanduser() if configured else default_path()


def unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is outside (0, 1]")
    return value


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return number


def window_multiples(value: str) -> tuple[float, ...]:
    try:
        sizes = tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(not 0 < s <= 64 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated multiples between 0 and 64, like 2,4,8; got {value!r}"
        )
    return sizes


def tier_shares(value: str) -> tuple[float, ...]:
    """'0.5,0.3,0.2' -> shares per tier, cheapest first."""
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r}: give one share per tier, cheapest first, e.g. 0.5,0.3,0.2"
        ) from None

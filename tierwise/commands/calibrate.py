"""`tierwise calibrate`: set tier thresholds from the install's own prompts or outcomes."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from tierwise.commands.common import EXIT_CONFIG, config_of, tier_shares, unit_interval
from tierwise.config import load_config
from tierwise.request import ChatRequest
from tierwise.router import TierRouter

if TYPE_CHECKING:
    from tierwise.commands.common import Subparsers


def register(sub: Subparsers) -> None:
    calibrate = sub.add_parser(
        "calibrate", help="set the strong tier's threshold from your own outcome file"
    )
    calibrate.add_argument(
        "file",
        type=Path,
        help="outcome JSONL (text, weak, strong per row); for --tier-shares any JSONL with text",
    )
    goal = calibrate.add_mutually_exclusive_group(required=True)
    goal.add_argument(
        "--target-quality",
        type=unit_interval,
        help="keep this share of the strong tier's quality gain (0.9 = 90%%), at least cost",
    )
    goal.add_argument(
        "--max-strong-share",
        type=unit_interval,
        help="send at most this share of requests to the strong tier, as well as possible",
    )
    goal.add_argument(
        "--tier-shares",
        type=tier_shares,
        help="share of your prompts per tier, cheapest first (e.g. 0.5,0.3,0.2): sets every "
        "tier's min_score from the scores of the file's prompts",
    )
    calibrate.add_argument("--strong-tier", help="the tier to calibrate (default: the strongest)")
    calibrate.add_argument(
        "-o",
        "--output",
        type=Path,
        help="write the config here (default: update --config in place)",
    )
    calibrate.add_argument("--dry-run", action="store_true", help="print, write nothing")
    calibrate.set_defaults(handler=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    import yaml

    from tierwise.training.calibrate import (
        CalibrationError,
        apply_threshold,
        pick_threshold,
        thresholds_for_shares,
        write_thresholds,
    )
    from tierwise.training.data import DataError, is_outcome_file, iter_jsonl, load_rows

    config = config_of(args)
    if args.config is None and args.output is None and not args.dry_run:
        print(
            "tierwise calibrate: no --config to update; give --output PATH for a calibrated copy "
            "of the embedded default",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        if args.tier_shares is not None:
            texts = [str(v["text"]) for _, v in iter_jsonl(args.file) if "text" in v]
            weak: list[bool] = []
            strong: list[bool] = []
        else:
            rows = load_rows(args.file)
            if not is_outcome_file(rows):
                raise DataError(f"{args.file}: calibration needs outcome rows (text, weak, strong)")
            texts = [r.text for r in rows]
            weak, strong = [bool(r.weak) for r in rows], [bool(r.strong) for r in rows]
    except (DataError, OSError) as exc:
        print(f"tierwise calibrate: {exc}", file=sys.stderr)
        return 1
    router = TierRouter(config)
    scores = [router.scorer.score(ChatRequest.from_text(t)).value for t in texts]
    summary: dict[str, object] = {"scorer": router.scorer.name, "file": str(args.file)}
    try:
        if args.config:
            raw = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
        else:
            default = resources.files("tierwise.defaults").joinpath("default.yaml").read_text()
            raw = yaml.safe_load(default)
        if args.tier_shares is not None:
            set_to = thresholds_for_shares(scores, config, args.tier_shares)
            updated = write_thresholds(raw, set_to)
            summary["rows"] = len(scores)
            summary["tier_shares"] = list(args.tier_shares)
        else:
            result = pick_threshold(
                scores,
                weak,
                strong,
                target_quality=args.target_quality,
                max_strong_share=args.max_strong_share,
            )
            updated, set_to = apply_threshold(raw, config, result.threshold, args.strong_tier)
            summary |= result.as_dict()
    except (CalibrationError, KeyError) as exc:
        print(f"tierwise calibrate: {exc}", file=sys.stderr)
        return EXIT_CONFIG if isinstance(exc, KeyError) else 1
    load_config(updated)  # the result must still be a valid config
    summary["min_score"] = {k: round(v, 4) for k, v in set_to.items()}
    print(json.dumps(summary, indent=2))
    if args.dry_run:
        return 0
    target = args.output or Path(args.config)
    if args.output is None:
        backup = target.with_name(target.name + ".bak")
        backup.write_text(target.read_text(encoding="utf-8"), encoding="utf-8")
        print(f"previous config kept as {backup}", file=sys.stderr)
    target.write_text(yaml.safe_dump(updated, sort_keys=False), encoding="utf-8")
    print(f"thresholds written to {target} (comments are not kept)", file=sys.stderr)
    return 0

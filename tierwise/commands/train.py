"""`tierwise train`: refit the scorers' shipped weights from the labelled data."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from tierwise.commands.common import SHARED_DATA

if TYPE_CHECKING:
    from tierwise.commands.common import Subparsers


def register(sub: Subparsers) -> None:
    train = sub.add_parser("train", help="fit the scorers' weights from labelled data")
    train.add_argument("--data", type=Path, default=SHARED_DATA)
    train.add_argument(
        "--out", type=Path, default=Path(str(resources.files("tierwise.scoring"))) / "artifacts"
    )
    train.add_argument(
        "--heuristic-only", action="store_true", help="refit the heuristic weights only"
    )
    train.set_defaults(handler=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from tierwise.training import fit_heuristic
    from tierwise.training.data import load_rows

    complexity = args.data / "complexity"
    labels = complexity / "stream_1800.jsonl"
    # The heuristic's closed head is fitted on the exam outcomes (open chat has no choices).
    outcomes = [args.data / "outcomes" / f"{n}_dev.jsonl" for n in ("gsm8k", "mmlu")]
    if not labels.is_file() or not all(p.is_file() for p in outcomes):
        print(
            f"tierwise train: need {labels} and outcomes/gsm8k_dev.jsonl, mmlu_dev.jsonl "
            f"under {args.data}",
            file=sys.stderr,
        )
        return 1
    outcome_rows = [row for path in outcomes for row in load_rows(path)]
    model = fit_heuristic.fit(load_rows(labels), outcome_rows)
    out = fit_heuristic.save(model, [labels, *outcomes], args.out)
    print(f"heuristic weights written to {out}")
    if args.heuristic_only:
        return 0
    return _train_learned(args, model)


def _train_learned(args: argparse.Namespace, heuristic: object) -> int:
    from tierwise.encoder import cache_dir
    from tierwise.scoring.learned import minilm_or_none
    from tierwise.static_encoder import NAME, StaticEncoderUnavailable, shared_static_encoder
    from tierwise.training import fit_learned
    from tierwise.training.cv import build_pool
    from tierwise.training.sources import data_files, load_sources

    try:
        encoder = shared_static_encoder()
    except StaticEncoderUnavailable as exc:
        print(f"tierwise train: learned head skipped: {exc}", file=sys.stderr)
        return 1
    open_encoder = minilm_or_none(fit_learned.OPEN_WINDOW)
    pool = build_pool(
        load_sources(args.data), encoder, NAME, cache=cache_dir(), open_encoder=open_encoder
    )
    model, report = fit_learned.train(pool, NAME)
    out = fit_learned.save(model, report, data_files(args.data), args.out)
    print(json.dumps({"chosen": report["chosen"]}, indent=2))
    print(f"learned head written to {out}")
    return 0

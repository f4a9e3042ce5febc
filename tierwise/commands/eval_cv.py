"""`tierwise eval --cv source`: tierwise against length, LiteLLM and random, source by source.

tierwise's head is refitted for each held-out source with the settings the shipped artifact
was trained with (themselves chosen by this same CV in `tierwise train`); the baselines'
band cut points, where they need any, come from the other sources' labels too.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tierwise.encoder import cache_dir
from tierwise.static_encoder import NAME, StaticEncoderUnavailable, shared_static_encoder
from tierwise.training import baselines, fit_learned
from tierwise.training.cv import (
    baseline_scores,
    build_pool,
    format_table,
    random_summary,
    summarize,
)
from tierwise.training.data import DataError
from tierwise.training.sources import load_sources

NOTES = (
    "Each row: a source held out, everything fitted on the others. tierwise = the learned "
    "scorer refitted per fold with its shipped settings; length = token count (band cuts "
    "fitted on the other sources' labels); litellm = LiteLLM complexity_router's weighted "
    "score and its own tier; random = mean of 10 seeds. AUROC of 'the strong model was "
    "needed' and APGR for outcome sources; AUROC of HIGH and 3-class accuracy for labels. "
    "mean/worst: AUROC over every source, APGR over outcome sources, accuracy over labels."
)


def run(args: argparse.Namespace) -> int:
    try:
        examples = load_sources(args.data)
        encoder = shared_static_encoder()
    except (DataError, OSError, StaticEncoderUnavailable) as exc:
        print(f"tierwise eval: {exc}", file=sys.stderr)
        return 1
    pool = build_pool(examples, encoder, NAME, cache=cache_dir())
    settings = fit_learned.stored_settings()
    results: dict[str, dict[str, Any]] = {
        "tierwise": summarize(pool, *fit_learned.cv_scores(pool, settings, NAME)),
        "length": summarize(pool, *baseline_scores(pool, baselines.length_baseline(0, 0), True)),
    }
    lite = baselines.litellm_or_none()
    if lite is not None:
        results["litellm"] = summarize(pool, *baseline_scores(pool, lite.by_score, False))
    results["random"] = random_summary(pool)
    print(format_table(results))
    print(NOTES)
    if args.json:
        report = {"settings": settings.as_dict(), "methods": results}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.json}")
    return 0

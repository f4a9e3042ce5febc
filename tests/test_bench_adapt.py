"""`tierwise bench adapt`'s simulation on a stream whose hard questions the scorer misjudges."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from tierwise.adapt.fit import FitSettings
from tierwise.adapt.model import sketch_of
from tierwise.bench.adapt import Item, format_result, simulate


def stream(n: int, seed: int) -> list[Item]:
    """Half the questions are on a topic the cheap model cannot do, whatever their score."""
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        topic = rng.randrange(4)
        vector = np.zeros(256, dtype=np.float32)
        vector[topic] = 1.0
        hard = topic < 2
        items.append(Item(rng.random(), sketch_of(vector), weak=not hard, strong=True))
    return items


def test_adapting_beats_the_scorer_on_later_traffic_and_exploration_is_counted() -> None:
    # Half the requests explored: enough for the guard's bound to see the gain by 1,500.
    items = stream(3000, 0)
    run = simulate(
        items, seed=1, stream_len=2000, explore=0.5, strong_share=0.5, settings=FitSettings()
    )
    assert run.adopted[0] == 0 and run.adopted[2000] >= 1
    assert run.apgr[2000] > run.apgr[0] + 0.2
    assert run.cpt80[2000] < run.cpt80[0]
    assert run.explore_quality != 0 or run.explore_strong != 0
    # Each adopted version is followed onto the later traffic, where here it pays off too.
    assert run.adoptions and all(held > 0 and apgr > 0 for held, _, apgr in run.adoptions)


def test_the_report_prints_each_checkpoint_with_its_spread(tmp_path: Path) -> None:
    result = {
        "org": "synthetic",
        "questions": 3000,
        "seeds": 2,
        "stream": 2000,
        "explore": 0.03,
        "strong_share": 0.5,
        "guard": "policy",
        "table": [
            {
                "outcomes": p,
                "apgr": {"mean": 0.5, "sd": 0.01},
                "apgr_gain": {"mean": 0.1, "sd": 0.02},
                "worst_gain": -0.0123,
                "apgr_gain_no_explore": {"mean": 0.05, "sd": 0.02},
                "cpt80": {"mean": 0.6, "sd": 0.03},
                "versions": [1, 1],
            }
            for p in (0, 100, 500, 2000)
        ],
        "exploration": {
            "quality_lost_per_request": {"mean": 0.001, "sd": 0.0},
            "strong_share_added": {"mean": 0.0, "sd": 0.0},
            "apgr_gain_from_exploring": {"mean": 0.05, "sd": 0.01},
        },
        "adoptions": {
            "count": 3,
            "held_back_gain": {"mean": 0.09, "sd": 0.01},
            "later_gain": {"mean": 0.02, "sd": 0.01},
            "later_apgr_gain": {"mean": -0.04, "sd": 0.02},
        },
        "bounds": {
            "same_class": {"mean": -0.038, "sd": 0.011},
            "ridge_256": {"mean": 0.0617, "sd": 0.0106},
            "shares": [
                {
                    "explore": share,
                    "loop": {"mean": 0.01, "sd": 0.02},
                    "loop_worst": -0.0031,
                    "ridge_ips": {"mean": 0.02, "sd": 0.04},
                    "lost": {"mean": 0.002, "sd": 0.001},
                }
                for share in (0.03, 0.1, 0.25)
            ],
        },
    }
    text = format_result(result)
    assert "2000" in text and "+0.1000 ± 0.0200" in text and "exploration" in text
    assert "-0.0123" in text  # the worst seed, not only the mean
    assert "adopted versions: 3" in text and "APGR -0.0400 ± 0.0200" in text
    assert "guard policy" in text and "accuracy at equal strong share" in text
    assert "-0.0380 ± 0.0110" in text and "+0.0617 ± 0.0106" in text  # full information
    assert "25%" in text and "-0.0031" in text  # each exploration share, its worst seed


def test_full_information_bounds_find_the_topic_the_scorer_misjudges() -> None:
    """Both classes fitted with both tiers' outcomes gain; the ridge from one tier's outcomes
    needs exploration: at 25% it finds the topic too."""
    from tierwise.bench.adapt_bounds import full_information, ips_ridge

    items = stream(3000, 2)
    bounds = full_information(items, seed=0, stream_len=2000)
    assert bounds["same_class"] > 0.2 and bounds["ridge_256"] > 0.2
    assert ips_ridge(items, 0, 2000, explore=0.25, share=0.5) > 0.2


def test_a_mostly_one_group_organisation_is_held_out_and_mostly_that_group(
    shared_data: Path,
) -> None:
    from tierwise.bench.adapt_orgs import category_of, organisation
    from tierwise.training.splits import is_design

    rows = organisation(shared_data, "mmlu-held-out:social")
    share = sum(category_of(r) == "social" for r in rows) / len(rows)
    assert abs(share - 0.6) < 0.01 and not any(is_design(r) for r in rows)
    assert len({id(r) for r in rows}) == len(rows)  # no question twice
    assert rows == organisation(shared_data, "mmlu-held-out:social")  # the same every run
    with pytest.raises(ValueError, match="mmlu-held-out:stem"):
        organisation(shared_data, "mmlu-held-out:cooking")

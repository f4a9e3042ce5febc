"""`tierwise bench adapt`: replay outcome files as one organisation's traffic and adapt.

The organisation asks questions from a mix the scorer was not fitted on (by default the
held-out half of the MMLU subjects). Requests stream in; the router (scorer + current
adaptation) picks the weak or the strong tier, a small exploration share goes to the other
one, and feedback exists only for the tier that answered. At each checkpoint the guarded
refit of `tierwise adapt` runs on the outcomes so far. Every version is judged on later
traffic of the same organisation that no fit and no choice ever saw.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tierwise.adapt.fit import Example, FitSettings, held_gain, identity, refit
from tierwise.adapt.model import Adaptation, sketch_of
from tierwise.adapt.offpolicy import top_share
from tierwise.bench.adapt_bounds import SHARES, format_bounds, pm, spread, upper_bounds
from tierwise.bench.adapt_orgs import organisation
from tierwise.training.data import Row
from tierwise.training.metrics import outcome_report

REPORT_AT = (0, 100, 500, 2000)  # outcomes received when a version is judged
REFIT_AT = (100, 250, 500, 1000, 1500, 2000)
RECENT = 1000  # requests whose tier shares the knots keep


@dataclass(frozen=True)
class Item:
    score: float
    sketch: bytes
    weak: bool
    strong: bool


def items_of(rows: Sequence[Row]) -> list[Item]:
    """Score each question with the project's scorer and keep its sketch (as the log does)."""
    from tierwise.config import load_config
    from tierwise.request import ChatRequest
    from tierwise.scoring.factory import build_scorer
    from tierwise.static_encoder import shared_static_encoder

    scorer = build_scorer(load_config())
    encoder = shared_static_encoder()
    vectors = encoder.encode([r.text for r in rows])
    return [
        Item(
            scorer.score(ChatRequest.from_text(r.text)).value,
            sketch_of(v),
            bool(r.weak),
            bool(r.strong),
        )
        for r, v in zip(rows, vectors, strict=True)
    ]


@dataclass
class Run:
    """One seed: figures of each version on the later traffic, and what exploration cost."""

    apgr: dict[int, float]
    cpt80: dict[int, float]
    adopted: dict[int, int]  # version in service at each checkpoint
    explore_quality: float  # accuracy lost on the stream to exploration (per request)
    explore_strong: float  # strong share added to the stream by exploration
    # Per adopted version: (the guard's held-back gain, the same metric's gain on the later
    # traffic over the unadapted router, its APGR gain there): is the guard predictive?
    adoptions: list[tuple[float, float, float]]


def simulate(
    items: Sequence[Item],
    seed: int,
    stream_len: int,
    explore: float,
    strong_share: float,
    settings: FitSettings,
) -> Run:
    rng = random.Random(seed)
    order = list(items)
    rng.shuffle(order)
    stream, later = order[:stream_len], order[stream_len:]
    threshold = float(np.quantile([i.score for i in order], 1 - strong_share))
    current: Adaptation = identity([threshold])
    examples: list[Example] = []
    apgr: dict[int, float] = {}
    cpt80: dict[int, float] = {}
    adopted: dict[int, int] = {}
    lost = added = 0.0

    def judge(at: int) -> None:
        report = outcome_report(
            list(current.adjusts([i.score for i in later], [i.sketch for i in later])),
            [i.weak for i in later],
            [i.strong for i in later],
        )
        apgr[at], cpt80[at], adopted[at] = report.apgr, report.cpt80, current.version

    def routed() -> np.ndarray:
        return current.adjusts([i.score for i in stream], [i.sketch for i in stream])

    judge(0)
    adjusted = routed()
    unadapted = current
    on_later = [
        Example(0.0, i.score, i.sketch, top=top, good=_correct(i, top) > 0)
        for i, top in zip(later, routed_later(unadapted, later, threshold), strict=True)
    ]
    adoptions: list[tuple[float, float, float]] = []
    settings = dataclasses.replace(settings, explore=explore)
    for n, item in enumerate(stream, start=1):
        strong = bool(adjusted[n - 1] >= threshold)
        explored = rng.random() < explore
        if explored:
            lost += _correct(item, strong) - _correct(item, not strong)
            added += (not strong) - strong
            strong = not strong
        good = _correct(item, strong) > 0
        examples.append(
            Example(float(n), item.score, item.sketch, top=strong, good=good, explored=explored)
        )
        if n in REFIT_AT:
            recent = [(i.score, i.sketch) for i in stream[max(0, n - RECENT) : n]]
            result = refit(current, examples, recent, [threshold], settings)
            if result.adopted and result.candidate is not None:
                current = result.candidate
                adjusted = routed()
                if settings.guard == "policy":
                    later_gain = _share_quality(current, later, strong_share) - _share_quality(
                        unadapted, later, strong_share
                    )
                else:
                    later_gain = held_gain(unadapted, current, on_later, _NO_BOOTSTRAP)[0]
                apgr_gain = outcome_report(
                    list(current.adjusts([i.score for i in later], [i.sketch for i in later])),
                    [i.weak for i in later],
                    [i.strong for i in later],
                ).apgr
                adoptions.append((current.gain, later_gain, apgr_gain - apgr[0]))
        if n in REPORT_AT:
            judge(n)
    return Run(apgr, cpt80, adopted, lost / len(stream), added / len(stream), adoptions)


_NO_BOOTSTRAP = FitSettings(resamples=0)
_METRIC = {"policy": "accuracy at equal strong share", "ranking": "within-tier AUROC"}


def routed_later(version: Adaptation, later: Sequence[Item], threshold: float) -> list[bool]:
    """Which later questions `version` sends to the strong tier."""
    adjusted = version.adjusts([i.score for i in later], [i.sketch for i in later])
    return [bool(a >= threshold) for a in adjusted]


def _share_quality(version: Adaptation, items: Sequence[Item], share: float) -> float:
    """Accuracy when the `share` of `items` with the highest need go to the strong tier."""
    needs = version.needs([i.score for i in items], [i.sketch for i in items])
    go = top_share(needs, share)
    return float(np.mean([_correct(i, bool(g)) for i, g in zip(items, go, strict=True)]))


def _correct(item: Item, strong: bool) -> float:
    return float(item.strong if strong else item.weak)


def run_bench(
    data_dir: Path,
    org: str = "mmlu-held-out",
    seeds: int = 5,
    stream_len: int = 2000,
    explore: float = 0.03,
    strong_share: float = 0.5,
    plot: Path | None = None,
    guard: Literal["policy", "ranking"] = "policy",
    bounds: bool = False,
) -> dict[str, Any]:
    """Every seed with and without exploration; the table and (optionally) the PNG."""
    items = items_of(organisation(data_dir, org))
    if len(items) < stream_len + 500:
        raise ValueError(f"{org} has {len(items)} questions; need stream_len + 500")
    settings = FitSettings(guard=guard)
    runs = [simulate(items, s, stream_len, explore, strong_share, settings) for s in range(seeds)]
    flat = [simulate(items, s, stream_len, 0.0, strong_share, settings) for s in range(seeds)]
    points = [p for p in REPORT_AT if p <= stream_len]
    table = []
    for p in points:
        table.append(
            {
                "outcomes": p,
                "apgr": spread([r.apgr[p] for r in runs]),
                "apgr_gain": spread([r.apgr[p] - r.apgr[0] for r in runs]),
                "worst_gain": round(min(r.apgr[p] - r.apgr[0] for r in runs), 4),
                "apgr_gain_no_explore": spread([r.apgr[p] - r.apgr[0] for r in flat]),
                "cpt80": spread([r.cpt80[p] for r in runs]),
                "versions": [r.adopted[p] for r in runs],
            }
        )
    last = points[-1]
    result: dict[str, Any] = {
        "org": org,
        "questions": len(items),
        "seeds": seeds,
        "stream": stream_len,
        "explore": explore,
        "strong_share": strong_share,
        "guard": guard,
        "table": table,
        "exploration": {
            "quality_lost_per_request": spread([r.explore_quality for r in runs]),
            "strong_share_added": spread([r.explore_strong for r in runs]),
            "apgr_gain_from_exploring": spread(
                [r.apgr[last] - f.apgr[last] for r, f in zip(runs, flat, strict=True)]
            ),
        },
    }
    adoptions = [a for r in runs for a in r.adoptions]
    if adoptions:
        result["adoptions"] = {
            "count": len(adoptions),
            "held_back_gain": spread([a[0] for a in adoptions]),
            "later_gain": spread([a[1] for a in adoptions]),
            "later_apgr_gain": spread([a[2] for a in adoptions]),
        }
    if bounds:
        loop = {}
        for share in SHARES:
            shared = (
                runs
                if share == explore
                else [
                    simulate(items, s, stream_len, share, strong_share, settings)
                    for s in range(seeds)
                ]
            )
            loop[share] = (
                [r.apgr[stream_len] - r.apgr[0] for r in shared],
                [r.explore_quality for r in shared],
            )
            print(f"  bounds: the loop at exploration {share:.0%} done", flush=True)
        result["bounds"] = upper_bounds(items, seeds, stream_len, strong_share, loop)
    if plot is not None:
        result["plot"] = str(_plot(runs, points, org, plot))
    return result


def _plot(runs: Sequence[Run], points: Sequence[int], org: str, out: Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("the PNG plot needs matplotlib: pip install 'tierwise[dev]'") from None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in (
        (axes[0], "apgr", "APGR"),
        (axes[1], "cpt80", "strong share at 80% PGR"),
    ):
        values = np.array([[getattr(r, key)[p] for p in points] for r in runs])
        for row in values:
            ax.plot(range(len(points)), row, color="0.8", linewidth=1)
        ax.errorbar(
            range(len(points)),
            values.mean(0),
            yerr=values.std(0, ddof=1) if len(runs) > 1 else None,
            color="C0",
            marker="o",
            capsize=3,
        )
        ax.set_xticks(range(len(points)), [str(p) for p in points])
        ax.set_xlabel("outcomes received (0 = unadapted)")
        ax.set_ylabel(label)
        ax.set_title(f"{label}, {org}, later traffic")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def format_result(result: dict[str, Any]) -> str:
    lines = [
        f"tierwise bench adapt: {result['org']} ({result['questions']} questions), "
        f"{result['seeds']} seeds, stream {result['stream']}, exploration {result['explore']:.0%}, "
        f"strong share {result['strong_share']:.0%}, guard {result['guard']}; judged on later "
        "traffic only",
        f"{'outcomes':>9} {'APGR':>16} {'gain vs unadapted':>20} {'gain, no exploring':>20} "
        f"{'worst seed':>10} {'strong share @80% PGR':>22}  versions",
    ]
    for row in result["table"]:
        lines.append(
            f"{row['outcomes']:>9} {pm(row['apgr'], ''):>16} {pm(row['apgr_gain'], '+'):>20} "
            f"{pm(row['apgr_gain_no_explore'], '+'):>20} {row['worst_gain']:>+10.4f} "
            f"{pm(row['cpt80'], ''):>22}  "
            f"{row['versions']}"
        )
    ex = result["exploration"]
    lines.append(
        f"exploration: {pm(ex['quality_lost_per_request'], '')} accuracy lost per request, "
        f"{pm(ex['strong_share_added'], '+')} strong share; APGR it bought at the end: "
        f"{pm(ex['apgr_gain_from_exploring'], '+')}"
    )
    if "adoptions" in result:
        ad = result["adoptions"]
        lines.append(
            f"adopted versions: {ad['count']}; the guard's held-back gain "
            f"({_METRIC[result['guard']]}) "
            f"{pm(ad['held_back_gain'], '+')}; on later traffic, over the unadapted router: "
            f"the same metric {pm(ad['later_gain'], '+')}, APGR {pm(ad['later_apgr_gain'], '+')}"
        )
    if "bounds" in result:
        lines.extend(format_bounds(result["bounds"], result["stream"]))
    if "plot" in result:
        lines.append(f"plot: {result['plot']}")
    return "\n".join(lines)

"""`tierwise eval-cache`: how often rewordings hit, and how often a different question does.

Each family is a list of pairs (stored, asked); every pair is replayed alone, as the
cache serves one text stored under a fresh user scope: an exact hit when the texts are
equal after normalization, else a semantic hit when both fit the encoder's window, the
anchor guard passes, the static gate passes (the pair's static cosine reaches
STATIC_FLOOR) and the cosine reaches the threshold of the pair's length band
(tierwise.cache.budget). The vector index's recall is measured apart (`bench cache`).

Rewordings (should hit): GPTCache's paraphrase pairs, and Quora's duplicate pairs.
Look-alikes (any hit is a false hit): Quora's non-duplicates (mostly same-topic questions
that need another answer), each GSM8K question against a copy with one number changed,
each MMLU stem against the nearest other stem of its subject, and the same for the
complexity prompts of one domain (these files hold many rewordings of one question, so
that family is reported, not used to choose).

Every pair goes to a design or a held-out half by a hash of its stored text. On the design
half, per length band, the false-hit rate of the worst look-alike family (`BUDGET_FAMILIES`)
is measured at each threshold: these curves are what thresholds.json ships and
`cache.max_false_hit_rate` reads. The figures are reported on the held-out half.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.cache import budget, keys
from tierwise.cache.embedders import STATIC_FLOOR, Embedder, StaticEmbedder
from tierwise.progress import Progress
from tierwise.training.data import iter_jsonl

THRESHOLDS = tuple(round(x, 2) for x in np.arange(0.70, 0.991, 0.01))
BUDGET_FAMILIES = ("qqp-non-duplicate", "mmlu-same-subject", "gsm8k-number-swap")
BUDGETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12)  # points of the hits vs false hits curve
MIN_BAND_PAIRS = 20  # a band with fewer design pairs of a family says nothing about it
MMLU_STEMS = 3000
_NUMBER = re.compile(r"\d+")


@dataclass
class Family:
    """Pairs (stored, asked); for positives the asked one should be served its stored one."""

    name: str
    pairs: list[tuple[str, str]] = field(default_factory=list)
    positive: bool = False


def is_design(text: str) -> bool:
    return int(is_design_key(text), 16) % 2 == 0


def _texts(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in iter_jsonl(path)]


def paraphrases(data: Path) -> Family:
    rows = _texts(data / "cache" / "paraphrase_dev.jsonl")
    return Family("paraphrase", [(r["origin"], r["similar"]) for r in rows], positive=True)


def number_swaps(data: Path) -> Family:
    family = Family("gsm8k-number-swap")
    for row in _texts(data / "outcomes" / "gsm8k_dev.jsonl"):
        text = row["text"]
        match = _NUMBER.search(text)
        if match is None:
            continue
        n = int(match.group())
        changed = str(n + 1 if n < 10 else n * 2)
        family.pairs.append((text, text[: match.start()] + changed + text[match.end() :]))
    return family


def nearest_within_groups(
    name: str, groups: dict[str, list[str]], vectors: dict[str, np.ndarray]
) -> Family:
    """Half of each group is stored; each text of the other half is paired with its most
    similar stored text. The halves are disjoint, so no asked text is itself in the store."""
    family = Family(name)
    for texts in groups.values():
        unique = sorted({keys.normalize(t): t for t in texts}.values(), key=is_design_key)
        stored, asked = unique[::2], unique[1::2]
        if not stored or not asked:
            continue
        sims = np.stack([vectors[t] for t in asked]) @ np.stack([vectors[t] for t in stored]).T
        for i, text in enumerate(asked):
            family.pairs.append((stored[int(np.argmax(sims[i]))], text))
    return family


def is_design_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def mmlu_groups(data: Path) -> dict[str, list[str]]:
    rows = _texts(data / "outcomes" / "mmlu_dev.jsonl")
    stems = sorted({(r.get("bench", ""), r["text"].split("\nA.")[0]) for r in rows})
    stems.sort(key=lambda s: hashlib.sha256(s[1].encode()).hexdigest())
    groups: dict[str, list[str]] = {}
    for subject, stem in stems[:MMLU_STEMS]:
        groups.setdefault(subject, []).append(stem)
    return groups


def complexity_groups(data: Path) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for path in sorted((data / "complexity").glob("*.jsonl")):
        for row in _texts(path):
            groups.setdefault(f"{path.stem}:{row.get('domain')}", []).append(row["text"])
    return groups


def quora(data: Path) -> tuple[Family, Family]:
    """Quora's duplicates (rewordings) and non-duplicates (look-alikes)."""
    same, other = Family("qqp-duplicate", positive=True), Family("qqp-non-duplicate")
    for row in _texts(data / "cache" / "qqp_dev.jsonl"):
        (same if row["duplicate"] else other).pairs.append((row["stored"], row["asked"]))
    return same, other


@dataclass(frozen=True)
class Outcome:
    """What the cache does for one pair, at any threshold."""

    exact: bool  # equal after normalization: served whatever the thresholds
    allowed: bool  # both fit the window and the anchor guard passes
    cosine: float
    band: int


def replay(
    family: Family,
    vectors: dict[str, np.ndarray],
    covered: dict[str, bool],
    guard: bool,
    statics: dict[str, np.ndarray] | None = None,
) -> list[Outcome]:
    """Each pair's outcome; with `statics` the static gate applies (as in the cache)."""
    return [
        Outcome(
            exact=keys.normalize(stored) == keys.normalize(asked),
            allowed=covered[stored]
            and covered[asked]
            and (not guard or keys.anchors_agree(asked, stored))
            and (statics is None or float(statics[stored] @ statics[asked]) >= STATIC_FLOOR),
            cosine=float(vectors[stored] @ vectors[asked]),
            band=budget.band(budget.content_words(asked), budget.content_words(stored)),
        )
        for stored, asked in family.pairs
    ]


def hit_rate(outcomes: Sequence[Outcome], by_band: Sequence[float]) -> float:
    """Share of pairs served at these per-band thresholds (NaN for no pairs)."""
    if not outcomes:
        return float("nan")
    hits = sum(o.exact or (o.allowed and o.cosine >= by_band[o.band]) for o in outcomes)
    return hits / len(outcomes)


def band_curves(halves: dict[str, list[Outcome]]) -> budget.Curves:
    """Per band and threshold, the worst false-hit rate among BUDGET_FAMILIES."""
    rows = []
    for b in range(len(budget.BANDS)):
        row = []
        for t in THRESHOLDS:
            worst = 0.0
            for name in BUDGET_FAMILIES:
                in_band = [o for o in halves.get(name, []) if o.band == b]
                if len(in_band) >= MIN_BAND_PAIRS:
                    worst = max(worst, hit_rate(in_band, [t] * len(budget.BANDS)))
            row.append(round(worst, 4))
        rows.append(tuple(row))
    return budget.Curves(THRESHOLDS, tuple(rows))


def embed_all(
    encoder: Embedder, texts: Iterable[str], show_progress: bool
) -> dict[str, np.ndarray]:
    # By length, so a batch pads to its own longest text rather than to the window (5x faster).
    unique = sorted(set(texts), key=lambda t: (len(t), t))
    vectors: dict[str, np.ndarray] = {}
    progress = Progress(len(unique), "embedding") if show_progress else None
    for start in range(0, len(unique), 64):
        batch = unique[start : start + 64]
        for text, vector in zip(batch, encoder.embed(batch), strict=True):
            vectors[text] = vector
        if progress:
            progress.advance(len(batch))
    if progress:
        progress.close()
    return vectors


def run(
    data: Path,
    encoder: Embedder,
    show_progress: bool = True,
    guard: bool = True,
    max_false_hit_rate: float = 0.02,
    static: StaticEmbedder | None = None,
) -> dict[str, Any]:
    duplicates, non_duplicates = quora(data)
    families = [paraphrases(data), duplicates, non_duplicates, number_swaps(data)]
    mmlu, complexity = mmlu_groups(data), complexity_groups(data)
    texts = {t for f in families for pair in f.pairs for t in pair}
    texts |= {t for g in (*mmlu.values(), *complexity.values()) for t in g}
    vectors = embed_all(encoder, texts, show_progress)
    covered = {t: encoder.covers(t) for t in texts}
    ordered = sorted(texts)
    statics = None if static is None else dict(zip(ordered, static.encode(ordered), strict=True))
    families += [
        nearest_within_groups("mmlu-same-subject", mmlu, vectors),
        nearest_within_groups("complexity-same-domain", complexity, vectors),
    ]
    halves: dict[str, dict[str, list[Outcome]]] = {"design": {}, "held-out": {}}
    positive = {f.name: f.positive for f in families}
    for family in families:
        for (stored, _), outcome in zip(
            family.pairs, replay(family, vectors, covered, guard, statics), strict=True
        ):
            half = "design" if is_design(stored) else "held-out"
            halves[half].setdefault(family.name, []).append(outcome)
    curves = band_curves(halves["design"])

    def at(budget_rate: float) -> dict[str, dict[str, float]]:
        by_band = curves.for_budget(budget_rate)
        return {
            half: {name: hit_rate(o, by_band) for name, o in by_family.items()}
            for half, by_family in halves.items()
        }

    return {
        "encoder_window_tokens": getattr(encoder, "max_tokens", None),
        "anchor_guard": guard,
        "static_gate": static is not None,
        "max_false_hit_rate": max_false_hit_rate,
        "thresholds_by_band": list(curves.for_budget(max_false_hit_rate)),
        "band_curves": curves.as_dict(),
        "positive": positive,
        "pairs": {
            half: {name: len(o) for name, o in by_family.items()}
            for half, by_family in halves.items()
        },
        "at_budget": at(max_false_hit_rate),
        "budget_curve": {str(rate): at(rate)["held-out"] for rate in BUDGETS},
    }


def write_thresholds(report: dict[str, Any], out: Path) -> None:
    """Ship the design half's per-band curves (numbers only) for the cache to read."""
    out.write_text(json.dumps(report["band_curves"], indent=1) + "\n", encoding="utf-8")


def format_report(report: dict[str, Any]) -> str:
    """The held-out half at the configured budget, and how the budget trades hits away."""
    held, design = report["at_budget"]["held-out"], report["at_budget"]["design"]
    thresholds = budget.Thresholds(tuple(report["thresholds_by_band"])).describe()
    lines = [
        f"error budget max_false_hit_rate {report['max_false_hit_rate']:.3f}: cosine per "
        f"length band (content words) {'; '.join(thresholds)}",
        f"{'family':<26}{'kind':<12}{'held-out':>10}{'design':>10}{'pairs':>8}",
    ]
    for name, rate in held.items():
        kind = "hits" if report["positive"][name] else "false hits"
        pairs = report["pairs"]["held-out"][name]
        lines.append(
            f"{name:<26}{kind:<12}{rate:>10.3f}{design.get(name, float('nan')):>10.3f}{pairs:>8}"
        )
    lines.append("held-out half at other budgets:")
    names = list(held)
    lines.append(f"{'budget':<8}" + "".join(f"{n:>25}" for n in names))
    for rate, cells in report["budget_curve"].items():
        lines.append(f"{float(rate):<8.3f}" + "".join(f"{cells[n]:>25.3f}" for n in names))
    lines.append(
        f"anchor guard {'on' if report['anchor_guard'] else 'off'}; static gate "
        f"{'on' if report.get('static_gate') else 'off'}; encoder window "
        f"{report['encoder_window_tokens']} tokens; thresholds chosen on the design half "
        f"(worst of {', '.join(BUDGET_FAMILIES)} per band)"
    )
    return "\n".join(lines)


def plot(report: dict[str, Any], out: Path) -> None:
    """Hits vs false hits on the held-out half, one point per error budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = list(report["budget_curve"])
    points = [report["budget_curve"][b] for b in budgets]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    falses = [p["qqp-non-duplicate"] for p in points]
    for n, name in enumerate(n for n, pos in report["positive"].items() if pos):
        ax.plot(falses, [p[name] for p in points], "o-", color=f"C{n}", label=f"hits: {name}")
    for n, name in enumerate(BUDGET_FAMILIES[1:], start=2):
        ax.plot(falses, [p[name] for p in points], "x:", color=f"C{n}", label=f"false hits: {name}")
    for b, x, p in zip(budgets, falses, points, strict=True):
        ax.annotate(
            f"{float(b):g}",
            (x, p["paraphrase"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.axvline(report["max_false_hit_rate"], color="red", lw=0.6)
    ax.set_xlabel("false hits on Quora non-duplicates (held-out half)")
    ax.set_ylabel("share of asked questions served")
    ax.set_title("Semantic cache by error budget (labels: max_false_hit_rate)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)

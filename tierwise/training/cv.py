"""Leave-one-source-out cross-validation: the one protocol every scorer choice is made by.

Each source (tierwise/training/sources.py) is held out in turn; whatever is fitted sees
only the others, as the project's unseen checks will. A source is judged on its own:
outcome sources by AUROC of "the strong model was needed" and APGR, label families by
AUROC of HIGH and 3-class accuracy. The summary is the mean and the worst source.

Input vectors are costly to compute on a shared CPU, so they are cached on disk, keyed by
the texts and the feature version; a changed file or feature recomputes them.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.progress import Progress
from tierwise.scoring.heuristic import features
from tierwise.scoring.learned import (
    SentenceEncoder,
    TextEncoder,
    input_vector,
    log_length,
    open_chat,
)
from tierwise.training.baselines import Scored, best_cuts, random_baseline
from tierwise.training.metrics import LABELS, auroc, outcome_report
from tierwise.training.sources import Example

FEATURE_VERSION = 1  # bump when input_vector changes: cached vectors are then ignored
RANDOM_SEEDS = 10
OPEN_FAMILY = "alpaca-"  # the open-chat outcome sources
# One fold: (train mask, test mask) -> (scores of the test rows, band indices of them)
Fold = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class Pool:
    """Every example with its input vector, as arrays the fits and metrics share."""

    examples: list[Example]
    x: np.ndarray
    dim: int  # embedding width inside x
    # The open-chat head's inputs (MiniLM in place of the static embedding), filled for the
    # rows it serves (`open_rows`, open-chat kinds) and the AlpacaEval rows it learns from.
    open_x: np.ndarray | None = None
    open_rows: np.ndarray | None = None
    sources: np.ndarray = field(init=False)
    source_names: list[str] = field(init=False)
    need: np.ndarray = field(init=False)
    is_outcome: np.ndarray = field(init=False)
    labels: np.ndarray = field(init=False)
    length: np.ndarray = field(init=False)
    _centred: tuple[np.ndarray, np.ndarray] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.sources = np.array([e.source for e in self.examples])
        self.source_names = list(dict.fromkeys(e.source for e in self.examples))
        self.need = np.array([e.need for e in self.examples], dtype=np.float64)
        self.is_outcome = np.array([e.is_outcome for e in self.examples])
        self.labels = np.array([e.label or "" for e in self.examples])
        self.length = np.array([log_length(e.text) for e in self.examples])

    def within_source_centred(self) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and need minus their source's mean (computed once)."""
        if self._centred is None:
            x, y = self.x.copy(), self.need.copy()
            for source in self.source_names:
                rows = self.sources == source
                x[rows] -= x[rows].mean(axis=0)
                y[rows] -= y[rows].mean()
            self._centred = (x, y)
        return self._centred

    @property
    def open_family(self) -> np.ndarray:
        """The rows the open-chat head is fitted on: AlpacaEval's outcomes."""
        return np.char.startswith(self.sources.astype(str), OPEN_FAMILY)

    def rows_of(self, source: str) -> list[Example]:
        return [e for e in self.examples if e.source == source]


def build_pool(
    examples: Sequence[Example],
    encoder: TextEncoder,
    name: str,
    cache: Path | None = None,
    open_encoder: SentenceEncoder | None = None,
) -> Pool:
    """Input vectors of every example (embedding, dimensions, style), cached on disk.

    With `open_encoder`, also the open-chat head's vectors (tierwise.scoring.learned).
    """
    digest = hashlib.sha256(f"{FEATURE_VERSION}:{name}".encode())
    for e in examples:
        digest.update(e.text.encode("utf-8") + b"\0")
    key = digest.hexdigest()[:24]
    x = _cached(cache, f"cv-features-{key}", lambda: _vectors(examples, encoder.encode))
    pool = Pool(list(examples), x, encoder.dim)
    if open_encoder is None:
        return pool
    pool.open_rows = np.array([open_chat(e.text) for e in examples])
    wanted = np.flatnonzero(pool.open_rows | pool.open_family)
    digest.update(wanted.tobytes())  # the rows depend on the open-chat rule
    stem = f"cv-open-{digest.hexdigest()[:24]}"
    rows = [examples[int(i)] for i in wanted]
    embed = open_encoder.embed
    vectors = _cached(cache, stem, lambda: _vectors(rows, embed))
    pool.open_x = np.zeros((len(examples), vectors.shape[1]))
    pool.open_x[wanted] = vectors
    return pool


def _cached(cache: Path | None, stem: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    path = cache / f"{stem}.npy" if cache else None
    if path is not None and path.is_file():
        return np.load(path)
    value = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, value)
    return value


def _vectors(examples: Sequence[Example], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    rows = []
    with Progress(len(examples), "features") as progress:
        for e in examples:
            rows.append(input_vector(embed([e.text])[0], features(e.text), e.text))
            progress.advance()
    return np.array(rows)


def fold_scores(pool: Pool, one_fold: Fold) -> tuple[np.ndarray, np.ndarray]:
    """Scores and bands of every row from the fold that held its source out."""
    scores = np.zeros(len(pool.examples))
    bands = np.zeros(len(pool.examples), dtype=int)
    for source in pool.source_names:
        test = pool.sources == source
        scores[test], bands[test] = one_fold(~test, test)
    return scores, bands


def source_metrics(pool: Pool, source: str, scores: np.ndarray, bands: np.ndarray) -> dict:
    """AUROC and APGR (outcomes) or AUROC of HIGH and accuracy (labels) on one source."""
    rows = pool.sources == source
    examples = pool.rows_of(source)
    if pool.is_outcome[rows][0]:
        report = outcome_report(
            scores[rows].tolist(),
            [bool(e.weak) for e in examples],
            [bool(e.strong) for e in examples],
        )
        return {"n": int(rows.sum()), "auroc": report.auroc_strong_needed, "apgr": report.apgr}
    truth = pool.labels[rows]
    accuracy = float(np.mean(np.array(LABELS)[bands[rows]] == truth))
    return {
        "n": int(rows.sum()),
        "auroc": auroc(scores[rows], truth == "HIGH"),
        "accuracy": accuracy,
    }


def summarize(pool: Pool, scores: np.ndarray, bands: np.ndarray) -> dict[str, Any]:
    """Per-source metrics plus the mean and the worst source of each."""
    by_source = {s: source_metrics(pool, s, scores, bands) for s in pool.source_names}
    out: dict[str, Any] = {"by_source": by_source}
    for metric in ("auroc", "apgr", "accuracy"):
        values = [m[metric] for m in by_source.values() if metric in m]
        if values:
            out[f"mean_{metric}"] = round(statistics.fmean(values), 4)
            out[f"worst_{metric}"] = round(min(values), 4)
    return out


def baseline_scores(
    pool: Pool, run: Callable[[Sequence[str]], list[Scored]], fit_cuts: bool
) -> tuple[np.ndarray, np.ndarray]:
    """A baseline's scores, and bands: its own, or cut points fitted on the other sources."""
    scored = run([e.text for e in pool.examples])
    scores = np.array([s.score for s in scored])
    own = np.array([LABELS.index(s.band) for s in scored])
    if not fit_cuts:
        return scores, own

    def one_fold(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labelled = train & ~pool.is_outcome
        if not labelled.any():
            return scores[test], own[test]
        low, high = best_cuts(scores[labelled], pool.labels[labelled].tolist())
        held = scores[test]
        return held, (held >= low).astype(int) + (held >= high).astype(int)

    return fold_scores(pool, one_fold)


def random_summary(pool: Pool) -> dict[str, Any]:
    """The mean of RANDOM_SEEDS random scorers, per source and metric."""
    runs = [summarize(pool, *baseline_scores(pool, random_baseline(s), False)) for s in range(10)]
    by_source = {
        source: {
            key: statistics.fmean(run["by_source"][source][key] for run in runs)
            for key in runs[0]["by_source"][source]
        }
        for source in pool.source_names
    }
    summary = {k: statistics.fmean(run[k] for run in runs) for k in runs[0] if k != "by_source"}
    return {"by_source": by_source, **{k: round(v, 4) for k, v in summary.items()}}


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Rows = sources (then mean, worst); columns = each method's AUROC and APGR/accuracy."""
    methods = list(results)
    first = results[methods[0]]
    lines = [
        f"{'source':<22}{'n':>6}"
        + "".join(f"{m[:14]:>16}" for m in methods)
        + "   (AUROC / APGR, or AUROC HIGH / accuracy)"
    ]
    for source, metrics in first["by_source"].items():
        second = "apgr" if "apgr" in metrics else "accuracy"
        cells = "".join(
            f"{results[m]['by_source'][source]['auroc']:>8.3f}/"
            f"{results[m]['by_source'][source][second]:<7.3f}"
            for m in methods
        )
        lines.append(f"{source:<22}{metrics['n']:>6}{cells}")
    for kind in ("mean", "worst"):
        for second in ("apgr", "accuracy"):
            if f"{kind}_{second}" not in first:
                continue
            label = f"{kind} (all / APGR)" if second == "apgr" else f"{kind} (accuracy)"
            auroc_key = f"{kind}_auroc" if second == "apgr" else None
            cells = "".join(
                (f"{results[m][auroc_key]:>8.3f}/" if auroc_key else f"{'':>8} ")
                + f"{results[m][f'{kind}_{second}']:<7.3f}"
                for m in methods
            )
            lines.append(f"{label:<22}{'':>6}{cells}")
    return "\n".join(lines)

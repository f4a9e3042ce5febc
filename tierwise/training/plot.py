"""Quality-cost curves as a PNG: one panel per outcome file, one line per method."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tierwise.training.metrics import OutcomeCurve

# tierwise's own lines are drawn solid and on top; baselines dashed.
_OURS_PREFIX = "tierwise"


def plot_curves(panels: Mapping[str, Mapping[str, OutcomeCurve]], out: Path) -> Path:
    """Quality (share answered correctly) against the share of queries sent to the strong model.

    Raises ImportError naming the extra to install when matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("the PNG plot needs matplotlib: pip install 'tierwise[dev]'") from None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items(), strict=True):
        any_curve = next(iter(curves.values()))
        ax.plot(
            [0, 1],
            [any_curve.weak_quality, any_curve.strong_quality],
            color="grey",
            linestyle=":",
            label="random (expected)",
        )
        drawn: dict[str, OutcomeCurve] = {}
        for name, curve in curves.items():
            twin = next((n for n, c in drawn.items() if _same(c, curve)), None)
            drawn[name] = curve
            if twin is not None:  # an identical line would hide the first: say so instead
                ax.plot([], [], " ", label=f"{name} = {twin}")
                continue
            ours = name.startswith(_OURS_PREFIX)
            ax.plot(
                curve.share,
                curve.quality,
                linestyle="-" if ours else "--",
                linewidth=2.0 if ours else 1.2,
                zorder=3 if ours else 2,
                label=name,
            )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("share of queries sent to the strong model (cost)")
        ax.set_ylabel("quality (share answered correctly)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _same(a: OutcomeCurve, b: OutcomeCurve) -> bool:
    return a.share.shape == b.share.shape and bool(
        (a.share == b.share).all() and (a.quality == b.quality).all()
    )

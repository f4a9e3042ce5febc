"""One `tierwise adapt` run: read the install's outcomes, refit with the guards, adopt or not."""

from __future__ import annotations

from dataclasses import dataclass

from tierwise.adapt.fit import FitResult, FitSettings, identity, refit
from tierwise.adapt.outcomes import open_log, recent_traffic, training_examples
from tierwise.adapt.store import log_path, store_for
from tierwise.config import TierwiseConfig

RECENT = 2000  # latest routed requests whose tier shares a new version keeps


@dataclass(frozen=True)
class Refresh:
    result: FitResult
    version: int  # the version in service afterwards
    outcomes: int


def settings_of(config: TierwiseConfig) -> FitSettings:
    adapt = config.adapt
    return FitSettings(
        min_outcomes=adapt.min_outcomes,
        held_back_share=adapt.held_back_share,
        max_step=adapt.max_step,
        dims=adapt.sketch_dims,
        confidence=adapt.confidence,
    )


def refresh(config: TierwiseConfig) -> Refresh:
    """Refit from the decision log; a version the guards accept becomes current."""
    store = store_for(config)
    ranked = config.ranked_tiers
    thresholds = list(config.thresholds().values())
    conn = open_log(log_path(config))
    try:
        examples = training_examples(conn, ranked[-1].name)
        recent = recent_traffic(conn, RECENT)
    finally:
        conn.close()
    current = store.current() or identity(thresholds)
    if current.version and len(examples) <= current.outcomes + current.held_back:
        why = f"no new outcomes since version {current.version}; nothing refitted"
        return Refresh(FitResult(False, why, None), current.version, len(examples))
    result = refit(current, examples, recent, thresholds, settings_of(config))
    version = store.current_version()
    if result.adopted and result.candidate is not None:
        version = store.adopt(result.candidate).version
    return Refresh(result, version, len(examples))

"""One `tierwise adapt` run: read the install's outcomes, refit with the guards, adopt or not.

With `adapt.scope: tenant`, each caller scope (the hashed key the log and the cache use)
with at least `min_outcomes` outcomes of its own also gets its own versions, judged against
what it is served now (the install-wide version until it has one); the others keep the
install-wide version.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from tierwise.adapt.fit import FitResult, FitSettings, identity, refit
from tierwise.adapt.model import Adaptation
from tierwise.adapt.outcomes import Example, open_log, recent_traffic, training_examples
from tierwise.adapt.store import AdaptStore, log_path, store_for
from tierwise.config import TierwiseConfig

RECENT = 2000  # latest routed requests whose tier shares a new version keeps


@dataclass(frozen=True)
class Refresh:
    result: FitResult
    version: int  # the version in service afterwards (0: none of its own)
    outcomes: int
    scope: str = ""  # "" = install-wide; else the tenant's scope key


def settings_of(config: TierwiseConfig) -> FitSettings:
    adapt = config.adapt
    return FitSettings(
        min_outcomes=adapt.min_outcomes,
        held_back_share=adapt.held_back_share,
        max_step=adapt.max_step,
        dims=adapt.sketch_dims,
        confidence=adapt.confidence,
        guard=adapt.guard,
        explore=adapt.explore,
    )


def refresh(config: TierwiseConfig) -> Refresh:
    """Refit the install-wide version from the decision log; adopt it if the guards agree."""
    return refresh_all(config)[0]


def refresh_all(config: TierwiseConfig) -> list[Refresh]:
    """The install-wide refit, then (adapt.scope: tenant) one per tenant with enough outcomes."""
    thresholds = list(config.thresholds().values())
    conn = open_log(log_path(config))
    try:
        examples = training_examples(conn, config.ranked_tiers[-1].name)
        recent = recent_traffic(conn, RECENT)
        tenants = _tenants(examples, config) if config.adapt.scope == "tenant" else []
        recent_of = {t: recent_traffic(conn, RECENT, scope=t) for t in tenants}
    finally:
        conn.close()
    install = store_for(config)
    done = [_refresh_one(install, "", None, examples, recent, thresholds, config)]
    served = install.current()
    for tenant in tenants:
        mine = [e for e in examples if e.scope == tenant]
        store = store_for(config, tenant)
        done.append(
            _refresh_one(store, tenant, served, mine, recent_of[tenant], thresholds, config)
        )
    return done


def _tenants(examples: Sequence[Example], config: TierwiseConfig) -> list[str]:
    per_scope = Counter(e.scope for e in examples)
    return sorted(s for s, n in per_scope.items() if s and n >= config.adapt.min_outcomes)


def _refresh_one(
    store: AdaptStore,
    scope: str,
    fallback: Adaptation | None,
    examples: Sequence[Example],
    recent: Sequence[tuple[float, bytes | None]],
    thresholds: Sequence[float],
    config: TierwiseConfig,
) -> Refresh:
    own = store.current()
    if own is not None and len(examples) <= own.outcomes + own.held_back:
        why = f"no new outcomes since version {own.version}; nothing refitted"
        return Refresh(FitResult(False, why, None), own.version, len(examples), scope)
    # A tenant without a version of its own is served the install-wide one: a version of its
    # own must beat that, and rolling it back (parent 0) serves that again.
    current = own or (dataclasses.replace(fallback, version=0) if fallback else None)
    start = current or identity(thresholds)
    result = refit(start, examples, recent, thresholds, settings_of(config))
    version = store.current_version()
    if result.adopted and result.candidate is not None:
        version = store.adopt(result.candidate).version
    return Refresh(result, version, len(examples), scope)

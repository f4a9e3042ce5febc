"""Valves and ladder: from the pipe's valve text and Open WebUI's installed models to tiers.

Pure functions over plain data (no Open WebUI import): the valve formats, the mapping of
installed models onto the config's tiers, narrowing a ladder to what one user may use, and
the checks a valves save (or `tierwise openwebui install`) runs before anything is stored.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tierwise.cache import SemanticCache
from tierwise.config import ConfigError, TierwiseConfig, load_config

log = logging.getLogger("tierwise.openwebui")

TAG_PREFIX = "tierwise:"  # a model tagged `tierwise:<tier>` in Open WebUI joins that tier


class SetupError(Exception):
    """The valves or the installed models cannot form a usable ladder; says what to change."""


# ---------------------------------------------------------------------------------------------
# Valve text formats: `local=llama3.2:1b, qwen2.5:7b; cloud=gpt-4o` and `hpc=0.3; cloud=0.7`.


def parse_tier_models(text: str) -> dict[str, tuple[str, ...]]:
    """Parse the tier_models valve; raises ValueError naming the bad entry."""
    mapping: dict[str, tuple[str, ...]] = {}
    for entry in _entries(text):
        tier, sep, models = entry.partition("=")
        tier = tier.strip()
        ids = tuple(m.strip() for m in models.split(",") if m.strip())
        if not sep or not tier or not ids:
            raise ValueError(
                f"tier_models: {entry!r} is not 'tier=model[,model...]' "
                "(example: 'local=llama3.2:1b; cloud=gpt-4o')"
            )
        if tier in mapping:
            raise ValueError(f"tier_models: tier {tier!r} is listed twice")
        odd = [m for m in ids if "=" in m or any(c.isspace() for c in m)]
        if odd:
            raise ValueError(
                f"tier_models: {odd[0]!r} is not a model id; separate tiers with ';' "
                "(example: 'local=llama3.2:1b; cloud=gpt-4o')"
            )
        mapping[tier] = ids
    return mapping


def parse_thresholds(text: str) -> dict[str, float]:
    """Parse the thresholds valve (lowest score per tier, 0..1); raises ValueError."""
    values: dict[str, float] = {}
    for entry in _entries(text):
        tier, sep, raw = entry.partition("=")
        tier = tier.strip()
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not sep or not tier or not 0.0 <= value <= 1.0:
            raise ValueError(
                f"thresholds: {entry!r} is not 'tier=number' with the number in 0..1 "
                "(example: 'hpc=0.33; cloud=0.67')"
            )
        values[tier] = value
    return values


def _entries(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ";").split(";") if part.strip()]


# ---------------------------------------------------------------------------------------------
# From valves + the install's models to the ladder one user may climb.


@dataclass(frozen=True)
class Setup:
    """The effective tiers for everyone: each tier holds only installed models."""

    config: TierwiseConfig
    notes: tuple[str, ...] = ()


def is_routable(model: Mapping[str, Any], own_id: str) -> bool:
    """Models `auto` may hand a chat to: real connections' models, not pipes or arenas."""
    return not (
        model.get("pipe") or model.get("arena") or model.get("owned_by") == "arena"
    ) and str(model.get("id")) not in ("", own_id)


def model_tags(model: Mapping[str, Any]) -> set[str]:
    """Tag names on a model: its connection's tags and the ones set in Admin -> Models."""
    raw: list[Any] = list(model.get("tags") or [])
    info = model.get("info") or {}
    raw += list((info.get("meta") or {}).get("tags") or [])
    names = set()
    for tag in raw:
        name = tag.get("name") if isinstance(tag, Mapping) else tag
        if isinstance(name, str):
            names.add(name.strip().lower())
    return names


def base_config(config_path: str) -> TierwiseConfig:
    """The tierwise config the valves start from: a YAML file on the server, or the default."""
    try:
        return load_config(config_path.strip() or None)
    except ConfigError as exc:
        raise SetupError(f"config_path: {exc}") from None


def build_setup(
    config: TierwiseConfig,
    tier_models: Mapping[str, Sequence[str]],
    thresholds: Mapping[str, float],
    installed: Sequence[Mapping[str, Any]],
) -> Setup:
    """Fill each tier with installed models and apply threshold overrides.

    A tier named in tier_models gets exactly those models. Any other tier is mapped
    automatically: models tagged `tierwise:<tier>`, then the tier's own `models` from the
    config; Ollama models fill the cheapest tier if nothing else does. Tiers left without
    an installed model are dropped; mapped models that are not installed become notes.
    """
    names = {t.name for t in config.tiers}
    for label, keys in (("tier_models", tier_models), ("thresholds", thresholds)):
        unknown = sorted(set(keys) - names)
        if unknown:
            raise SetupError(
                f"{label}: unknown tier {', '.join(map(repr, unknown))}; "
                f"the tiers are {', '.join(t.name for t in config.ranked_tiers)}"
            )
    ids = [str(m["id"]) for m in installed]
    present = set(ids)
    notes: list[str] = []
    claimed: set[str] = set()
    chosen: dict[str, list[str]] = {}
    for tier in config.ranked_tiers:
        if tier.name in tier_models:
            picked = [m for m in tier_models[tier.name] if m in present]
            missing = [m for m in tier_models[tier.name] if m not in present]
            if missing:
                notes.append(f"{tier.name}: {', '.join(missing)} not installed")
        else:
            tagged = [
                str(m["id"]) for m in installed if f"{TAG_PREFIX}{tier.name}" in model_tags(m)
            ]
            picked = _unique(tagged + [m for m in tier.models if m in present])
        chosen[tier.name] = picked
        claimed.update(picked)
    cheapest = config.ranked_tiers[0].name
    if not chosen[cheapest] and cheapest not in tier_models:
        ollama = [str(m["id"]) for m in installed if m.get("owned_by") == "ollama"]
        chosen[cheapest] = [m for m in ollama if m not in claimed]
    tiers = []
    for tier in config.ranked_tiers:
        if not chosen[tier.name]:
            log.debug("tier %s has no installed model; skipped", tier.name)
            continue
        data = tier.model_dump(mode="json")
        data["models"] = chosen[tier.name]
        if tier.name in thresholds:
            data["min_score"] = thresholds[tier.name]
        tiers.append(data)
    if not tiers:
        raise SetupError(_no_tier_message(tier_models, cheapest, ids))
    rising = [(t["name"], t["min_score"]) for t in tiers if t.get("min_score") is not None]
    if any(a[1] > b[1] for a, b in itertools.pairwise(rising)):
        floors = ", ".join(f"{name}={score:g}" for name, score in rising)
        raise SetupError(f"thresholds: the lowest scores must rise with the tiers ({floors})")
    data = config.model_dump(mode="json")
    data["tiers"] = tiers
    try:
        return Setup(load_config(data), tuple(notes))
    except ConfigError as exc:  # the first line names the problem; the rest echoes the input
        raise SetupError(str(exc).replace("<mapping>: ", "").split(" (got ")[0]) from None


def _no_tier_message(
    tier_models: Mapping[str, Sequence[str]], cheapest: str, ids: list[str]
) -> str:
    """Why no tier is left: models named but unavailable now, or nothing mapped at all."""
    if tier_models:
        named = ", ".join(m for ms in tier_models.values() for m in ms)
        return (
            f"none of the models in tier_models ({named}) is available right now: their "
            "connections may be down (Admin -> Settings -> Connections)"
        )
    return (
        "no tier has an installed model: set the tier_models valve (for example "
        f"'{cheapest}=<model id>') or tag models '{TAG_PREFIX}<tier>' in Admin -> Models"
        + (f"; installed: {', '.join(ids[:20])}" if ids else "; no models are installed")
    )


def restrict(config: TierwiseConfig, allowed: set[str]) -> TierwiseConfig | None:
    """The tiers one user may use: each keeps only models the user has access to."""
    tiers = []
    for tier in config.ranked_tiers:
        models = [m for m in tier.models if m in allowed]
        if models:
            tiers.append(tier.model_copy(update={"models": tuple(models)}))
    if not tiers:
        return None
    return config.model_copy(update={"tiers": tuple(tiers)})


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def with_switches(
    config: TierwiseConfig, semantic_cache: bool, summarize: bool, llm_judge: bool = False
) -> TierwiseConfig:
    """The config with the valves' switches applied: the valves turn the semantic cache,
    summarization and the LLM judge on or off; the config's `cache:`, `summarize:` and
    `scoring:` sections give the rest."""
    judge = config.scoring.judge.model_copy(update={"enabled": llm_judge})
    return config.model_copy(
        update={
            "cache": config.cache.model_copy(update={"enabled": semantic_cache}),
            "summarize": config.summarize.model_copy(update={"enabled": summarize}),
            "scoring": config.scoring.model_copy(update={"judge": judge}),
        }
    )


def feature_problems(config: TierwiseConfig, semantic_cache: bool, summarize: bool) -> list[str]:
    """What keeps the switched-on features from working with this config (checked on save)."""
    problems = []
    if semantic_cache:
        probe = SemanticCache(config.cache.model_copy(update={"enabled": True}), encoder=None)
        try:
            if not probe.enabled:
                problems.append(
                    f"semantic_cache: {probe.disabled_reason}; set cache.directory (or "
                    "cache.redis_url) in the config_path file to a place this server can write"
                )
        finally:
            probe.close()
    if summarize and not any(t.summary.enabled for t in config.tiers):
        problems.append(
            "summarize: every tier in the config has summary.enabled: false, so there is "
            "nothing to summarize into; enable it for a tier or leave the valve off"
        )
    return problems


def valve_shape_problem(tier_models: str, thresholds: str) -> str:
    """What is malformed in the two text valves ("" = nothing); checked on every load."""
    try:
        parse_tier_models(tier_models)
        parse_thresholds(thresholds)
    except ValueError as exc:
        return str(exc)
    return ""


def unknown_models(tier_models: str, installed: Sequence[Mapping[str, Any]]) -> str:
    """The tier_models ids Open WebUI does not have, with the ones it has ("" = none)."""
    ids = {str(m["id"]) for m in installed}
    unknown = [m for ms in parse_tier_models(tier_models).values() for m in ms if m not in ids]
    if not unknown:
        return ""
    have = ", ".join(sorted(ids)) or "no models (add a connection first)"
    return f"tier_models: unknown model id {', '.join(map(repr, unknown))}; installed: {have}"


def valve_problems(
    tier_models: str,
    thresholds: str,
    config_path: str,
    semantic_cache: bool,
    summarize: bool,
    installed: Sequence[Mapping[str, Any]],
) -> list[str]:
    """Everything wrong with these valves against these installed models ([] = fine).

    One check for both places that store valves: Open WebUI's save (through the Valves
    validator) and `tierwise openwebui install`, which runs it before changing anything.
    With no model list (none known yet), tiers and thresholds are still checked, as if
    every named model were installed.
    """
    try:
        mapping = parse_tier_models(tier_models)
        floors = parse_thresholds(thresholds)
        config = base_config(config_path)
    except (ValueError, SetupError) as exc:
        return [str(exc)]
    problems = feature_problems(config, semantic_cache, summarize)
    missing = unknown_models(tier_models, installed) if installed else ""
    if missing:
        return [*problems, missing]
    assumed = list(installed) or [
        {"id": m}
        for m in [
            *(m for ms in mapping.values() for m in ms),
            *(m for t in config.tiers for m in t.models),
        ]
    ]
    try:
        build_setup(config, mapping, floors, assumed)
    except SetupError as exc:
        problems.append(str(exc))
    return problems

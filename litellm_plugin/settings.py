"""Build the plugin's settings from a LiteLLM proxy config: the `auto` group plus `tierwise:`.

A LiteLLM config already lists the deployments; tierwise only needs to know which tier each
`auto` deployment belongs to (`model_info.tierwise_tier`) and, optionally, how each tier
behaves (a top-level `tierwise:` section). Tiers named `local`, `hpc` and `cloud` take the
embedded defaults, so the section can be left out entirely.

Pure dict handling, no LiteLLM import: the proxy hands us its parsed config, tests hand us
a mapping.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from tierwise.config import (
    ConfigError,
    StrictModel,
    TierwiseConfig,
    load_config,
)
from tierwise.config_errors import format_validation_error

TIER_KEY = "tierwise_tier"
METRICS_KEY = "tierwise_metrics_url"
SECTION = "tierwise"


class PluginSettings(StrictModel):
    """The `tierwise:` keys that belong to the LiteLLM adapter rather than the core."""

    model_group: str = Field("auto", min_length=1, description="the virtual model clients ask for")
    default_tier: str | None = Field(
        None, description="tier served when tierwise itself fails (default: the cheapest)"
    )
    replicas: Literal["litellm", "metrics"] = Field(
        "litellm",
        description="pick a tier's replica by LiteLLM's routing strategy, or by vLLM /metrics",
    )
    metrics_interval_s: float = Field(2.0, gt=0, description="how often /metrics are polled")
    metrics_timeout_s: float = Field(1.0, gt=0, description="per-poll timeout")
    steps: tuple[str, ...] = Field(
        (), description="pre-call steps, dotted paths 'package.module:factory'"
    )


@dataclass(frozen=True)
class Deployment:
    """What the plugin needs to know about one deployment of the `auto` group."""

    index: int  # position in model_list, for error messages
    tier: str
    model: str  # litellm_params.model
    metrics_url: str | None


@dataclass(frozen=True)
class PluginSetup:
    settings: PluginSettings
    config: TierwiseConfig
    deployments: tuple[Deployment, ...]

    @property
    def default_tier(self) -> str:
        return self.settings.default_tier or self.config.ranked_tiers[0].name

    def deployments_of(self, tier: str) -> list[Deployment]:
        return [d for d in self.deployments if d.tier == tier]


def embedded_tier_defaults() -> dict[str, dict[str, Any]]:
    """Tier settings by name from the embedded default config, without their model names."""
    text = importlib.resources.files("tierwise.defaults").joinpath("default.yaml").read_text()
    tiers = yaml.safe_load(text)["tiers"]
    return {t["name"]: {k: v for k, v in t.items() if k != "models"} for t in tiers}


def setup_from_proxy_config(
    proxy_config: Mapping[str, Any], where: str = "config.yaml"
) -> PluginSetup:
    """Validate the `auto` deployments and the `tierwise:` section; ConfigError names the key."""
    section = proxy_config.get(SECTION) or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where}: '{SECTION}' must be a mapping of settings")
    plugin_keys = set(PluginSettings.model_fields)
    core_keys = set(TierwiseConfig.model_fields)
    unknown = sorted(set(section) - plugin_keys - core_keys)
    if unknown:
        allowed = ", ".join(sorted(plugin_keys | core_keys))
        raise ConfigError(f"{where}: {SECTION}.{unknown[0]}: unknown key; allowed here: {allowed}")
    try:
        settings = PluginSettings.model_validate(
            {k: section[k] for k in plugin_keys & set(section)}
        )
    except ValidationError as exc:
        where_section = f"{where}: section '{SECTION}'"
        text = format_validation_error(exc, where_section, section, PluginSettings)
        raise ConfigError(
            text.replace("invalid tierwise config", "invalid plugin setting")
        ) from None

    deployments = _auto_deployments(proxy_config.get("model_list"), settings.model_group, where)
    core = {k: section[k] for k in core_keys & set(section)}
    core["tiers"] = _tiers(core.get("tiers"), deployments, settings.model_group, where)
    try:
        config = load_config(core)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("<mapping>", f"{where}: section '{SECTION}'")) from None
    if settings.default_tier is not None and settings.default_tier not in {
        t.name for t in config.tiers
    }:
        names = ", ".join(t.name for t in config.ranked_tiers)
        raise ConfigError(
            f"{where}: {SECTION}.default_tier: no tier named {settings.default_tier!r}; "
            f"tiers: {names}"
        )
    return PluginSetup(settings=settings, config=config, deployments=tuple(deployments))


def _auto_deployments(model_list: Any, group: str, where: str) -> list[Deployment]:
    if not isinstance(model_list, Sequence) or isinstance(model_list, str):
        raise ConfigError(f"{where}: model_list must list the '{group}' deployments")
    found: list[Deployment] = []
    for index, entry in enumerate(model_list):
        if not isinstance(entry, Mapping) or entry.get("model_name") != group:
            continue
        info = entry.get("model_info") or {}
        params = entry.get("litellm_params") or {}
        tier = info.get(TIER_KEY) if isinstance(info, Mapping) else None
        if not isinstance(tier, str) or not tier:
            raise ConfigError(
                f"{where}: model_list[{index}].model_info.{TIER_KEY}: missing; every deployment "
                f"of model group '{group}' names its tier, e.g. model_info: {{{TIER_KEY}: local}}"
            )
        if isinstance(info, Mapping) and "tier" in info and info["tier"] not in ("free", "paid"):
            raise ConfigError(
                f"{where}: model_list[{index}].model_info.tier: LiteLLM reserves this key "
                f"(free/paid); name the tierwise tier in model_info.{TIER_KEY}"
            )
        metrics = info.get(METRICS_KEY) if isinstance(info, Mapping) else None
        if metrics is not None and not (
            isinstance(metrics, str) and metrics.startswith(("http://", "https://"))
        ):
            raise ConfigError(
                f"{where}: model_list[{index}].model_info.{METRICS_KEY}: {metrics!r} is not an "
                "http(s) URL of a vLLM /metrics endpoint"
            )
        found.append(Deployment(index, tier, str(params.get("model") or ""), metrics))
    if not found:
        raise ConfigError(
            f"{where}: model_list has no deployment named '{group}'; add one per tier with "
            f"model_info: {{{TIER_KEY}: <tier>}}"
        )
    return found


def _tiers(
    declared: Any, deployments: list[Deployment], group: str, where: str
) -> list[dict[str, Any]]:
    """Merge embedded defaults, the section's tier entries and the deployments' tier tags."""
    if declared is None:
        declared = []
    if not isinstance(declared, Sequence) or isinstance(declared, str):
        raise ConfigError(f"{where}: {SECTION}.tiers must be a list of tier settings")
    by_name: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(declared):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{where}: {SECTION}.tiers[{i}].name: required key is missing")
        if "models" in entry:
            raise ConfigError(
                f"{where}: {SECTION}.tiers[{i}].models: set from the deployments tagged "
                f"model_info.{TIER_KEY}: {entry['name']}; remove it"
            )
        by_name[entry["name"]] = dict(entry)
    defaults = embedded_tier_defaults()
    models: dict[str, list[str]] = {}
    for d in deployments:
        models.setdefault(d.tier, []).append(d.model or f"model_list[{d.index}]")
        if d.tier not in by_name and d.tier not in defaults:
            raise ConfigError(
                f"{where}: model_list[{d.index}].model_info.{TIER_KEY}: tier {d.tier!r} has no "
                f"settings; add it under {SECTION}.tiers with at least name and order (tiers "
                f"with defaults: {', '.join(defaults)})"
            )
    for name in by_name:
        if name not in models:
            raise ConfigError(
                f"{where}: {SECTION}.tiers: tier {name!r} has no deployment; add one to model "
                f"group '{group}' with model_info: {{{TIER_KEY}: {name}}}"
            )
    # Declared tiers keep their positions, so an error's tiers[i] points into the section.
    names = list(by_name) + [name for name in models if name not in by_name]
    return [
        {**defaults.get(name, {}), **by_name.get(name, {}), "name": name, "models": models[name]}
        for name in names
    ]

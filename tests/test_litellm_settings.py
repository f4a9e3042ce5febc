"""The plugin's config: `auto` deployments tagged with tiers plus an optional tierwise section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from litellm_plugin.settings import setup_from_proxy_config
from tierwise.config import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "litellm_plugin" / "config.yaml"


def auto(name: str | None, model: str = "openai/m", **info: Any) -> dict[str, Any]:
    model_info = {"tierwise_tier": name, **info} if name else info
    return {"model_name": "auto", "litellm_params": {"model": model}, "model_info": model_info}


def config(*entries: dict[str, Any], **section: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model_list": list(entries)}
    if section:
        out["tierwise"] = section
    return out


def test_tiers_come_from_tags_defaults_and_section() -> None:
    setup = setup_from_proxy_config(
        config(
            auto("local", "ollama/a"),
            auto("cloud", "openrouter/b"),
            auto("cloud", "openrouter/c"),
            {"model_name": "other", "litellm_params": {"model": "x"}},
            tiers=[{"name": "cloud", "context_window": 1000000}],
            replicas="metrics",
        )
    )
    local, cloud = setup.config.ranked_tiers
    assert (local.name, local.models, local.context_window) == ("local", ("ollama/a",), 8192)
    assert cloud.models == ("openrouter/b", "openrouter/c")
    assert cloud.context_window == 1000000 and "vision" in cloud.capabilities
    assert setup.settings.replicas == "metrics" and setup.default_tier == "local"


def test_the_example_config_is_valid() -> None:
    setup = setup_from_proxy_config(yaml.safe_load(EXAMPLE.read_text()), str(EXAMPLE))
    assert [t.name for t in setup.config.ranked_tiers] == ["local", "hpc", "cloud"]
    assert setup.config.tier("hpc").vram is not None


@pytest.mark.parametrize(
    ("proxy_config", "message"),
    [
        (config(auto(None)), "model_list[0].model_info.tierwise_tier: missing"),
        (config(auto("gpu")), "tier 'gpu' has no settings; add it under tierwise.tiers"),
        (config(auto("local"), bogus=1), "tierwise.bogus: unknown key; allowed here:"),
        (
            config(auto("local"), replicas="best"),
            "replicas: Input should be 'litellm' or 'metrics'",
        ),
        (
            config(auto("local"), tiers=[{"name": "local", "order": "zero"}]),
            "tiers[0].order: Input should be a valid integer",
        ),
        (
            config(auto("local"), tiers=[{"name": "hpc", "order": 1}]),
            "tier 'hpc' has no deployment",
        ),
        (
            config(auto("local"), tiers=[{"name": "local", "models": ["x"]}]),
            "tierwise.tiers[0].models: set from the deployments",
        ),
        (config(auto("local", tier="gold")), "model_info.tier: LiteLLM reserves this key"),
        (config(auto("local", tierwise_metrics_url="gpu:8000")), "is not an http(s) URL"),
        (config(auto("local"), default_tier="cloud"), "default_tier: no tier named 'cloud'"),
        ({"model_list": [{"model_name": "gpt"}]}, "no deployment named 'auto'"),
    ],
)
def test_bad_config_names_the_key(proxy_config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        setup_from_proxy_config(proxy_config, "proxy.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("proxy.yaml")


def test_the_readme_five_line_snippet_is_valid() -> None:
    readme = (EXAMPLE.parent.parent / "README.md").read_text()
    section = readme.split("## LiteLLM proxy", 1)[1]
    snippet = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    added = [line for line in snippet.splitlines() if not line.startswith("model_list:")]
    assert len(added) <= 5
    setup = setup_from_proxy_config(yaml.safe_load(snippet))
    assert [t.name for t in setup.config.ranked_tiers] == ["local", "hpc", "cloud"]

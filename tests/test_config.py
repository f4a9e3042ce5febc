"""Config loading: good files load; each malformed file names the key, value and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import three_tiers
from tierwise.config import ConfigError, load_config


def test_embedded_default_loads() -> None:
    config = load_config()
    assert [t.name for t in config.ranked_tiers] == ["local", "hpc", "cloud"]


def test_nested_under_tierwise_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"tierwise": three_tiers()}))
    assert len(load_config(path).tiers) == 3


def test_thresholds_default_to_even_spacing() -> None:
    data = three_tiers()
    for tier in data["tiers"]:
        del tier["min_score"]
    assert load_config(data).thresholds() == pytest.approx(
        {"local": 0.0, "hpc": 1 / 3, "cloud": 2 / 3}
    )


def _tier(index: int, **change: object) -> dict[str, object]:
    data = three_tiers()
    data["tiers"][index].update(change)
    return data


MALFORMED = [
    # (mapping or raw YAML, substrings the message must contain)
    ({"tiers": []}, ["tiers", "at least 1"]),
    (
        {"teirs": three_tiers()["tiers"]},
        ["teirs", "unknown key", "allowed here: tiers, scoring, rules"],
    ),
    (_tier(0, capabilites=["tools"]), ["tiers[0].capabilites", "unknown key", "capabilities"]),
    (
        _tier(2, capabilities=["visoin"]),
        ["tiers[2].capabilities[0]", "'visoin'", "'vision'", "'tools'"],
    ),
    (_tier(1, context_window=-5), ["tiers[1].context_window", "greater than 0", "-5"]),
    (_tier(1, name="local"), ["tier names must be unique", "local"]),
    (_tier(1, order=0), ["tier orders must be unique", "0"]),
    (_tier(0, min_score=0.9), ["min_score must rise with tier order"]),
    (_tier(0, min_score=1.5), ["tiers[0].min_score", "less than or equal to 1", "1.5"]),
    (_tier(0, price={"input": 1}), ["tiers[0].price.input", "unknown key", "input_per_mtok"]),
    (_tier(0, models=[]), ["tiers[0].models", "at least 1"]),
    (_tier(0, vram={"source": "vllm"}), ["tiers[0].vram", "metrics_url"]),
    (
        _tier(0, sla={"max_ttft_ms": 100, "alpha": 2}),
        ["tiers[0].sla.alpha", "less than or equal to 1"],
    ),
    (_tier(0, name="bad name!"), ["tiers[0].name", "letters, digits"]),
    (
        {**three_tiers(), "rules": {"order": ["capability", "speed"]}},
        ["rules.order[1]", "'speed'", "'complexity'"],
    ),
    ({**three_tiers(), "rules": {"order": ["sla", "sla"]}}, ["listed twice"]),
    ({**three_tiers(), "rules": {"custom": ["not a path"]}}, ["rules.custom", "dotted path"]),
    (
        {**three_tiers(), "scoring": {"method": "magic"}},
        ["scoring.method", "'heuristic'", "'magic'"],
    ),
    (
        {**three_tiers(), "scoring": {"bands": {"medium": 0.8, "high": 0.5}}},
        ["medium (0.8) must be below high (0.5)"],
    ),
    ("tiers: [unclosed", ["not valid YAML", "line"]),
    ("- just\n- a list\n", ["top level must be a mapping"]),
    ({"tiers": [{"order": 0, "models": ["m"]}]}, ["tiers[0].name", "required key is missing"]),
]


@pytest.mark.parametrize(("data", "expected"), MALFORMED)
def test_malformed_config_names_the_problem(
    tmp_path: Path, data: object, expected: list[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    for part in expected:
        assert part in message, f"{part!r} not in:\n{message}"


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")


def test_cli_exits_2_with_the_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_tier(2, capabilities=["visoin"])))
    result = subprocess.run(
        [sys.executable, "-m", "tierwise", "--config", str(path), "route", "hello"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "tiers[2].capabilities[0]" in result.stderr
    assert "Traceback" not in result.stderr

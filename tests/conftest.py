"""Shared fixtures: paths to the public data and a small three-tier config."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Stub, start_stub
from tierwise.telemetry.record import RequestRecord

# LiteLLM fetches its model cost map at import unless told to use the bundled copy; tests are
# offline (and the retries cost seconds).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def three_tiers(**overrides: Any) -> dict[str, Any]:
    """A config mapping with local / hpc / cloud tiers; keyword overrides merge per tier name."""
    tiers = [
        {
            "name": "local",
            "order": 0,
            "models": ["local-model"],
            "context_window": 4096,
            "output_reserve": 512,
            "capabilities": ["tools"],
            "min_score": 0.0,
        },
        {
            "name": "hpc",
            "order": 1,
            "models": ["hpc-model"],
            "context_window": 32768,
            "output_reserve": 1024,
            "capabilities": ["tools"],
            "min_score": 0.3333,
        },
        {
            "name": "cloud",
            "order": 2,
            "models": ["cloud-model"],
            "price": {"input_per_mtok": 3, "output_per_mtok": 15},
            "context_window": 200000,
            "capabilities": ["vision", "tools"],
            "min_score": 0.6667,
        },
    ]
    for tier in tiers:
        tier.update(overrides.get(tier["name"], {}))
    config: dict[str, Any] = {"tiers": tiers}
    if "rules" in overrides:
        config["rules"] = overrides["rules"]
    return config


def sample_record(**changes: Any) -> RequestRecord:
    """A decision-log row with plain defaults; keyword arguments change fields."""
    fields: dict[str, Any] = {
        "ts": 1_800_000_000.0,
        "host": "litellm",
        "scope": "s",
        "tier": "local",
        "routed_tier": "local",
        "model": "m",
        "score": 0.1,
        "band": "LOW",
        "reason": "complexity: LOW",
    }
    return RequestRecord(**{**fields, **changes})


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


@pytest.fixture
def stub_factory(tmp_path: Path) -> Iterator[Callable[..., Stub]]:
    """Start OpenAI-compatible stand-ins: stub_factory("local") -> Stub; all stopped after."""
    started: list[Stub] = []

    def start(name: str, models: Sequence[str] = ()) -> Stub:
        stub = start_stub(name, tmp_path, models)
        started.append(stub)
        return stub

    yield start
    for stub in started:
        stub.stop()

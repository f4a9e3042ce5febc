"""`tierwise up --smoke`: the README's run command, non-interactively, on a bare machine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from litellm_plugin.up import plan_tiers, proxy_config
from relay.provider import HpcSettings
from tests.servers import free_port, run_headless, stand_in_env

REPO = Path(__file__).resolve().parent.parent


def test_plan_takes_tiers_from_the_environment() -> None:
    bare = plan_tiers({})
    assert [p.params for p in bare] == [None, None, None]
    assert all("STAND-IN" in p.source for p in bare)
    env = {
        "OLLAMA_API_BASE": "http://localhost:11434",
        "TIERWISE_HPC_API_BASE": "http://gpu:8000/v1",
        "OPENROUTER_API_KEY": "sk-or-x",
    }
    local, hpc, cloud = plan_tiers(env)
    assert local.params == {"model": "ollama_chat/llama3.2", "api_base": "http://localhost:11434"}
    assert hpc.params is not None and hpc.params["model"].startswith("hosted_vllm/")
    assert hpc.metrics_url == "http://gpu:8000/metrics"
    assert cloud.params is not None and cloud.params["api_key"] == "os.environ/OPENROUTER_API_KEY"
    assert "custom_provider_map" not in proxy_config([local, hpc, cloud], "sk")["litellm_settings"]


def test_plan_sends_the_hpc_tier_through_the_relay_when_configured() -> None:
    env = {"TIERWISE_RELAY_URL": "wss://relay.example.edu", "TIERWISE_HPC_ENDPOINT_ID": "ep-1"}
    _, hpc, _ = plan_tiers(env)
    assert hpc.params is not None and hpc.params["model"].startswith("hpc/")
    HpcSettings.model_validate(hpc.params["hpc"])  # what the provider will accept
    assert hpc.params["api_base"] == "http://127.0.0.1:8000/v1"
    settings = proxy_config(plan_tiers(env), "sk")["litellm_settings"]
    assert settings["custom_provider_map"] == [
        {"provider": "hpc", "custom_handler": "relay.provider.hpc_provider"}
    ]


@pytest.mark.integration
def test_up_smoke_starts_routes_and_exits_zero() -> None:
    env = stand_in_env()
    tierwise = Path(sys.executable).with_name("tierwise")
    command = [str(tierwise), "up", "--smoke", "--port", str(free_port())]
    out = run_headless(command, env=env, cwd=REPO, timeout_s=240)
    assert "local  STAND-IN" in out and "5/5 requests served" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if " 200 " in line}
    assert rows["easy"][2] == "local" and rows["hard"][2] == "cloud"
    assert rows["medium"][2] == "hpc" and rows["image"][2] == "cloud"
    assert "[local stand-in]" in out

"""`tierwise up --smoke`: the README's run command, non-interactively, on a bare machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from litellm_plugin.up import plan_tiers, proxy_config, tierwise_section
from relay.hpc_settings import HpcSettings
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


def run_up(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OLLAMA_API_BASE", "TIERWISE_HPC_API_BASE", "OPENROUTER_API_KEY")
    }
    return subprocess.run(
        [str(Path(sys.executable).with_name("tierwise")), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


def test_up_refuses_a_busy_port_and_names_the_fix() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_up("up", "--smoke", "--port", str(port), timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in done.stdout
    assert "--port" in done.stdout and "requests served" not in done.stdout


def test_up_checks_the_config_files_section_before_starting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tierwise:\n  cache: {enabled: maybe}\n")
    done = run_up("--config", str(bad), "up", "--smoke", "--port", str(free_port()), timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cache.enabled" in done.stdout and "starting the LiteLLM proxy" not in done.stdout


def test_config_section_reaches_the_proxy_config(tmp_path: Path) -> None:
    path = tmp_path / "tierwise.yaml"
    path.write_text("tiers:\n  - {name: local, models: [x], order: 0}\ntelemetry: {log: true}\n")
    section = tierwise_section(path)
    assert section["tiers"] == [{"name": "local", "order": 0}]  # models come from `up`
    config = proxy_config(plan_tiers({}), "sk-x", section)
    assert config["tierwise"]["telemetry"] == {"log": True}


def test_up_with_a_config_file_routes_by_its_tiers(tmp_path: Path) -> None:
    path = tmp_path / "litellm.yaml"
    path.write_text(  # every tier's threshold raised: all text stays local
        "tierwise:\n  tiers:\n    - {name: hpc, min_score: 0.98}\n"
        "    - {name: cloud, min_score: 0.99}\n"
    )
    done = run_up("--config", str(path), "up", "--smoke", "--port", str(free_port()))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if " 200 " in line}
    assert rows["hard"][2] == "local" and rows["medium"][2] == "local"

"""`tierwise up`: a LiteLLM proxy with tierwise's `auto` model, in one command.

Tiers come from the environment; any tier without one gets a clearly labelled local stand-in
(its replies start with "[<tier> stand-in]"), so a fresh machine shows routing working:

    local  OLLAMA_API_BASE (+ TIERWISE_LOCAL_MODEL, default llama3.2)
    hpc    TIERWISE_RELAY_URL + TIERWISE_HPC_ENDPOINT_ID: the campus GPU through the relay and
           Globus Compute (+ TIERWISE_HPC_API_BASE, vLLM as the GPU node sees it, default
           http://127.0.0.1:8000/v1; TIERWISE_RELAY_SECRET and GLOBUS_COMPUTE_CLIENT_ID /
           _SECRET must be set too); or TIERWISE_HPC_API_BASE alone: a vLLM server the proxy
           reaches directly (its /metrics feed the VRAM rule). TIERWISE_HPC_MODEL names it.
    cloud  OPENROUTER_API_KEY (+ TIERWISE_CLOUD_MODEL, default anthropic/claude-sonnet-4)

`--smoke` starts everything, sends a few requests, prints where each went and exits
(0 when every request was served), for CI and non-interactive shells.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
import yaml

from litellm_plugin.launch import Child, LaunchError, standin_deployment, start_proxy, start_standin
from litellm_plugin.settings import SECTION, setup_from_proxy_config
from tierwise.config import ConfigError

TIERS = ("local", "hpc", "cloud")


@dataclass
class TierPlan:
    tier: str
    params: dict[str, Any] | None  # litellm_params; None = start a stand-in
    source: str  # what a person reads: where this tier's answers come from
    metrics_url: str | None = None


def plan_tiers(env: Mapping[str, str]) -> list[TierPlan]:
    """Decide each tier's upstream from the environment."""
    plans = []
    params: dict[str, Any]
    if env.get("OLLAMA_API_BASE"):
        model = env.get("TIERWISE_LOCAL_MODEL", "llama3.2")
        params = {"model": f"ollama_chat/{model}", "api_base": env["OLLAMA_API_BASE"]}
        plans.append(TierPlan("local", params, f"Ollama {model} at {env['OLLAMA_API_BASE']}"))
    else:
        plans.append(TierPlan("local", None, "STAND-IN (set OLLAMA_API_BASE for Ollama)"))
    hpc_model = env.get("TIERWISE_HPC_MODEL", "meta-llama/Llama-3.1-70B-Instruct")
    if env.get("TIERWISE_RELAY_URL") and env.get("TIERWISE_HPC_ENDPOINT_ID"):
        base = env.get("TIERWISE_HPC_API_BASE", "http://127.0.0.1:8000/v1").rstrip("/")
        relay = {
            "relay_url": env["TIERWISE_RELAY_URL"],
            "endpoint_id": env["TIERWISE_HPC_ENDPOINT_ID"],
        }
        if env.get("TIERWISE_HPC_FUNCTION_ID"):  # from `tierwise hpc register`
            relay["function_id"] = env["TIERWISE_HPC_FUNCTION_ID"]
        params = {"model": f"hpc/{hpc_model}", "api_base": base, "hpc": relay}
        source = f"{hpc_model} via relay {env['TIERWISE_RELAY_URL']} (Globus Compute)"
        plans.append(TierPlan("hpc", params, source))
    elif env.get("TIERWISE_HPC_API_BASE"):
        base = env["TIERWISE_HPC_API_BASE"].rstrip("/")
        params = {"model": f"hosted_vllm/{hpc_model}", "api_base": base}
        metrics = base.removesuffix("/v1") + "/metrics"
        plans.append(TierPlan("hpc", params, f"vLLM {hpc_model} at {base}", metrics))
    else:
        plans.append(
            TierPlan(
                "hpc",
                None,
                "STAND-IN (set TIERWISE_RELAY_URL + TIERWISE_HPC_ENDPOINT_ID for the relay, "
                "or TIERWISE_HPC_API_BASE for a vLLM server)",
            )
        )
    if env.get("OPENROUTER_API_KEY"):
        model = env.get("TIERWISE_CLOUD_MODEL", "anthropic/claude-sonnet-4")
        params = {"model": f"openrouter/{model}", "api_key": "os.environ/OPENROUTER_API_KEY"}
        plans.append(TierPlan("cloud", params, f"OpenRouter {model}"))
    else:
        plans.append(TierPlan("cloud", None, "STAND-IN (set OPENROUTER_API_KEY for OpenRouter)"))
    return plans


# Declared rates of zero: LiteLLM logs these tiers as free instead of running its zero-cost
# diagnostic (and warning "billable request priced at $0") on every response.
FREE: dict[str, float] = {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0}


def proxy_config(
    plans: list[TierPlan], master_key: str, section: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The proxy's config.yaml; `section` is the `tierwise:` section (cache, telemetry, ...)."""
    model_list = []
    for plan in plans:
        info: dict[str, Any] = {"tierwise_tier": plan.tier}
        if not str((plan.params or {}).get("model", "")).startswith("openrouter/"):
            info.update(FREE)  # own hardware or a stand-in: priced at zero, and said so
        if plan.metrics_url:
            info["tierwise_metrics_url"] = plan.metrics_url
        model_list.append({"model_name": "auto", "litellm_params": plan.params, "model_info": info})
    settings: dict[str, Any] = {"callbacks": ["litellm_plugin.tierwise"]}
    if any(str((p.params or {}).get("model", "")).startswith("hpc/") for p in plans):
        settings["custom_provider_map"] = [
            {"provider": "hpc", "custom_handler": "relay.provider.hpc_provider"}
        ]
    config: dict[str, Any] = {
        "model_list": model_list,
        "litellm_settings": settings,
        "general_settings": {"master_key": master_key},
    }
    if section:
        config["tierwise"] = dict(section)
    return config


def tierwise_section(path: Path) -> dict[str, Any]:
    """The `tierwise:` section of a LiteLLM config, or a whole tierwise config file (its tiers'
    `models` dropped: `up` takes them from its own deployments). ConfigError names the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read it as YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of settings")
    section = data.get(SECTION, data)
    if not isinstance(section, Mapping):
        raise ConfigError(f"{path}: '{SECTION}' must be a mapping of settings")
    section = dict(section)
    if isinstance(section.get("tiers"), list):
        section["tiers"] = [
            {k: v for k, v in t.items() if k != "models"} if isinstance(t, Mapping) else t
            for t in section["tiers"]
        ]
    return section


def port_taken(host: str, port: int) -> bool:
    """Whether something already listens on host:port (then the proxy could not bind, and
    requests would reach that other server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        target = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return probe.connect_ex((target, port)) == 0


SMOKE_REQUESTS: tuple[tuple[str, Any, bool], ...] = (
    ("easy", "What is the capital of Australia?", False),
    ("easy, streamed", "Translate 'good morning' into French.", True),
    ("medium", "Write a Python function that checks whether a string is a palindrome.", False),
    (
        "hard",
        "Prove that the square root of 2 is irrational, then generalize the argument to any "
        "prime p and explain where it fails for composite numbers.",
        True,
    ),
    (
        "image",
        [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
        ],
        False,
    ),
)


def smoke(url: str, key: str, out: TextIO) -> int:
    """Send the smoke requests; print tier, score and the start of each reply."""
    failures = 0
    out.write(f"\n{'request':<16}{'status':<8}{'tier':<8}{'score':<8}reply\n")
    for label, content, stream in SMOKE_REQUESTS:
        body = {
            "model": "auto",
            "stream": stream,
            "messages": [{"role": "user", "content": content}],
        }
        try:
            response = httpx.post(
                f"{url}/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
                timeout=120,
            )
            reply = _reply_text(response) if response.status_code == 200 else response.text
        except httpx.HTTPError as exc:
            failures += 1
            out.write(f"{label:<16}{'error':<8}{'-':<8}{'-':<8}{exc}\n")
            continue
        failures += response.status_code != 200
        tier = response.headers.get("x-tierwise-tier", "-")
        score = response.headers.get("x-tierwise-score", "-")
        out.write(f"{label:<16}{response.status_code:<8}{tier:<8}{score[:6]:<8}{reply[:60]!r}\n")
        out.write(f"{'':<16}why: {response.headers.get('x-tierwise-reason', '-')}\n")
    out.write(f"\n{len(SMOKE_REQUESTS) - failures}/{len(SMOKE_REQUESTS)} requests served\n")
    return 1 if failures else 0


def _reply_text(response: httpx.Response) -> str:
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        return str(response.json()["choices"][0]["message"]["content"])
    text = ""
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:]).get("choices", []):
                text += choice.get("delta", {}).get("content") or ""
    return text


def run(
    port: int,
    host: str,
    run_smoke: bool,
    env: Mapping[str, str],
    out: TextIO = sys.stdout,
    config_path: Path | None = None,
) -> int:
    """Start stand-ins and the proxy; serve until interrupted, or run the smoke test."""
    if port_taken(host, port):
        out.write(
            f"tierwise up: port {port} on {host} is already in use (another server?); "
            f"choose a free one with --port, e.g. --port {port + 1}\n"
        )
        return 2
    plans = plan_tiers(env)
    try:
        section = tierwise_section(config_path) if config_path else None
        if section is not None:  # check it now, before anything starts
            setup_from_proxy_config(proxy_config(plans, "check", section), str(config_path))
    except ConfigError as exc:
        out.write(f"tierwise up: {exc}\n")
        return 2
    key = env.get("LITELLM_MASTER_KEY") or f"sk-tierwise-{secrets.token_hex(12)}"
    children: list[Child] = []
    workdir = Path(tempfile.mkdtemp(prefix="tierwise-up-"))
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        for plan in plans:
            if plan.params is None:
                child = start_standin(plan.tier, workdir)
                children.append(child)
                plan.params = standin_deployment(plan.tier, child)
        out.write("tierwise up: tiers of the `auto` model\n")
        for plan in plans:
            out.write(f"  {plan.tier:<6} {plan.source}\n")
        out.write(f"starting the LiteLLM proxy on {host}:{port} (logs in {workdir}) ...\n")
        out.flush()
        proxy = start_proxy(
            proxy_config(plans, key, section),
            workdir,
            port=port,
            host=host,
            env={"LITELLM_MASTER_KEY": key},
        )
        children.append(proxy)
        url = f"http://{host if host != '0.0.0.0' else '127.0.0.1'}:{port}"
        if run_smoke:
            code = smoke(url, key, out)
            if code == 0:
                shutil.rmtree(workdir, ignore_errors=True)  # keep logs only when it failed
            return code
        out.write(_usage(url, key))
        out.flush()
        while proxy.process.poll() is None:
            time.sleep(0.5)
        out.write(f"the proxy exited with {proxy.process.returncode}; see {proxy.log}\n")
        return 1
    except LaunchError as exc:
        out.write(f"tierwise up: {exc}\n")
        return 1
    except KeyboardInterrupt:
        out.write("\nstopping\n")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        for child in reversed(children):
            child.stop()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _usage(url: str, key: str) -> str:
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "Hello!"}]})
    return (
        f"\nready: {url}  (OpenAI-compatible; model `auto`; master key {key})\n"
        f"  curl -s {url}/v1/chat/completions -H 'Authorization: Bearer {key}' \\\n"
        f"    -H 'Content-Type: application/json' -d '{body}' -D - | grep -i x-tierwise\n"
        "Ctrl-C stops everything.\n"
    )

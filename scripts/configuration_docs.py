"""Write (or check) docs/configuration.md from the configuration models.

    python scripts/configuration_docs.py          # rewrite the page
    python scripts/configuration_docs.py --check  # exit 1 if the page is out of date

It lives outside the `tierwise` package because it reads the host adapters' models too
(the core imports no host).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network for a docs page

from litellm_plugin.settings import PluginSettings
from openwebui_pipe.auto_router import Pipe
from relay.hpc_settings import HpcSettings
from tierwise.config import TierwiseConfig
from tierwise.config_docs import Section, render_page

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

INTRO = """\
Generated from the pydantic models by `python scripts/configuration_docs.py`; a test fails
when this page is older than the code, so every key here exists and every key that exists
is here. Unknown keys and bad values are refused at start with a message naming the key,
the value and what is allowed (exit code 2 for the CLI; the proxy does not start)."""

EXAMPLE = """\
tiers:                      # at least one; names and orders unique
  - name: local             # letters, digits, _ - . (<= 64)
    order: 0                # 0 = cheapest; higher = stronger
    models: [ollama-llama3] # the host's model names for this tier
    price: {input_per_mtok: 0.0, output_per_mtok: 0.0}   # USD per 1M tokens
    context_window: 8192
    output_reserve: 1024    # tokens kept free for the answer
    capabilities: [tools]   # any of: vision, tools, json
    min_score: 0.0          # lowest score this tier is chosen for (default: evenly spaced)
    vram:                   # optional: skip when the GPU is too full
      source: nvml          # nvml (local card) or vllm (metrics_url required)
      device: 0
      min_free_gb: 4
      # metrics_url: http://gpu-node:8000/metrics
      # max_kv_cache_usage: 0.95
      # max_waiting: 8
    sla:                    # optional: skip when slow, probe to recover
      max_ttft_ms: 1500
      seed_ms: 500          # assumed EMA before any observation (default: half the SLA)
      alpha: 0.2
      probe_every: 20
  - name: cloud
    order: 2
    models: [claude-sonnet]
    price: {input_per_mtok: 3.0, output_per_mtok: 15.0}
    context_window: 200000
    capabilities: [vision, tools, json]
    min_score: 0.6667
scoring:
  method: auto              # auto | heuristic | learned | cascade
  bands: {medium: 0.3333, high: 0.6667}
rules:
  order: [capability, context, complexity, vram, sla, health, custom]
  context_margin: 0.05      # share of each window kept spare for tokenizer differences
  health: {max_failures: 3, cooldown_s: 30}
  custom: ["mypackage.rules:prefer_local_at_night"]
"""

SECTIONS = (
    Section(
        "The tierwise configuration",
        "A YAML file for `tierwise --config FILE ...`, the Open WebUI valve `config_path`, or "
        "the top-level `tierwise:` section of a LiteLLM proxy config. Tiers named `local`, "
        "`hpc` and `cloud` take the embedded defaults (`tierwise/defaults/default.yaml`).",
        TierwiseConfig,
    ),
    Section(
        "LiteLLM adapter keys",
        "Extra keys of the `tierwise:` section that only the LiteLLM proxy plugin reads "
        "([LiteLLM](litellm.md)).",
        PluginSettings,
        "tierwise.",
    ),
    Section(
        "HPC deployments",
        "`litellm_params.hpc` of a deployment whose model is `tierwise-hpc/<name>` "
        "([HPC tier](hpc.md)).",
        HpcSettings,
        "hpc.",
    ),
    Section(
        "Open WebUI valves",
        "Admin → Functions → `auto` → Valves ([Open WebUI](openwebui.md)).",
        Pipe.Valves,
    ),
)


def render() -> str:
    example = f"An annotated example (a test checks it loads):\n\n```yaml\n{EXAMPLE}```"
    return render_page("Configuration reference", f"{INTRO}\n\n{example}", SECTIONS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only check the page is current")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE} is out of date: run python scripts/configuration_docs.py")
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

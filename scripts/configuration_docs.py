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
    return render_page("Configuration reference", INTRO, SECTIONS)


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

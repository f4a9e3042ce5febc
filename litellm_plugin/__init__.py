"""tierwise for the LiteLLM proxy: a virtual model group (`auto`) routed by complexity.

In the proxy's config.yaml:

    litellm_settings:
      callbacks: [litellm_plugin.tierwise]

`litellm_plugin.tierwise` is built on first access from the running proxy's config (its
`auto` deployments and optional `tierwise:` section), so importing this package does not
import LiteLLM. A bad tierwise config stops the proxy at start with a message naming the key.
"""

from __future__ import annotations

import sys
from typing import Any


def __getattr__(name: str) -> Any:
    if name != "tierwise":
        raise AttributeError(f"module 'litellm_plugin' has no attribute {name!r}")
    from litellm_plugin.handler import proxy_handler
    from tierwise.config import ConfigError

    try:
        return proxy_handler()
    except ConfigError as exc:
        # Said once, plainly, before LiteLLM wraps it in its start-up traceback.
        print(f"\ntierwise: the proxy cannot start: {exc}\n", file=sys.stderr, flush=True)
        raise

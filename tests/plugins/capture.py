"""A LiteLLM logging callback that writes what observability tools receive to a JSONL file.

It reads the standard logging payload, as Langfuse, Datadog or a spend-log writer would, so
a test can assert that the tierwise decision reached the user's existing observability.
"""

from __future__ import annotations

import json
import os
from typing import Any

from litellm.integrations.custom_logger import CustomLogger


class Capture(CustomLogger):
    async def async_log_success_event(
        self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        payload = kwargs.get("standard_logging_object") or {}
        metadata = payload.get("metadata") or {}
        row = {
            "model_group": payload.get("model_group"),
            "model_id": payload.get("model_id"),
            "spend_logs_metadata": metadata.get("spend_logs_metadata"),
            "cache_hit": payload.get("cache_hit"),
            "response_cost": payload.get("response_cost"),
        }
        with open(os.environ["TIERWISE_TEST_CAPTURE"], "a", encoding="utf-8") as sink:
            sink.write(json.dumps(row, default=str) + "\n")


capture = Capture()

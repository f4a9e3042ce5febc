"""Telemetry: each finished chat is one `Telemetry.request()` row (decision log, metrics).

Recording never fails a chat: a fault here is logged and counted, and the chat goes on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from openwebui_pipe.answers import StreamTap, usage_tokens
from openwebui_pipe.chat import Chat
from tierwise.config import TelemetryConfig, TierwiseConfig
from tierwise.rules import Signals
from tierwise.telemetry import CACHE_TIER, Telemetry
from tierwise.telemetry.log import DecisionLog, default_path
from tierwise.tokens import default_counter

log = logging.getLogger("tierwise.openwebui")

HOST = "openwebui"  # the host label in telemetry


class Recorder:
    """Telemetry for the pipe's ladders, rebuilt only when the ladder changes."""

    def __init__(self, signals: Signals) -> None:
        self.signals = signals
        self._telemetry: tuple[TierwiseConfig, Telemetry] | None = None
        self._decision_logs: dict[str, DecisionLog] = {}

    def finish(
        self,
        chat: Chat,
        tier: str,
        *,
        ok: bool,
        error: str = "",
        usage: Any = None,
        answer: Mapping[str, Any] | None = None,
        tap: StreamTap | None = None,
        hit: bool = False,
        model: str | None = None,
    ) -> None:
        """Record the finished chat once: served tier, timings, tokens, cache and summary."""
        if chat.recorded or chat.telemetry is None:
            return
        chat.recorded = True
        try:
            now = time.perf_counter()
            if tap is not None:
                usage = tap.usage
                content = tap.text
            else:
                content = str((answer or {}).get("content") or "")
            tokens_in, tokens_out = usage_tokens(usage)
            if tokens_in is None and chat.fitted is not None:
                tokens_in = chat.fitted.prompt_tokens  # what was sent, after fitting
            if tokens_out is None:
                tokens_out = default_counter().count(content) if content else 0
            if model is None and tier != CACHE_TIER:
                model = chat.route.model_for(tier)
            first = chat.first_chunk
            chat.telemetry.request(
                chat.route.logged(),
                scope=chat.route.request.scope if chat.route.request else None,
                tier=tier,
                model=model,
                ok=ok,
                error=error,
                latency_ms=(now - chat.started) * 1000,
                ttft_ms=(first - chat.started) * 1000 if first is not None else None,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                cache_hit=hit,
                summarized=chat.fitted is not None and chat.fitted.changed,
                request_id=chat.request_id,
            )
        except Exception:
            log.exception("tierwise auto: recording the chat failed (ignored)")
            self.count_error("telemetry")

    def count_error(self, where: str) -> None:
        """Count an error inside tierwise that the pipe caught (the chat went on)."""
        if self._telemetry is not None:
            self._telemetry[1].error(where)

    def telemetry_for(self, config: TierwiseConfig) -> Telemetry | None:
        """Decision log and metrics for this ladder (prices per tier); None if they fail.

        Rebuilt only when the ladder is (the Setup, and so its config object, is cached).
        """
        if self._telemetry is None or self._telemetry[0] is not config:
            try:
                settings = config.telemetry
                decision_log = self._decision_log(settings) if settings.log else None
                metrics = None
                if settings.metrics:
                    from tierwise.telemetry.metrics import metrics_for

                    metrics = metrics_for()
                telemetry = Telemetry(
                    config, HOST, signals=self.signals, decision_log=decision_log, metrics=metrics
                )
            except Exception:
                log.exception("tierwise auto: telemetry could not start (chats go on without it)")
                return None
            self._telemetry = (config, telemetry)
        return self._telemetry[1]

    def _decision_log(self, settings: TelemetryConfig) -> DecisionLog:
        """One writer per log file and settings, kept across ladder changes: a stream still
        running when the valves change must not lose its row to a closed log."""
        path = Path(settings.path).expanduser() if settings.path else default_path()
        key = json.dumps([str(path), settings.retention_days, settings.queue_size])
        found = self._decision_logs.get(key)
        if found is None:
            found = self._decision_logs[key] = DecisionLog(
                path, retention_days=settings.retention_days, queue_size=settings.queue_size
            )
        return found

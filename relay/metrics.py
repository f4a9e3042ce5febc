"""Counters and gauges for the relay, rendered as Prometheus text (no client library needed)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

# name -> (type, help); every metric the relay exports is declared here.
METRICS: dict[str, tuple[str, str]] = {
    "tierwise_relay_channels": ("gauge", "Open channels"),
    "tierwise_relay_connections": ("gauge", "Open WebSocket connections by role"),
    "tierwise_relay_buffered_messages": ("gauge", "Messages held for consumers, all channels"),
    "tierwise_relay_messages_total": ("counter", "Producer messages accepted, by type"),
    "tierwise_relay_bytes_total": ("counter", "Bytes of producer messages accepted"),
    "tierwise_relay_duplicates_dropped_total": (
        "counter",
        "Producer messages dropped as already delivered (replay after a reconnect)",
    ),
    "tierwise_relay_auth_failures_total": ("counter", "Handshakes refused with 401, by reason"),
    "tierwise_relay_rejected_total": ("counter", "Handshakes refused for other reasons"),
    "tierwise_relay_protocol_errors_total": ("counter", "Connections closed for a bad message"),
    "tierwise_relay_oversize_total": ("counter", "Connections closed for a message over the limit"),
    "tierwise_relay_backpressure_waits_total": (
        "counter",
        "Times a producer was paused because its channel buffer was full",
    ),
    "tierwise_relay_producer_lost_total": (
        "counter",
        "Producers that vanished mid-stream (the consumer got an error)",
    ),
    "tierwise_relay_cancels_total": ("counter", "Channels cancelled, by reason"),
    "tierwise_relay_resumes_total": ("counter", "Reconnections that resumed a channel, by role"),
    "tierwise_relay_channels_completed_total": ("counter", "Channels delivered to the end"),
}


class Metrics:
    """Monotonic counters with labels; gauges are passed in at render time."""

    def __init__(self) -> None:
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(
            lambda: defaultdict(float)
        )

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        if name not in METRICS:
            raise KeyError(f"undeclared metric {name}")
        self._counters[name][tuple(sorted(labels.items()))] += amount

    def value(self, name: str, **labels: str) -> float:
        return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def render(self, gauges: Mapping[str, Mapping[tuple[tuple[str, str], ...], float]]) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        for name, (kind, help_text) in METRICS.items():
            series = gauges.get(name) if kind == "gauge" else self._counters.get(name)
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in sorted((series or {}).items()):
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                lines.append(f"{name}{{{label_text}}} {value:g}" if labels else f"{name} {value:g}")
            if not series and kind == "counter":
                lines.append(f"{name} 0")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

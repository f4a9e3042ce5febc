"""Observability: the decision log (SQLite), Prometheus metrics, and the summaries the
dashboard and `tierwise report` show. Adapters need only `Telemetry`."""

from tierwise.telemetry.record import RequestRecord
from tierwise.telemetry.recorder import CACHE_TIER, Telemetry

__all__ = ["CACHE_TIER", "RequestRecord", "Telemetry"]

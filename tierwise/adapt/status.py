"""Where the feedback loop stands: outcomes received, the version in service, its gain.

Shared by `tierwise adapt --status` and the dashboard's panel. Read-only.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from tierwise.adapt.background import last_refit
from tierwise.adapt.outcomes import counts
from tierwise.adapt.store import AdaptStore

DAY_S = 86400.0
ROLLBACK = "tierwise adapt --rollback"


def adapt_status(
    conn: sqlite3.Connection, store: AdaptStore, now: float | None = None
) -> dict[str, Any]:
    """A JSON-ready picture; a log without an outcomes table (older file) counts zero."""
    now = time.time() if now is None else now
    try:
        received, recent = counts(conn), counts(conn, now - DAY_S)
    except sqlite3.OperationalError:
        received, recent = {}, {}
    body: dict[str, Any] = {
        "outcomes": sum(received.values()),
        "outcomes_24h": sum(recent.values()),
        "by_source": received,
        "dir": str(store.dir),
        "versions": store.versions(),
        "version": 0,
        "rollback": ROLLBACK,
        "last_refit": dict(zip(("outcomes", "ts"), last_refit(store.dir), strict=True)),
    }
    try:
        current = store.current()
    except (OSError, ValueError) as exc:
        body["error"] = str(exc)
        return body
    if current is not None:
        body.update(
            version=current.version,
            parent=current.parent,
            fitted_on=current.outcomes,
            held_back=current.held_back,
            gain=round(current.gain, 4),
            created=current.created,
        )
    return body


def format_status(status: dict[str, Any]) -> str:
    lines = [f"versions in {status['dir']}: {status['versions'] or 'none'}"]
    if status.get("error"):
        lines.append(f"cannot read the version in service: {status['error']}")
    elif status["version"]:
        lines.append(
            f"in service: version {status['version']} (parent {status['parent']}), fitted on "
            f"{status['fitted_on']} outcomes, held-back gain {status['gain']:+.4f} on "
            f"{status['held_back']}; undo with `{status['rollback']}`"
        )
    else:
        lines.append("in service: none (the scorer as it is)")
    refit = status.get("last_refit") or {}
    if refit.get("ts"):
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(refit["ts"]))
        lines.append(f"last background refit: {when}, on {refit['outcomes']} outcomes")
    sources = ", ".join(f"{k} {v}" for k, v in sorted(status["by_source"].items()))
    lines.append(
        f"outcomes received: {status['outcomes']} ({status['outcomes_24h']} in 24 h)"
        + (f": {sources}" if sources else "")
    )
    return "\n".join(lines)

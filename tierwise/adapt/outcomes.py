"""Outcomes: what became of an answer, stored beside the decision that produced it.

One row per signal in the decision log's `outcomes` table, keyed by the request id the host
answered with. A caller can rate only its own answers: the outcome's scope must be the
decision's scope, and an id of someone else's request reads as unknown (nothing is
revealed). Writes are synchronous and short: outcomes arrive once per answer at most.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from tierwise.telemetry.schema import connect, ensure_schema

SOURCES = ("rating", "feedback", "regenerate", "reask", "fallback")


@dataclass(frozen=True)
class Example:
    """One rated answer: which kind of tier gave it, and was it good enough?"""

    ts: float
    score: float  # the scorer's own score (before any adaptation)
    sketch: bytes | None
    top: bool  # answered by the top tier (else by a cheaper one)
    good: bool
    scope: str = ""  # Scope.key() of the caller (the tenant, with adapt.scope: tenant)
    explored: bool = False  # sent to the other tier by exploration (its propensity is known)


class OutcomeError(ValueError):
    """An outcome that cannot be stored; `status_code` is what an HTTP adapter answers."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class Stored:
    request_id: str
    tier: str
    value: float


def open_log(path: str | Path) -> sqlite3.Connection:
    """A writable connection to the decision log, schema ensured (the file may be new)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    ensure_schema(conn)
    return conn


def record_outcome(
    conn: sqlite3.Connection,
    request_id: str,
    scope: str,
    value: float,
    source: str = "feedback",
    ts: float | None = None,
    repeat: bool = True,
) -> Stored:
    """Store one outcome for the caller's own request; raises OutcomeError otherwise.

    repeat=False stores nothing when the request's latest outcome is this one already (a
    host that reports the same rating again, e.g. when a comment is added to it).
    """
    if not isinstance(request_id, str) or not request_id.strip() or len(request_id) > 200:
        raise OutcomeError("'id' must be the response id the answer came with (a string)")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise OutcomeError("'score' must be a number from 0 (not good enough) to 1 (good)")
    if source not in SOURCES:
        raise OutcomeError(f"unknown outcome source {source!r}; one of {', '.join(SOURCES)}")
    row = conn.execute(
        "SELECT tier FROM requests WHERE request_id = ? AND scope = ? ORDER BY id DESC LIMIT 1",
        (request_id, scope),
    ).fetchone()
    if row is None:
        raise OutcomeError(
            f"no answer {request_id!r} of yours in the decision log (is telemetry.log on, and "
            "was it answered by the `auto` model?)",
            status_code=404,
        )
    stored = Stored(request_id, str(row[0]), float(value))
    if not repeat and _latest(conn, request_id, scope) == (source, float(value)):
        return stored
    conn.execute(
        "INSERT INTO outcomes (ts, request_id, scope, source, value) VALUES (?, ?, ?, ?, ?)",
        (time.time() if ts is None else ts, request_id, scope, source, float(value)),
    )
    return stored


def _latest(conn: sqlite3.Connection, request_id: str, scope: str) -> tuple[str, float] | None:
    row = conn.execute(
        "SELECT source, value FROM outcomes WHERE request_id = ? AND scope = ? "
        "ORDER BY id DESC LIMIT 1",
        (request_id, scope),
    ).fetchone()
    return (str(row[0]), float(row[1])) if row is not None else None


def training_examples(conn: sqlite3.Connection, top_tier: str) -> list[Example]:
    """The latest outcome of each rated request that a tier (not the cache) answered.

    `explored` is set only where exploration crossed the top tier's boundary (into the top
    tier, or out of it: the reasons name the tier the router chose), the only explorations
    that say what the other side of the routing decision would have got.
    """
    rows = conn.execute(
        """
        SELECT o.ts, r.raw_score, r.sketch, r.tier, o.value, o.scope,
               r.explored AND (r.tier = ? OR r.reasons LIKE ?)
        FROM outcomes o JOIN requests r ON r.request_id = o.request_id AND r.scope = o.scope
        WHERE o.id IN (SELECT MAX(id) FROM outcomes GROUP BY request_id, scope)
          AND r.raw_score IS NOT NULL AND r.cache_hit = 0 AND r.ok = 1
        ORDER BY o.ts
        """,
        (top_tier, f"%instead of {top_tier} (adapt.explore%"),
    ).fetchall()
    return [
        Example(
            float(ts),
            float(raw),
            sketch,
            top=tier == top_tier,
            good=value >= 0.5,
            scope=who,
            explored=bool(explored),
        )
        for ts, raw, sketch, tier, value, who, explored in rows
    ]


def recent_traffic(
    conn: sqlite3.Connection, limit: int = 2000, scope: str | None = None
) -> list[tuple[float, bytes | None]]:
    """(scorer's score, sketch) of the latest routed requests, rated or not (one scope's)."""
    where = "" if scope is None else " AND scope = ?"
    rows = conn.execute(
        "SELECT raw_score, sketch FROM requests WHERE raw_score IS NOT NULL AND cache_hit = 0"
        f"{where} ORDER BY id DESC LIMIT ?",
        (limit,) if scope is None else (scope, limit),
    ).fetchall()
    return [(float(score), sketch) for score, sketch in rows]


def counts(conn: sqlite3.Connection, since: float = 0.0) -> dict[str, int]:
    """Outcomes received per source since `since` (unix seconds)."""
    rows = conn.execute(
        "SELECT source, COUNT(*) FROM outcomes WHERE ts >= ? GROUP BY source", (since,)
    ).fetchall()
    return {str(source): int(n) for source, n in rows}

"""The decision log's SQLite schema and connection settings, shared by writer and readers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tierwise.telemetry.record import COLUMNS

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,            -- unix seconds
    host TEXT NOT NULL,          -- litellm, openwebui, relay, ...
    scope TEXT NOT NULL,         -- Scope.key(): a hash, never the raw user or key
    tier TEXT NOT NULL,          -- the tier that served
    routed_tier TEXT NOT NULL,   -- the tier decided (differs after a fallback)
    model TEXT NOT NULL,
    score REAL,
    band TEXT NOT NULL,
    reason TEXT NOT NULL,        -- short key of the deciding rule
    reasons TEXT NOT NULL,       -- JSON list: every rule line of the decision
    cache_hit INTEGER NOT NULL,
    summarized INTEGER NOT NULL,
    fallback INTEGER NOT NULL,
    probe INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    error TEXT NOT NULL,
    latency_ms REAL,
    ttft_ms REAL,
    decide_ms REAL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    top_cost_usd REAL NOT NULL,
    request_id TEXT NOT NULL DEFAULT '',  -- the id the host answered with (e.g. chatcmpl-...)
    raw_score REAL,              -- the scorer's own score, before the install's adaptation
    sketch BLOB,                 -- 256 int8: the question's static embedding (adapt on only)
    explored INTEGER NOT NULL DEFAULT 0  -- sent to a neighbour tier to learn how it copes
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
"""
# Columns version 2 added; a version-1 file gets them with ALTER TABLE.
ADDED_IN_2 = (
    "request_id TEXT NOT NULL DEFAULT ''",
    "raw_score REAL",
    "sketch BLOB",
    "explored INTEGER NOT NULL DEFAULT 0",
)
INDEXES = """
CREATE INDEX IF NOT EXISTS requests_request_id ON requests (request_id);
CREATE TABLE IF NOT EXISTS outcomes (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    request_id TEXT NOT NULL,    -- the decision it rates (requests.request_id)
    scope TEXT NOT NULL,         -- who rated: must be the scope of that decision
    source TEXT NOT NULL,        -- rating, regenerate, reask, feedback, fallback
    value REAL NOT NULL          -- 1 = the answer was good enough, 0 = it was not
);
CREATE INDEX IF NOT EXISTS outcomes_request_id ON outcomes (request_id);
CREATE INDEX IF NOT EXISTS outcomes_ts ON outcomes (ts);
"""
INSERT = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


def connect(path: str | Path, busy_timeout_s: float = 5.0) -> sqlite3.Connection:
    """Open the log in WAL mode: readers never block the writers, and several processes
    append safely (each write is a short transaction; SQLite serializes them)."""
    conn = sqlite3.connect(
        str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the table if needed; refuse a file written by a newer schema."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"decision log schema {version} is newer than this tierwise ({SCHEMA_VERSION})"
        )
    conn.executescript(SCHEMA)
    if 0 < version < 2:
        have = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
        for column in ADDED_IN_2:
            if column.split()[0] not in have:
                conn.execute(f"ALTER TABLE requests ADD COLUMN {column}")
    conn.executescript(INDEXES)
    if version < SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def open_reader(path: str | Path) -> sqlite3.Connection:
    """A connection for the dashboard and the report; raises FileNotFoundError if absent."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no decision log at {path}")
    conn = connect(path)
    conn.execute("PRAGMA query_only = ON")
    return conn

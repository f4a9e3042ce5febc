"""The decision log writer: a bounded queue on the request path, a thread that writes.

`append()` is all a request pays: one queue put (microseconds). A daemon thread drains the
queue in batches, each batch one short SQLite transaction, so several proxy worker
processes can share one file (WAL; SQLite serializes their writes, the busy timeout absorbs
the waits). When the file cannot be used — corrupt, locked for longer than the busy timeout,
not writable — the log turns itself off with one warning and requests go on being served.

A process that forks (a pre-forking server) waits for the writer to leave SQLite first: a
child forked while another thread is inside SQLite inherits SQLite's internal mutexes held
and hangs on its first query.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path

from tierwise.telemetry.record import RequestRecord
from tierwise.telemetry.schema import INSERT, connect, ensure_schema

log = logging.getLogger(__name__)

DAY_S = 86400.0
BATCH_MAX = 512
PRUNE_EVERY_S = 3600.0


def default_path() -> Path:
    """$XDG_DATA_HOME/tierwise/decisions.db (~/.local/share/... when unset)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tierwise" / "decisions.db"


def insert_rows(conn: sqlite3.Connection, records: Iterable[RequestRecord]) -> int:
    """Append records in one transaction; returns how many."""
    rows = [r.as_row() for r in records]
    if not rows:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(INSERT, rows)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return len(rows)


def prune(conn: sqlite3.Connection, retention_days: float, now: float | None = None) -> int:
    """Delete rows older than the retention window; returns how many went."""
    cutoff = (time.time() if now is None else now) - retention_days * DAY_S
    return conn.execute("DELETE FROM requests WHERE ts < ?", (cutoff,)).rowcount


class DecisionLog:
    """Append-only request log in SQLite, written off the request path."""

    def __init__(
        self,
        path: str | Path,
        retention_days: float = 30.0,
        queue_size: int = 10000,
        busy_timeout_s: float = 5.0,
        flush_interval_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path).expanduser()
        self.retention_days = retention_days
        self.busy_timeout_s = busy_timeout_s
        self.flush_interval_s = flush_interval_s
        self.clock = clock
        self.enabled = True
        self.disabled_reason = ""
        self.written = 0
        self.dropped = 0
        self._queue: queue.Queue[RequestRecord | threading.Event | None] = queue.Queue(
            maxsize=queue_size
        )
        self._lock = threading.Lock()
        self._io = threading.Lock()  # held by the writer while it is inside SQLite
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._last_prune = 0.0
        _LOGS.add(self)
        atexit.register(self.close)

    # -- the request path ------------------------------------------------------------------

    def append(self, record: RequestRecord) -> bool:
        """Queue one row; False when the log is off or full (the row is dropped, counted)."""
        if not self.enabled:
            return False
        if self._pid != os.getpid():
            self._start()
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    # -- control ---------------------------------------------------------------------------

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every row queued so far is written (or dropped); True if in time."""
        if not self.enabled or self._thread is None or self._pid != os.getpid():
            return not self.enabled or self._queue.empty()
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout_s)
        except queue.Full:
            return False
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued and stop the writer thread."""
        thread = self._thread
        if thread is None or self._pid != os.getpid() or not thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        thread.join(timeout_s)
        self._thread = None

    def disable(self, why: str) -> None:
        """Stop logging for the rest of this process, say so once, drop what is queued."""
        with self._lock:
            if not self.enabled:
                return
            self.enabled = False
            self.disabled_reason = why
        log.warning(
            "tierwise decision log %s turned off: %s (requests are still served)", self.path, why
        )
        self._drain_dropping()

    # -- the writer thread -----------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            # New process (first use, or a fork of a process that had a writer): the old
            # thread and its queue did not come along.
            if self._pid:
                self._queue = queue.Queue(maxsize=self._queue.maxsize)
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._run, name="tierwise-decision-log", daemon=True
            )
            self._thread.start()

    def _open(self) -> sqlite3.Connection | None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect(self.path, self.busy_timeout_s)
            ensure_schema(conn)
            return conn
        except (sqlite3.Error, OSError) as exc:
            self.disable(_describe(exc))
            return None

    def _run(self) -> None:
        with self._io:
            conn = self._open()
        if conn is None:
            return
        try:
            while self.enabled:
                batch, markers, stop = self._next_batch()
                with self._io:
                    if batch and not self._write(conn, batch):
                        break
                for marker in markers:
                    marker.set()
                if stop:
                    return
                with self._io:
                    self._maybe_prune(conn)
        finally:
            with self._io:
                conn.close()
            self._drain_dropping()

    def _next_batch(self) -> tuple[list[RequestRecord], list[threading.Event], bool]:
        """Block for one item, then take whatever else is queued (up to BATCH_MAX)."""
        batch: list[RequestRecord] = []
        markers: list[threading.Event] = []
        try:
            item = self._queue.get(timeout=self.flush_interval_s)
        except queue.Empty:
            return batch, markers, False
        while True:
            if item is None:
                return batch, markers, True
            if isinstance(item, threading.Event):
                markers.append(item)
            else:
                batch.append(item)
            if len(batch) >= BATCH_MAX:
                return batch, markers, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, markers, False

    def _write(self, conn: sqlite3.Connection, batch: list[RequestRecord]) -> bool:
        try:
            self.written += insert_rows(conn, batch)
            return True
        except sqlite3.Error as exc:
            self.dropped += len(batch)
            self.disable(_describe(exc))
            return False

    def _maybe_prune(self, conn: sqlite3.Connection) -> None:
        now = self.clock()
        if now - self._last_prune < PRUNE_EVERY_S:
            return
        self._last_prune = now
        try:
            removed = prune(conn, self.retention_days, now)
        except sqlite3.OperationalError as exc:  # busy: another process prunes; try later
            log.debug("decision log prune skipped: %s", exc)
            return
        if removed:
            log.info("decision log: %d rows past %g days removed", removed, self.retention_days)

    def _drain_dropping(self) -> None:
        """Empty the queue after the log went off: count rows, release flush() waiters."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, threading.Event):
                item.set()
            elif item is not None:
                self.dropped += 1


# Every log of this process, so a fork can wait for their writers (see the module docstring).
_LOGS: weakref.WeakSet[DecisionLog] = weakref.WeakSet()
_held: list[DecisionLog] = []


def _before_fork() -> None:
    _held[:] = list(_LOGS)
    for decision_log in _held:
        decision_log._io.acquire()


def _after_fork_in_parent() -> None:
    for decision_log in _held:
        decision_log._io.release()
    _held.clear()


def _after_fork_in_child() -> None:
    # The writer threads did not come along; fresh locks, and append() starts a new writer.
    for decision_log in _held:
        decision_log._io = threading.Lock()
        decision_log._lock = threading.Lock()
    _held.clear()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return f"{text} (held by another process for longer than the busy timeout)"
    return f"{type(exc).__name__}: {text}"

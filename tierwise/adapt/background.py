"""Refit in the background of a serving process, so an install adapts without a cron job.

A daemon thread checks the decision log every `adapt.refit_check_s` (one COUNT over the
outcomes table) and runs `tierwise adapt`'s guarded refit when `adapt.refit_every` new
outcomes arrived since the last refit, or `adapt.refit_interval_s` passed and at least one
did. Replicas of a host (several proxy workers, several machines on one state directory)
share the adapt directory: a lock file lets one process refit at a time, and `refit.json`
there says when the last refit ran and on how many outcomes, so the others do not repeat
it. Routers pick up an adopted version through the store's pointer, as after the command.
Nothing here runs on a request's path.
"""

from __future__ import annotations

import fcntl
import json
import logging
import threading
import time
from pathlib import Path

from tierwise.adapt.outcomes import open_log
from tierwise.adapt.refresh import Refresh, refresh_all
from tierwise.adapt.store import log_path, store_for
from tierwise.config import TierwiseConfig

log = logging.getLogger(__name__)

_running: dict[Path, Refitter] = {}
_registry_lock = threading.Lock()


def watch(config: TierwiseConfig) -> Refitter | None:
    """The process's refitter for this config's adapt directory, started once (None: off)."""
    adapt = config.adapt
    if not (adapt.enabled and config.telemetry.log):
        return None
    if not adapt.refit_every and not adapt.refit_interval_s:
        return None
    directory = store_for(config).dir
    with _registry_lock:
        refitter = _running.get(directory)
        if refitter is None or not refitter.alive:
            refitter = _running[directory] = Refitter(config)
            refitter.start()
        return refitter


def last_refit(directory: Path) -> tuple[int, float]:
    """(outcomes, unix time) of the last background refit by any process; (0, 0) before."""
    try:
        data = json.loads((directory / "refit.json").read_text(encoding="utf-8"))
        return int(data["outcomes"]), float(data["ts"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, 0.0


class Refitter:
    """One background refit loop over one install's log and adapt directory."""

    def __init__(self, config: TierwiseConfig) -> None:
        self.config = config
        self.dir = store_for(config).dir
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tierwise-refit", daemon=True)
        self.last: list[Refresh] = []  # what this process's latest refit said

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.config.adapt.refit_check_s):
            try:
                self.check()
            except Exception:  # a bad log or a full disk must not end the loop
                log.exception("tierwise adapt: background refit failed; trying again later")

    def check(self, now: float | None = None) -> list[Refresh] | None:
        """Refit if due and no other process is refitting: the install-wide result first (then
        each tenant's, with adapt.scope: tenant); None when nothing ran."""
        now = time.time() if now is None else now
        if not self._due(self._outcomes(), now):
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "refit.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # another replica is refitting right now
            outcomes = self._outcomes()
            if not self._due(outcomes, now):  # it just did
                return None
            done = refresh_all(self.config)
            self._mark(outcomes, now)
        self.last = done
        for one in done:
            who = f"tenant {one.scope[:8]}" if one.scope else "install"
            log.info("tierwise adapt: background refit (%s): %s", who, one.result.why)
        return done

    def _due(self, outcomes: int, now: float) -> bool:
        adapt = self.config.adapt
        seen, at = self._marker()
        new = outcomes - seen
        if new <= 0 or outcomes < adapt.min_outcomes:
            return False
        if adapt.refit_every and new >= adapt.refit_every:
            return True
        return bool(adapt.refit_interval_s) and now - at >= adapt.refit_interval_s

    def _outcomes(self) -> int:
        path = log_path(self.config)
        if not path.is_file():
            return 0
        conn = open_log(path)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])
        finally:
            conn.close()

    def _marker(self) -> tuple[int, float]:
        return last_refit(self.dir)

    def _mark(self, outcomes: int, now: float) -> None:
        tmp = self.dir / ".refit.json.tmp"
        tmp.write_text(json.dumps({"outcomes": outcomes, "ts": now}), encoding="utf-8")
        tmp.replace(self.dir / "refit.json")

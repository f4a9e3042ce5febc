"""Where cache entries live: diskcache on local disk, or Redis for several proxy replicas.

Both backends share one layout, so one process's writes become visible to every other:
  seq          a counter incremented for each entry added
  s:<seq>      the id of the entry added as number <seq>
  e:<id>       the entry itself (expires with its TTL)
  x:<key>      exact-match key -> entry id
Each process keeps its own vector index and pulls `since(last_seq)` before a lookup, so a
paraphrase cached by another worker is found on the next request.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Entry:
    id: str
    partition: str
    exact_key: str
    question: str
    vector: np.ndarray = field(repr=False)
    response: dict[str, Any]
    tier: str
    tier_order: int
    created: float
    expires: float
    whole: bool = True  # the embedding saw the whole question (else exact matches only)

    def to_json(self) -> str:
        data = asdict(self)
        data["vector"] = base64.b64encode(self.vector.astype("<f4").tobytes()).decode()
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Entry:
        data = json.loads(raw)
        data["vector"] = np.frombuffer(base64.b64decode(data["vector"]), dtype="<f4").copy()
        return cls(**data)


class Store(Protocol):
    def add(self, entry: Entry, ttl_s: float) -> int: ...
    def get(self, entry_id: str) -> Entry | None: ...
    def exact(self, key: str) -> str | None: ...
    def latest(self) -> int: ...
    def since(self, seq: int) -> Iterator[tuple[int, Entry]]: ...
    def delete(self, entry_id: str) -> None: ...
    def close(self) -> None: ...


class StoreError(Exception):
    """The backend failed (disk full, unwritable, corrupt, unreachable)."""


class DiskStore:
    """diskcache (SQLite) in a directory; safe for several processes on one machine."""

    def __init__(self, directory: Path) -> None:
        import diskcache

        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._cache = diskcache.Cache(str(directory), eviction_policy="none", size_limit=2**40)
            self._cache.get("seq")  # touch the database: a corrupt file fails here
        except sqlite3.DatabaseError as exc:
            aside = directory.with_name(f"{directory.name}.corrupt-{int(time.time())}")
            log.warning(
                "cache directory %s is corrupt (%s); moved to %s and rebuilt", directory, exc, aside
            )
            shutil.move(str(directory), str(aside))
            directory.mkdir(parents=True)
            self._cache = diskcache.Cache(str(directory), eviction_policy="none", size_limit=2**40)
        except OSError as exc:
            raise StoreError(f"cannot open cache directory {directory}: {exc}") from exc

    def _guard(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(str(exc)) from exc

    def add(self, entry: Entry, ttl_s: float) -> int:
        return int(self._guard(self._add, entry, ttl_s))

    def _add(self, entry: Entry, ttl_s: float) -> int:
        cache = self._cache
        with cache.transact():
            seq = int(cache.incr("seq", 1, 0))
            cache.set(f"e:{entry.id}", entry.to_json(), expire=ttl_s)
            cache.set(f"s:{seq}", entry.id, expire=ttl_s)
            cache.set(f"x:{entry.exact_key}", entry.id, expire=ttl_s)
        return seq

    def get(self, entry_id: str) -> Entry | None:
        raw = self._guard(self._cache.get, f"e:{entry_id}")
        return Entry.from_json(raw) if raw else None

    def exact(self, key: str) -> str | None:
        value = self._guard(self._cache.get, f"x:{key}")
        return str(value) if value else None

    def latest(self) -> int:
        return int(self._guard(self._cache.get, "seq", 0) or 0)

    def since(self, seq: int) -> Iterator[tuple[int, Entry]]:
        for n in range(seq + 1, self.latest() + 1):
            entry_id = self._guard(self._cache.get, f"s:{n}")
            entry = self.get(entry_id) if entry_id else None
            if entry is not None:
                yield n, entry

    def delete(self, entry_id: str) -> None:
        self._guard(self._cache.delete, f"e:{entry_id}")

    def close(self) -> None:
        self._cache.close()


class RedisStore:
    """The same layout in Redis, so every proxy replica shares one cache."""

    def __init__(self, url: str, prefix: str = "tierwise:cache:") -> None:
        import redis

        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self.prefix = prefix
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._guard(self._redis.ping)

    def _guard(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._errors as exc:
            raise StoreError(str(exc)) from exc

    def _k(self, key: str) -> str:
        return self.prefix + key

    def add(self, entry: Entry, ttl_s: float) -> int:
        seq = int(self._guard(self._redis.incr, self._k("seq")))
        ttl = max(1, int(ttl_s))
        pipe = self._redis.pipeline()
        pipe.set(self._k(f"e:{entry.id}"), entry.to_json(), ex=ttl)
        pipe.set(self._k(f"s:{seq}"), entry.id, ex=ttl)
        pipe.set(self._k(f"x:{entry.exact_key}"), entry.id, ex=ttl)
        self._guard(pipe.execute)
        return seq

    def get(self, entry_id: str) -> Entry | None:
        raw = self._guard(self._redis.get, self._k(f"e:{entry_id}"))
        return Entry.from_json(raw) if raw else None

    def exact(self, key: str) -> str | None:
        value = self._guard(self._redis.get, self._k(f"x:{key}"))
        return value.decode() if value else None

    def latest(self) -> int:
        return int(self._guard(self._redis.get, self._k("seq")) or 0)

    def since(self, seq: int) -> Iterator[tuple[int, Entry]]:
        latest = self.latest()
        numbers = list(range(seq + 1, latest + 1))
        for start in range(0, len(numbers), 500):
            chunk = numbers[start : start + 500]
            ids = self._guard(self._redis.mget, [self._k(f"s:{n}") for n in chunk])
            present = [(n, i.decode()) for n, i in zip(chunk, ids, strict=True) if i]
            raws = (
                self._guard(self._redis.mget, [self._k(f"e:{i}") for _, i in present])
                if present
                else []
            )
            for (n, _), raw in zip(present, raws, strict=True):
                if raw:
                    yield n, Entry.from_json(raw)

    def delete(self, entry_id: str) -> None:
        self._guard(self._redis.delete, self._k(f"e:{entry_id}"))

    def close(self) -> None:
        self._redis.close()

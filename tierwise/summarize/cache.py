"""Rolling summaries kept in memory, keyed by a digest of the conversation prefix they cover.

Bounded (least recently used entries go first) and safe to share between threads: a proxy
serves many conversations at once, and each needs only its latest summaries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class SummaryEntry:
    """A summary of a conversation's first `covered` non-system messages."""

    text: str
    covered: int
    tokens: int


class SummaryCache:
    """A thread-safe LRU map from prefix digest to summary."""

    def __init__(self, max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, SummaryEntry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> SummaryEntry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def first(self, keys: Iterable[str]) -> tuple[str, SummaryEntry] | None:
        """The first of `keys` that has an entry; callers pass the longest prefix first."""
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return key, entry
            self.misses += 1
            return None

    def put(self, key: str, entry: SummaryEntry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

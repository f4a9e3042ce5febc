"""Adaptation versions on disk: v0001.json, v0002.json, ... and `current` naming the one in use.

Versions are never edited or deleted; adopting writes a new file, rolling back only moves
the `current` pointer (to the version's parent, 0 = no adaptation). Writes go through a
temporary file and a rename, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path

from tierwise.adapt.model import Adaptation
from tierwise.config import TierwiseConfig
from tierwise.telemetry.log import default_path

log = logging.getLogger(__name__)


def log_path(config: TierwiseConfig) -> Path:
    """The decision log this config writes (outcomes live in the same file)."""
    path = config.telemetry.path
    return Path(path).expanduser() if path else default_path()


def store_for(config: TierwiseConfig, scope: str | None = None) -> AdaptStore:
    """adapt.dir, or adapt/ beside the decision log; a tenant's own versions (scope: its
    Scope.key(), a hash) live in scopes/<key>/ there."""
    base = Path(config.adapt.dir) if config.adapt.dir else log_path(config).parent / "adapt"
    if scope and not re.fullmatch(r"[0-9a-f]{1,64}", scope):
        raise ValueError(f"{scope!r} is not a scope key (Scope.key(): lowercase hex)")
    return AdaptStore(base / "scopes" / scope if scope else base)


class AdaptStore:
    """The versions directory of one install (or one tenant)."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory).expanduser()

    @property
    def pointer(self) -> Path:
        return self.dir / "current"

    def path_of(self, version: int) -> Path:
        return self.dir / f"v{version:04d}.json"

    def current_version(self) -> int:
        try:
            return int(self.pointer.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError as exc:
            raise ValueError(f"{self.pointer}: not a version number ({exc})") from None

    def load(self, version: int) -> Adaptation:
        path = self.path_of(version)
        try:
            return Adaptation.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise FileNotFoundError(f"no adaptation version {version} at {path}") from None
        except (json.JSONDecodeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None

    def current(self) -> Adaptation | None:
        """The version in use, or None for the scorer as it is."""
        version = self.current_version()
        return self.load(version) if version else None

    def versions(self) -> list[int]:
        return sorted(int(p.stem[1:]) for p in self.dir.glob("v[0-9][0-9][0-9][0-9].json"))

    def adopt(self, adaptation: Adaptation) -> Adaptation:
        """Write `adaptation` under the next free number and make it current."""
        number = max([0, *self.versions()]) + 1
        stored = Adaptation.from_dict({**adaptation.as_dict(), "version": number})
        self._write(self.path_of(number), json.dumps(stored.as_dict(), indent=1))
        self._write(self.pointer, f"{number}\n")
        return stored

    def rollback(self) -> int:
        """Make the current version's parent current; returns it (0 = no adaptation)."""
        current = self.current()
        if current is None:
            raise ValueError("no adaptation is in use; nothing to roll back")
        self._write(self.pointer, f"{current.parent}\n")
        return current.parent

    def stamp(self) -> float:
        """Changes whenever `current` is rewritten (what a router polls)."""
        try:
            return self.pointer.stat().st_mtime_ns
        except FileNotFoundError:
            return 0.0

    def _write(self, path: Path, text: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

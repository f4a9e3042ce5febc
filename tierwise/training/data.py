"""Reading evaluation files: JSONL rows with either labels or weak/strong outcomes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierwise.training.metrics import LABELS


class DataError(ValueError):
    """A data file that cannot be evaluated; the message names the file and line."""


@dataclass(frozen=True)
class Row:
    text: str
    label: str | None = None
    weak: bool | None = None
    strong: bool | None = None
    group: str | None = None  # domain or benchmark subject, for grouped splits

    @property
    def gain(self) -> int:
        """+1 where only the strong model was right, -1 where only the weak one was."""
        return int(bool(self.strong)) - int(bool(self.weak))


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid UTF-8 ({exc.reason})") from None
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(value, dict):
                raise DataError(f"{path}:{number}: each line must be a JSON object")
            yield number, value


def load_rows(path: str | Path) -> list[Row]:
    """Rows of a label file (text, label) or an outcome file (text, weak, strong)."""
    path = Path(path)
    rows: list[Row] = []
    for number, value in iter_jsonl(path):
        text = value.get("text")
        if not isinstance(text, str):
            raise DataError(f"{path}:{number}: missing 'text' (a string)")
        label = value.get("label")
        if label is not None and label not in LABELS:
            raise DataError(f"{path}:{number}: label {label!r} is not one of {', '.join(LABELS)}")
        weak, strong = value.get("weak"), value.get("strong")
        if (weak is None) != (strong is None):
            raise DataError(f"{path}:{number}: outcome rows need both 'weak' and 'strong'")
        for name, flag in (("weak", weak), ("strong", strong)):
            if flag is not None and not isinstance(flag, bool):
                raise DataError(f"{path}:{number}: '{name}' must be true or false")
        if label is None and weak is None:
            raise DataError(f"{path}:{number}: needs a 'label' or 'weak' and 'strong'")
        group = value.get("bench") or value.get("domain")
        rows.append(Row(text, label, weak, strong, str(group) if group else None))
    if not rows:
        raise DataError(f"{path}: no rows")
    kinds = {r.label is not None for r in rows}
    if len(kinds) > 1:
        raise DataError(f"{path}: mixes label rows and outcome rows; split them into two files")
    return rows


def is_outcome_file(rows: list[Row]) -> bool:
    return rows[0].weak is not None

"""The project's own design / held-out split of the outcome dev files.

Fixed by hashing, decided before any fitting: a row's group (MMLU subject) or, for files
with one group (GSM8K), its text decides the half. Whatever is fitted on outcomes sees only
the design half; figures claimed for generalization come from the held-out half.
"""

from __future__ import annotations

import hashlib

from tierwise.training.data import Row


def split_key(row: Row) -> str:
    if row.group and row.group.startswith("mmlu"):
        return row.group
    return row.text


def is_design(row: Row) -> bool:
    digest = hashlib.sha256(split_key(row).encode("utf-8")).hexdigest()
    return int(digest, 16) % 2 == 0


def design(rows: list[Row]) -> list[Row]:
    return [r for r in rows if is_design(r)]


def held_out(rows: list[Row]) -> list[Row]:
    return [r for r in rows if not is_design(r)]

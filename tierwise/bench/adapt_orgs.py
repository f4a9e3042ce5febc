"""The organisations `tierwise bench adapt` replays: which questions one install asks.

An organisation is a half of the MMLU subjects (the project's fixed design / held-out
split), or "mostly one subject group": every question of one MMLU category in the held-out
half, topped up with other held-out questions so the group is MOSTLY of the traffic. The
settings of the feedback loop are chosen on `mmlu-design` only.
"""

from __future__ import annotations

import random
from pathlib import Path

from tierwise.training.data import Row, load_rows
from tierwise.training.splits import design, held_out

MOSTLY = 0.6  # the group's share of a "mostly one group" organisation

# MMLU's own four subject categories, for the subjects the outcome file has.
CATEGORIES: dict[str, list[str]] = {
    "stem": [
        "abstract_algebra",
        "astronomy",
        "college_biology",
        "college_chemistry",
        "college_computer_science",
        "college_mathematics",
        "college_physics",
        "computer_security",
        "conceptual_physics",
        "electrical_engineering",
        "elementary_mathematics",
        "high_school_chemistry",
        "high_school_computer_science",
        "high_school_mathematics",
        "machine_learning",
    ],
    "humanities": [
        "formal_logic",
        "high_school_european_history",
        "high_school_us_history",
        "high_school_world_history",
        "international_law",
        "logical_fallacies",
        "moral_disputes",
        "moral_scenarios",
        "philosophy",
    ],
    "social": [
        "high_school_geography",
        "high_school_government_and_politics",
        "high_school_microeconomics",
        "high_school_psychology",
        "human_sexuality",
        "professional_psychology",
        "public_relations",
        "security_studies",
        "sociology",
        "us_foreign_policy",
    ],
    "other": [
        "business_ethics",
        "clinical_knowledge",
        "global_facts",
        "human_aging",
        "management",
        "medical_genetics",
        "miscellaneous",
        "professional_accounting",
        "professional_medicine",
        "virology",
    ],
}
ORGS = ("mmlu-held-out", "mmlu-design", *(f"mmlu-held-out:{c}" for c in CATEGORIES))


def category_of(row: Row) -> str | None:
    subject = (row.group or "").removeprefix("mmlu:").removeprefix("mmlu_")
    return next((c for c, subjects in CATEGORIES.items() if subject in subjects), None)


def organisation(data_dir: Path, org: str) -> list[Row]:
    """The organisation's questions, in file order (the simulation shuffles per seed)."""
    rows = load_rows(data_dir / "outcomes" / "mmlu_dev.jsonl")
    if org == "mmlu-design":
        return design(rows)
    half = held_out(rows)
    if org == "mmlu-held-out":
        return half
    name, _, group = org.partition(":")
    if name != "mmlu-held-out" or group not in CATEGORIES:
        raise ValueError(f"unknown organisation {org!r}; choose one of {', '.join(ORGS)}")
    mine = [r for r in half if category_of(r) == group]
    rest = [r for r in half if category_of(r) != group]
    extra = round(len(mine) * (1 - MOSTLY) / MOSTLY)
    return mine + random.Random(0).sample(rest, min(extra, len(rest)))

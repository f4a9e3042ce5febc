"""The data sources of the cross-validation protocol, each a set of rows judged on its own.

A source is what a held-out check would meet as unseen traffic: GSM8K, a group of MMLU
subjects, one AlpacaEval source dataset, one STREAM labelling family. Every row carries the
target the learned scorer fits, `need`: how likely the cheap tier's answer is not good
enough (outcome rows), or where its complexity label sits on [0, 1] (label rows, a
secondary signal). Nothing here fits anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tierwise.training.data import DataError, iter_jsonl
from tierwise.training.metrics import LABELS

MMLU_GROUPS = 4  # subjects hashed into this many groups: each is left out whole
# AlpacaEval models of local size (<= 8B parameters): their mean preference against
# GPT-4-Turbo is a steadier "a small model copes" signal than the 1B model's alone.
SMALL_MODELS = (
    "FuseChat-Llama-3.2-1B-Instruct",
    "FuseChat-Llama-3.2-3B-Instruct",
    "gemma-2b-it",
    "gemma-7b-it",
    "phi-2",
    "vicuna-7b-v1.5",
    "OpenHermes-2.5-Mistral-7B",
    "FuseChat-Qwen-2.5-7B-Instruct",
    "FuseChat-Llama-3.1-8B-Instruct",
)
LABEL_NEED = {"LOW": 0.0, "MEDIUM": 0.5, "HIGH": 1.0}
OUTCOME_FILES = ("gsm8k_dev.jsonl", "mmlu_dev.jsonl", "alpaca_dev.jsonl")
LABEL_FILES = ("stream_balanced_dev.jsonl", "stream_1800.jsonl", "stream_325.jsonl")


@dataclass(frozen=True)
class Example:
    text: str
    source: str
    need: float  # 0 = the cheap tier copes, 1 = it does not (or: HIGH complexity)
    weak: bool | None = None  # outcome rows: the cheap model was good enough
    strong: bool | None = None
    label: str | None = None  # label rows: LOW / MEDIUM / HIGH

    @property
    def is_outcome(self) -> bool:
        return self.weak is not None


def mmlu_group(subject: str) -> str:
    digest = hashlib.sha256(subject.encode("utf-8")).hexdigest()
    return f"mmlu-{int(digest, 16) % MMLU_GROUPS}"


def small_model_need(preferences: dict[str, float]) -> float | None:
    """1 - the mean preference of the small models present (None when none is)."""
    values = [float(preferences[m]) for m in SMALL_MODELS if m in preferences]
    return 1.0 - sum(values) / len(values) if values else None


def data_files(data_dir: Path) -> list[Path]:
    """The files of data_dir that load_sources reads."""
    candidates = [data_dir / "outcomes" / n for n in OUTCOME_FILES]
    return [
        p for p in candidates + [data_dir / "complexity" / n for n in LABEL_FILES] if p.is_file()
    ]


def load_sources(data_dir: Path) -> list[Example]:
    """Every row of the shared data files with its source; missing files are skipped."""
    examples: list[Example] = []
    for path in data_files(data_dir):
        if path.parent.name == "outcomes":
            examples += _outcome_examples(path)
        else:
            family = "stream-" + path.stem.removeprefix("stream_")
            examples += _label_examples(path, family)
    if not examples:
        raise DataError(f"{data_dir}: no outcome or label files ({', '.join(OUTCOME_FILES)})")
    return examples


def _outcome_examples(path: Path) -> list[Example]:
    out = []
    for number, value in iter_jsonl(path):
        text, weak, strong = value.get("text"), value.get("weak"), value.get("strong")
        if not isinstance(text, str) or not isinstance(weak, bool) or not isinstance(strong, bool):
            raise DataError(f"{path}:{number}: needs 'text', 'weak' and 'strong'")
        bench = str(value.get("bench") or path.stem.removesuffix("_dev"))
        need = 1.0 - float(weak)
        if bench.startswith("mmlu"):
            source = mmlu_group(bench)
        elif "dataset" in value:
            source = f"alpaca-{value['dataset']}"
            small = small_model_need(value.get("preference_vs_strong") or {})
            if small is not None:  # the 1B flag and the small models' mean, equally
                need = (need + small) / 2
        else:
            source = bench
        out.append(Example(text, source, need, weak, strong))
    return out


def _label_examples(path: Path, family: str) -> list[Example]:
    out = []
    for number, value in iter_jsonl(path):
        text, label = value.get("text"), value.get("label")
        if not isinstance(text, str) or label not in LABELS:
            raise DataError(f"{path}:{number}: needs 'text' and a label in {', '.join(LABELS)}")
        out.append(Example(text, family, LABEL_NEED[str(label)], label=str(label)))
    return out

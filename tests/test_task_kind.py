"""Task kinds: open writing and chat vs math, code and reasoning, as the score reports them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tierwise.cli import main
from tierwise.config import load_config
from tierwise.decision import Decision
from tierwise.request import ChatRequest
from tierwise.router import TierRouter
from tierwise.scoring.heuristic import HeuristicScorer, features
from tierwise.scoring.task_kind import task_kind


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Draft a professional email seeking your supervisor's feedback on my report", "writing"),
        ("Pretend you are a pirate and tell me about your day", "roleplay"),
        ("Summarize the following passage:\nThe committee met on Tuesday.", "extraction"),
        ("hi! any tips for a fun weekend trip?", "chat"),
        ("Solve 3x + 5 = 20 for x", "math"),
        ("Write a python function that reverses a linked list", "code"),
        ("Why does the moon cause tides? Explain the mechanism", "reasoning"),
        ("Paris", None),
    ],
)
def test_task_kind_names_the_strongest_evidence(text: str, kind: str | None) -> None:
    assert task_kind(text, features(text)) == kind


def test_the_score_carries_its_task_kind_into_its_dict() -> None:
    request = ChatRequest.from_text("Write a poem")
    score = HeuristicScorer().score(request)
    assert score.task_kind == "writing"
    assert score.as_dict()["task_kind"] == "writing"


def test_the_decision_and_tierwise_score_report_the_task_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    decision = TierRouter(load_config(None)).decide_text("Solve 3x + 5 = 20 for x")
    assert decision.task_kind == "math"
    assert Decision.from_dict(decision.as_dict()).task_kind == "math"
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"text": "Pretend you are a pirate and greet me"}) + "\n")
    assert main(["score", str(prompts)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["task_kind"] == "roleplay"

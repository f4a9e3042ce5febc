"""tierwise calibrate and tierwise eval: thresholds from outcome files, reports, plots, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import three_tiers
from tierwise import cli
from tierwise.config import load_config
from tierwise.training import calibrate
from tierwise.training.calibrate import CalibrationError, apply_threshold, pick_threshold


def _outcomes(n: int = 400, seed: int = 0) -> tuple[np.ndarray, list[bool], list[bool]]:
    """Scores that predict where only the strong model is right."""
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    strong = [True] * n
    weak = [bool(rng.random() > s) for s in scores]  # hard (high score) -> weak fails
    return scores, weak, strong


def test_target_quality_is_reached_with_less_than_all_strong() -> None:
    scores, weak, strong = _outcomes()
    result = pick_threshold(scores, weak, strong, target_quality=0.9)
    assert result.pgr >= 0.9 and result.strong_share < 0.95
    looser = pick_threshold(scores, weak, strong, target_quality=0.5)
    assert looser.threshold > result.threshold and looser.strong_share < result.strong_share


def test_max_strong_share_is_respected_with_ties() -> None:
    scores = [0.2] * 50 + [0.8] * 50
    weak = [True] * 50 + [False] * 50
    result = pick_threshold(scores, weak, [True] * 100, max_strong_share=0.3)
    assert result.strong_share <= 0.3  # the tied block of 50 cannot be split: none goes
    result = pick_threshold(scores, weak, [True] * 100, max_strong_share=0.5)
    assert result.strong_share == 0.5 and result.pgr == 1.0


def test_bad_goals_and_hopeless_data_say_what_to_do() -> None:
    with pytest.raises(CalibrationError, match="exactly one"):
        pick_threshold([0.1], [True], [True])
    with pytest.raises(CalibrationError, match="no better than the weak one"):
        pick_threshold([0.1, 0.9], [True, True], [True, False], target_quality=0.9)


def test_apply_threshold_moves_middle_tiers_below_the_strong_one() -> None:
    raw = three_tiers()
    updated, set_to = apply_threshold(raw, load_config(raw), 0.5, None)
    assert set_to == {"cloud": 0.5, "hpc": 0.25}
    assert load_config(updated).thresholds() == {"local": 0.0, "hpc": 0.25, "cloud": 0.5}
    _, only_hpc = apply_threshold(raw, load_config(raw), 0.2, "hpc")
    assert only_hpc == {"hpc": 0.2, "cloud": 0.6667}


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _outcome_file(tmp_path: Path) -> Path:
    rows = []
    for i in range(60):
        hard = i % 3 == 0
        text = (
            "Prove that the sequence converges and derive its limit rigorously, then analyze "
            f"the rate of convergence under perturbation {i}."
            if hard
            else f"What is {i} plus {i}?"
        )
        rows.append({"text": text, "weak": not hard, "strong": True})
    return _write(tmp_path / "outcomes.jsonl", rows)


def test_calibrate_cli_updates_the_config_and_keeps_a_backup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tierwise.yaml"
    config.write_text(yaml.safe_dump(three_tiers() | {"scoring": {"method": "heuristic"}}))
    before = config.read_text()
    code = cli.main(
        [
            "--config",
            str(config),
            "calibrate",
            str(_outcome_file(tmp_path)),
            "--target-quality",
            "0.9",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["pgr"] >= 0.9 and summary["scorer"] == "heuristic"
    assert (tmp_path / "tierwise.yaml.bak").read_text() == before
    calibrated = load_config(config)
    assert calibrated.tier("cloud").min_score == summary["min_score"]["cloud"]
    assert calibrated.scoring.method == "heuristic"


def test_calibrate_cli_rejects_label_files_and_needs_a_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = _write(tmp_path / "labels.jsonl", [{"text": "hi", "label": "LOW"}])
    out = tmp_path / "out.yaml"
    assert cli.main(["calibrate", str(labels), "--max-strong-share", "0.2", "-o", str(out)]) == 1
    assert "needs outcome rows" in capsys.readouterr().err
    assert cli.main(["calibrate", str(labels), "--max-strong-share", "0.2"]) == 2
    assert "--output" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["calibrate", str(labels), "--target-quality", "1.5", "-o", str(out)])


def test_eval_writes_report_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = _write(
        tmp_path / "labels.jsonl",
        [{"text": t, "label": lab} for t, lab in (("hi", "LOW"), ("Explain TCP", "MEDIUM"))],
    )
    report, plot = tmp_path / "report.json", tmp_path / "curves.png"
    args = [str(_outcome_file(tmp_path)), str(labels), "--json", str(report), "--plot", str(plot)]
    assert cli.main(["eval", *args]) == 0
    assert "strong_share_at_target" in capsys.readouterr().out
    data = json.loads(report.read_text())
    outcome = data["files"][str(tmp_path / "outcomes.jsonl")]
    assert {"tierwise-heuristic", "length", "random"} <= set(outcome)
    assert outcome["tierwise-heuristic"]["apgr"] > outcome["random"]["apgr"]
    assert "accuracy" in data["files"][str(labels)]["tierwise-heuristic"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_names_the_line_with_a_missing_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _write(
        tmp_path / "bad.jsonl",
        [{"text": "ok", "weak": True, "strong": True}, {"text": "x", "weak": True}],
    )
    assert cli.main(["eval", str(bad)]) == 1
    assert "bad.jsonl:2: outcome rows need both 'weak' and 'strong'" in capsys.readouterr().err


def test_tier_shares_split_the_prompts_as_asked() -> None:
    config = load_config(three_tiers())
    scores = [i / 100 for i in range(100)]
    new = calibrate.thresholds_for_shares(scores, config, (0.5, 0.3, 0.2))
    s = np.asarray(scores)
    local, hpc, cloud = (new[n] for n in ("local", "hpc", "cloud"))
    assert np.mean(s < hpc) == pytest.approx(0.5, abs=0.02)
    assert np.mean((s >= hpc) & (s < cloud)) == pytest.approx(0.3, abs=0.02)
    assert local <= hpc <= cloud
    for bad in ((0.5, 0.5), (0.6, 0.3, 0.3), (-0.1, 0.6, 0.5)):
        with pytest.raises(calibrate.CalibrationError, match="share"):
            calibrate.thresholds_for_shares(scores, config, bad)


def test_calibrate_cli_tier_shares_writes_a_valid_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tierwise.yaml"
    config.write_text(yaml.safe_dump(three_tiers() | {"scoring": {"method": "heuristic"}}))
    prompts = _write(
        tmp_path / "prompts.jsonl",
        [{"text": t} for t in ("hi", "thanks", "Prove the four colour theorem.", "Sort a list.")]
        * 5,
    )
    out = tmp_path / "out.yaml"
    shares = ["--tier-shares", "0.5,0.25,0.25", "-o", str(out)]
    code = cli.main(["--config", str(config), "calibrate", str(prompts), *shares])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tier_shares"] == [0.5, 0.25, 0.25] and summary["rows"] == 20
    assert load_config(out).tier("cloud").min_score == summary["min_score"]["cloud"]
    with pytest.raises(SystemExit):
        cli.main(["calibrate", str(prompts), "--tier-shares", "half,half", "-o", str(out)])

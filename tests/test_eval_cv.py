"""`tierwise eval --cv source`: sources from a data directory, one row each, baselines beside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tierwise.cli import main
from tierwise.training.sources import load_sources, mmlu_group


def _write(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _data(root: Path) -> Path:
    gsm = [
        {
            "text": f"Tom has {i} apples{' and trades them over many days' * (i % 3)}.",
            "weak": i % 3 == 0,
            "strong": True,
        }
        for i in range(30)
    ]
    alpaca = [
        {
            "text": f"Write a short note number {i}" + " with details" * (i % 4),
            "weak": i % 2 == 0,
            "strong": True,
            "dataset": "koala" if i < 20 else "vicuna",
            "preference_vs_strong": {"gemma-2b-it": 0.1 * (i % 5), "claude-2.1": 0.9},
        }
        for i in range(40)
    ]
    labels = [
        {
            "text": (
                "hi there"
                if i % 3 == 0
                else "explain how a cache works"
                if i % 3 == 1
                else "prove rigorously that the scheduler is fair under load, then derive bounds"
            ),
            "label": ("LOW", "MEDIUM", "HIGH")[i % 3],
        }
        for i in range(30)
    ]
    _write(root / "outcomes" / "gsm8k_dev.jsonl", gsm)
    _write(root / "outcomes" / "alpaca_dev.jsonl", alpaca)
    _write(root / "complexity" / "stream_325.jsonl", labels)
    return root


def test_sources_split_by_dataset_and_blend_small_model_preferences(tmp_path: Path) -> None:
    examples = load_sources(_data(tmp_path))
    assert {e.source for e in examples} == {"gsm8k", "alpaca-koala", "alpaca-vicuna", "stream-325"}
    first_alpaca = next(e for e in examples if e.source == "alpaca-koala")
    # i = 0: the 1B model won (need 0) and gemma-2b's preference 0 (need 1): halfway.
    assert first_alpaca.need == pytest.approx(0.5)
    assert mmlu_group("mmlu:mmlu_anatomy") == mmlu_group("mmlu:mmlu_anatomy")


def test_eval_cv_prints_one_row_per_source_and_the_baselines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tierwise.static_encoder").shared_static_encoder()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    report = tmp_path / "cv.json"
    code = main(["eval", "--cv", "source", "--data", str(_data(tmp_path)), "--json", str(report)])
    out = capsys.readouterr().out
    assert code == 0
    for source in ("gsm8k", "alpaca-koala", "alpaca-vicuna", "stream-325", "mean", "worst"):
        assert source in out
    methods = json.loads(report.read_text())["methods"]
    assert {"tierwise", "length", "random"} <= set(methods)
    assert 0.0 <= methods["tierwise"]["by_source"]["stream-325"]["accuracy"] <= 1.0
    # Features are cached: a second run reads them back and prints the same table.
    assert main(["eval", "--cv", "source", "--data", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[:6] == out.splitlines()[:6]


def test_eval_without_files_or_cv_says_what_to_give(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval"]) == 1
    assert "--cv source" in capsys.readouterr().err
    assert main(["eval", "--ceiling", "some.jsonl"]) == 1
    assert "--ceiling goes with --cv source" in capsys.readouterr().err


def test_eval_cv_ceiling_and_plot_show_how_far_the_data_lets_routing_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("tierwise.static_encoder").shared_static_encoder()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data, report, png = _data(tmp_path / "data"), tmp_path / "cv.json", tmp_path / "cv.png"
    args = ["eval", "--cv", "source", "--data", str(data), "--ceiling", "--plot", str(png)]
    assert main([*args, "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "Upper bounds" in out and "in-family" in out
    assert "alpaca pooled, tierwise: AUROC" in out
    ceiling = json.loads(report.read_text())["ceiling"]
    assert set(ceiling["in_source"]["by_source"]) == {
        "gsm8k",
        "alpaca-koala",
        "alpaca-vicuna",
        "stream-325",
    }
    # The alpaca rows: strong always good enough, the 1B model on half of them, so a perfect
    # scorer's APGR is 1 - 0.5 / 2 (the metric's own ceiling on such traffic).
    assert ceiling["oracle_apgr"]["alpaca-koala"] == pytest.approx(0.75, abs=0.01)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

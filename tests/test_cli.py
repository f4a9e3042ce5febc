"""The tierwise command line, run as a user would run it (a subprocess per command)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def tierwise(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "tierwise", *args],
        input=stdin,
        capture_output=True,
        check=False,
        timeout=300,
    )


def test_route_prints_the_decision_and_an_explanation() -> None:
    result = tierwise("route", "Prove that sqrt(2) is irrational and derive the general case.")
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision["tier"] in {"hpc", "cloud"}
    assert 0 <= decision["score"] <= 1 and decision["band"] in {"LOW", "MEDIUM", "HIGH"}
    assert decision["reasons"] and decision["fallback_chain"]
    assert b"-> " + decision["tier"].encode() in result.stderr


def test_route_with_an_image_picks_the_vision_tier() -> None:
    result = tierwise("route", "What is this?", "--image", "https://example.org/a.png")
    assert json.loads(result.stdout)["tier"] == "cloud"


def test_score_keeps_order_and_adds_fields(tmp_path: Path) -> None:
    lines = [
        {"text": "hello", "id": 1},
        {"messages": [{"role": "user", "content": "Design a distributed lock service."}], "id": 2},
        {"text": "What is 2+2?", "id": 3},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    result = tierwise("score", str(source))
    assert result.returncode == 0, result.stderr
    out = [json.loads(x) for x in result.stdout.decode().splitlines()]
    assert [o["id"] for o in out] == [1, 2, 3]
    for original, scored in zip(lines, out, strict=True):
        assert {k: scored[k] for k in original} == original
        assert 0 <= scored["score"] <= 1
        assert scored["band"] in {"LOW", "MEDIUM", "HIGH"}
        assert scored["tier"] in {"local", "hpc", "cloud"}
    assert b"scoring [" in result.stderr  # the progress bar


def test_score_reads_stdin_and_survives_bad_lines() -> None:
    data = (
        b'{"text": "fine"}\n'
        b"not json\n"
        b'{"text": "caf\xe9 broken utf-8"}\n'
        b'{"messages": [{"role": "robot", "content": "x"}]}\n'
        b'["a list"]\n'
        b'{"nothing": 1}\n'
        b'{"text": "last"}\n'
    )
    result = tierwise("score", stdin=data)
    assert result.returncode == 1
    assert b"Traceback" not in result.stderr
    out = [json.loads(x) for x in result.stdout.decode().splitlines()]
    assert len(out) == 7
    assert "score" in out[0] and "score" in out[6]
    assert "not JSON" in out[1]["error"]
    assert out[2]["text"] == "caf\ufffd broken utf-8" and "score" in out[2]
    assert b"line 3: invalid UTF-8" in result.stderr
    assert "unknown role 'robot'" in out[3]["error"]
    assert "expected a JSON object" in out[4]["error"]
    assert "needs 'text'" in out[5]["error"]


def test_score_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = tierwise("score", str(tmp_path / "absent.jsonl"))
    assert result.returncode == 1
    assert b"cannot read" in result.stderr and b"Traceback" not in result.stderr


def test_a_megabyte_prompt_gets_a_clear_error_not_a_traceback() -> None:
    result = tierwise("route", "-", stdin=b"why " * 250_000)
    assert result.returncode == 1
    assert b"Traceback" not in result.stderr
    error = json.loads(result.stdout)["error"]
    assert "more than any tier can take" in error and "cloud=200000" in error


def test_doctor_reports_each_check() -> None:
    result = tierwise("doctor")
    assert result.returncode == 0, result.stdout
    text = result.stdout.decode()
    for what in ("config", "tokenizer", "gpu", "litellm", "onnxruntime", "open-chat head"):
        assert what in text


def test_demo_routes_the_bundled_examples() -> None:
    result = tierwise("demo")
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert text.count("local") >= 3 and "cloud" in text
    assert "capability: vision needed" in text


def test_bench_decide_prints_both_figures(tmp_path: Path) -> None:
    data = tmp_path / "prompts"
    data.mkdir()
    (data / "p.jsonl").write_text(
        "\n".join(json.dumps({"text": f"question {i} about physics"}) for i in range(60))
    )
    out = tmp_path / "b.json"
    result = tierwise("bench", "decide", "--data", str(data), "--repeat", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert "tierwise decide (heuristic path)" in text and "p50" in text
    assert "LiteLLM complexity_router classify" in text
    figures = json.loads(out.read_text())
    assert figures["tierwise_decide_heuristic"]["n"] == 60


def test_eval_reports_tierwise_and_baselines(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        "\n".join(
            json.dumps({"text": t, "label": y})
            for t, y in [
                ("What is the capital of Peru?", "LOW"),
                ("Hi there!", "LOW"),
                ("Explain how vaccines train the immune system.", "MEDIUM"),
                ("Summarize the plot of Hamlet.", "MEDIUM"),
                ("Prove the spectral theorem and analyze its consequences rigorously.", "HIGH"),
                (
                    "Design a fault-tolerant distributed scheduler and justify its trade-offs.",
                    "HIGH",
                ),
            ]
        )
    )
    outcomes = tmp_path / "outcomes.jsonl"
    outcomes.write_text(
        "\n".join(
            json.dumps({"text": f"q{i} " + "word " * i, "weak": i % 3 != 0, "strong": True})
            for i in range(30)
        )
    )
    report = tmp_path / "report.json"
    result = tierwise("eval", str(labels), str(outcomes), "--json", str(report))
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert "accuracy" in text and "apgr" in text
    files = json.loads(report.read_text())["files"]
    label_results = files[str(labels)]
    assert {"tierwise-heuristic", "tierwise-learned", "length*", "litellm", "random"} <= set(
        label_results
    )
    assert label_results["tierwise-heuristic"]["accuracy"] >= 4 / 6
    assert 0 <= files[str(outcomes)]["tierwise-learned"]["apgr"] <= 1.5


def test_eval_names_the_bad_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "LOW"}\n{"label": "LOW"}\n')
    result = tierwise("eval", str(bad))
    assert result.returncode == 1
    assert f"{bad}:2: missing 'text'".encode() in result.stderr


@pytest.mark.usefixtures("shared_data")
def test_train_reproduces_the_committed_weights(tmp_path: Path, shared_data: Path) -> None:
    # The heuristic only: the learned head's fit is covered by tests/test_fit_learned.py, and
    # featurizing every data row takes minutes on a shared CPU.
    result = tierwise(
        "train", "--data", str(shared_data), "--out", str(tmp_path), "--heuristic-only"
    )
    assert result.returncode == 0, result.stderr
    committed = Path(__file__).parents[1] / "tierwise" / "scoring" / "artifacts" / "heuristic.json"
    assert json.loads((tmp_path / "heuristic.json").read_text()) == json.loads(
        committed.read_text()
    )

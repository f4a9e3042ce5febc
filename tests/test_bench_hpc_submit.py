"""`tierwise bench hpc-submit` runs the real SDK against the stand-in service, both modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from relay import standin
from tests.servers import REPO

pytestmark = pytest.mark.integration


def test_the_bench_measures_both_limiters_in_one_run(tmp_path: Path) -> None:
    if not standin.port_free():
        pytest.skip(f"127.0.0.1:{standin.SDK_PORT} is taken; the stand-in service needs it")
    out = tmp_path / "figures.json"
    command = [sys.executable, "-m", "tierwise", "bench", "hpc-submit", "--requests", "3"]
    result = subprocess.run(
        [*command, "--interval-s", "0.2", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "HOME": str(tmp_path)},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["sdk_default"]["n"] == figures["tierwise"]["n"] == 3
    assert figures["limits"]["tierwise"] == "8 per 4 s, batches of 1"
    assert "sdk_default  (4 per 16 s, batches <= 128): p50" in result.stdout

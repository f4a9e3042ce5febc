"""Continue's own CLI (`cn`, npm @continuedev/cli, pinned in scripts/continue-cli.sh) against
`tierwise up`, headless and offline, with the shipped continue_config/config.yaml.

`tierwise up` fills every tier with a labelled stand-in ("[<tier> stand-in] ..."), so the
reply `cn` prints names the tier that answered; the proxy's decision log (turned on through
`tierwise --config FILE up`) says which tier tierwise chose.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.servers import (
    REPO,
    Service,
    free_port,
    run_headless,
    stand_in_env,
    start_service,
)
from tierwise.config import load_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
CONFIG = REPO / "continue_config" / "config.yaml"
KEY = "sk-tierwise-continue-cli-test"
EX_CANNOT_BUILD = 75
EASY = "What is the capital of Australia?"
HARD = (
    "Prove that the square root of 2 is irrational, then generalize the argument to any "
    "prime p and explain where it fails for composite numbers."
)


def test_the_shipped_config_fits_what_the_proxy_accepts() -> None:
    (model,) = yaml.safe_load(CONFIG.read_text())["models"]
    ladder = load_config(None)  # the ladder `tierwise up` and the plugin start from
    usable = max(t.usable(ladder.rules.context_margin) for t in ladder.tiers)
    options = model["defaultCompletionOptions"]
    assert options["contextLength"] == usable
    assert 0 < options["maxTokens"] < options["contextLength"]
    # Autocomplete as chat completions, not legacy /completions with a FIM suffix.
    assert model["useLegacyCompletionsEndpoint"] is False


@pytest.fixture(scope="module")
def cn() -> Path:
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "continue-cli.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    if done.returncode == EX_CANNOT_BUILD:
        pytest.skip(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("CONTINUE_CLI=")]
    return Path(line.split("=", 1)[1])


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("tierwise-up")
    port = free_port()
    tierwise = Path(sys.executable).with_name("tierwise")
    env = stand_in_env()
    settings = root / "tierwise.yaml"
    settings.write_text(
        yaml.safe_dump({"tierwise": {"telemetry": {"log": True, "path": str(root / "log.db")}}})
    )
    service = start_service(
        [str(tierwise), "--config", str(settings), "up", "--port", str(port)],
        f"http://127.0.0.1:{port}/health/liveliness",
        root / "tierwise-up.log",
        env={**env, "LITELLM_MASTER_KEY": KEY, "XDG_DATA_HOME": str(root / "xdg")},
        timeout_s=240,
    )
    yield Service(service.process, f"http://127.0.0.1:{port}", service.log)
    service.stop()


def logged_tiers(proxy: Service, after_id: int) -> tuple[int, set[str]]:
    """The decision log's newest row id and the tiers of the rows written after `after_id`."""
    db = proxy.log.parent / "log.db"
    if not db.exists():
        return after_id, set()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, tier FROM requests WHERE id > ?", (after_id,)).fetchall()
    return max((r[0] for r in rows), default=after_id), {r[1] for r in rows}


def wait_for_tiers(proxy: Service, after_id: int) -> tuple[int, set[str]]:
    """Rows are written by a background thread: wait (boundedly) for this ask's rows."""
    deadline = time.monotonic() + 30
    newest, tiers = logged_tiers(proxy, after_id)
    while not tiers and time.monotonic() < deadline:
        time.sleep(0.2)
        newest, tiers = logged_tiers(proxy, after_id)
    return newest, tiers


def ask(cn: Path, proxy: Service, home: Path, prompt: str) -> str:
    """`cn --config FILE -p PROMPT` as a user runs it; the key comes from the environment."""
    config = CONFIG.read_text().replace("http://localhost:4000/v1", f"{proxy.url}/v1")
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(config)
    env = {
        **os.environ,
        "HOME": str(home),
        "CONTINUE_GLOBAL_DIR": str(home / ".continue"),
        "CONTINUE_CLI_ENABLE_TELEMETRY": "0",
        "CONTINUE_METRICS_ENABLED": "0",
        "LITELLM_API_KEY": KEY,
    }
    command = [str(cn), "--config", str(home / "config.yaml"), "-p", prompt]
    return run_headless(command, env=env, cwd=home, timeout_s=300)


@pytest.mark.parametrize(("prompt", "tier"), [(EASY, "local"), (HARD, "cloud")])
def test_continue_cli_is_routed_by_complexity(
    cn: Path, proxy: Service, tmp_path: Path, prompt: str, tier: str
) -> None:
    before, _ = logged_tiers(proxy, 0)
    out = ask(cn, proxy, tmp_path / "home", prompt)
    assert f"[{tier} stand-in] {prompt}" in out, out
    _, tiers = wait_for_tiers(proxy, before)
    assert tier in tiers, tiers

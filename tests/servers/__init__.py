"""Processes the integration tests start: upstream stand-ins and real hosts, on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from litellm_plugin import launch
from tierwise import processes
from tierwise.processes import free_port

REPO = Path(__file__).resolve().parents[2]


def wait_http(
    url: str, process: subprocess.Popen[bytes] | None, timeout_s: float, log: Path | None = None
) -> None:
    """Wait until `url` answers below 500; the error carries the tail of the process's log."""
    try:
        processes.wait_http(url, process, timeout_s)
    except processes.NotReady as exc:
        tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
        raise RuntimeError(f"{exc}\n{tail}") from None


@dataclass
class Service:
    """A process started for a test, with its log file; stop() always reaps it."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        processes.stop(self.process)


def start_service(
    command: Sequence[str],
    ready_url: str,
    log: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60,
    cwd: Path | None = None,
) -> Service:
    merged = {**os.environ, **(env or {})}
    handle = log.open("wb")
    process = subprocess.Popen(
        list(command), stdout=handle, stderr=subprocess.STDOUT, env=merged, cwd=str(cwd or REPO)
    )
    base = ready_url.rsplit("/", 1)[0] if ready_url.endswith("/health") else ready_url
    service = Service(process, base, log)
    try:
        wait_http(ready_url, process, timeout_s, log)
    except Exception:
        service.stop()
        raise
    return service


@dataclass
class Stub(Service):
    """An OpenAI-compatible upstream stand-in (tierwise/standin.py)."""

    name: str = "stub"

    @property
    def base(self) -> str:
        return self.url

    def control(self, **changes: Any) -> None:
        httpx.post(f"{self.url}/control", json=changes, timeout=5).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.url}/requests", timeout=5).json())

    def reset(self) -> None:
        httpx.post(f"{self.url}/reset", timeout=5).raise_for_status()


def start_stub(name: str, log_dir: Path, models: Sequence[str] = ()) -> Stub:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "tierwise.standin",
        "--port",
        str(port),
        "--name",
        name,
    ]
    for model in models:
        command += ["--model", model]
    log = log_dir / f"stub-{name}.log"
    service = start_service(command, f"http://127.0.0.1:{port}/health", log, timeout_s=20)
    return Stub(service.process, f"http://127.0.0.1:{port}", log, name=name)


def start_redis(log_dir: Path) -> Service:
    """A real redis-server (from scripts/system-deps.sh) on a free port, persistence off."""
    child = launch.start_redis(log_dir)
    return Service(child.process, child.url, child.log)


MASTER_KEY = "sk-tierwise-test-0123456789abcdef"
# What `tierwise up` reads to use real tiers; without them every tier is a stand-in.
TIER_ENV = ("OLLAMA_API_BASE", "TIERWISE_HPC_API_BASE", "OPENROUTER_API_KEY")


def run_headless(
    command: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout_s: float
) -> str:
    """Run a command-line tool as a non-interactive shell would (no stdin); it must exit 0.
    Returns its stdout; a failure shows stdout and stderr."""
    done = subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def stand_in_env() -> dict[str, str]:
    """This process's environment without the variables that give `tierwise up` real tiers."""
    return {k: v for k, v in os.environ.items() if k not in TIER_ENV}


def start_litellm(
    config: Mapping[str, Any],
    log_dir: Path,
    name: str = "litellm",
    env: Mapping[str, str] | None = None,
    timeout_s: float = 90,
) -> Service:
    """A real `litellm --config` proxy on a free loopback port, offline, with MASTER_KEY.

    PYTHONPATH includes the repo so configs can name test-only callbacks (tests.plugins.*).
    """
    import yaml

    port = free_port()
    path = log_dir / f"{name}-config.yaml"
    merged = {"general_settings": {"master_key": MASTER_KEY}, **config}
    path.write_text(yaml.safe_dump(merged, sort_keys=False))
    command = [
        str(Path(sys.executable).with_name("litellm")),
        "--config",
        str(path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    full_env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        **(env or {}),
    }
    service = start_service(
        command,
        f"http://127.0.0.1:{port}/health/liveliness",
        log_dir / f"{name}.log",
        env=full_env,
        timeout_s=timeout_s,
    )
    return Service(service.process, f"http://127.0.0.1:{port}", service.log)

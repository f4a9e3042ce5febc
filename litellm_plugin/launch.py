"""Start local processes: tier stand-ins and a LiteLLM proxy with the plugin, on loopback.

Used by `tierwise up` and `tierwise bench proxy`. Only the standard library, httpx and
PyYAML: the proxy is a child process, so nothing here imports LiteLLM.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

LOOPBACK = "127.0.0.1"


class LaunchError(RuntimeError):
    """A process did not come up; the message includes the tail of its log."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def litellm_command() -> list[str]:
    """The `litellm` CLI of this environment (beside this Python), else the one on PATH."""
    beside = Path(sys.executable).with_name("litellm")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("litellm")
    if found:
        return [found]
    return [sys.executable, "-m", "litellm.proxy.proxy_cli"]


def spawn(
    name: str,
    command: Sequence[str],
    url: str,
    log: Path,
    env: Mapping[str, str] | None = None,
) -> Child:
    handle = log.open("wb")
    process = subprocess.Popen(
        list(command),
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop children
    )
    handle.close()
    return Child(name, process, url, log)


def wait_ready(child: Child, path: str, timeout_s: float) -> None:
    """Poll child.url + path until it answers below 500; LaunchError if the child dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise LaunchError(
                f"{child.name} exited with {child.process.returncode} before it was ready; "
                f"its log ({child.log}) ends with:\n{child.log_tail()}"
            )
        try:
            if httpx.get(child.url + path, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise LaunchError(
        f"{child.name} did not answer {path} within {timeout_s:.0f}s:\n{child.log_tail()}"
    )


def start_standin(tier: str, log_dir: Path, label: str | None = None) -> Child:
    """A tierwise.standin server answering as `label` (default '<tier> stand-in')."""
    port = free_port()
    name = label or f"{tier} stand-in"
    command = [sys.executable, "-m", "tierwise.standin", "--port", str(port), "--name", name]
    child = spawn(name, command, f"http://{LOOPBACK}:{port}", log_dir / f"standin-{tier}.log")
    wait_ready(child, "/health", 30)
    return child


def standin_deployment(tier: str, child: Child) -> dict[str, Any]:
    return {
        "model": f"openai/{tier}-standin",
        "api_base": f"{child.url}/v1",
        "api_key": "stand-in",
    }


def write_config(config: Mapping[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return path


def start_proxy(
    config: Mapping[str, Any],
    log_dir: Path,
    name: str = "litellm",
    port: int | None = None,
    host: str = LOOPBACK,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 120,
) -> Child:
    """`litellm --config` on `config`, offline (bundled cost map), waited until live."""
    port = port or free_port()
    path = write_config(config, log_dir / f"{name}-config.yaml")
    command = [*litellm_command(), "--config", str(path), "--host", host, "--port", str(port)]
    full_env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", **(env or {})}
    child = spawn(name, command, f"http://{LOOPBACK}:{port}", log_dir / f"{name}.log", full_env)
    try:
        wait_ready(child, "/health/liveliness", timeout_s)
    except LaunchError:
        child.stop()
        raise
    return child

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

import yaml

from tierwise.processes import LOOPBACK, NotReady, free_port, stop, wait_http


class LaunchError(RuntimeError):
    """A process did not come up; the message includes the tail of its log."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        stop(self.process)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


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
    """Wait until child.url + path answers below 500; LaunchError (with its log) otherwise."""
    try:
        wait_http(child.url + path, child.process, timeout_s)
    except NotReady as exc:
        raise LaunchError(
            f"{child.name}: {exc}; its log ({child.log}) ends with:\n{child.log_tail()}"
        ) from None


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


def start_redis(log_dir: Path, timeout_s: float = 20) -> Child:
    """A redis-server (scripts/system-deps.sh installs it) on a free loopback port,
    persistence off; its url is redis://... . LaunchError when it does not answer PING."""
    server = shutil.which("redis-server")
    if server is None:
        raise LaunchError("redis-server is not installed (scripts/system-deps.sh installs it)")
    port = free_port()
    command = [server, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"]
    child = spawn("redis", command, f"redis://{LOOPBACK}:{port}/0", log_dir / "redis.log")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            break
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return child
        except OSError:
            time.sleep(0.1)
    child.stop()
    raise LaunchError(f"redis-server did not answer PING; its log ends with:\n{child.log_tail()}")

"""A real Open WebUI for the integration tests: its environment, its process, its API.

The environment comes from scripts/openwebui-env.sh (cached between runs). Open WebUI starts
offline on a free loopback port with a temporary DATA_DIR; the admin comes from
WEBUI_ADMIN_EMAIL/PASSWORD, and its connections are the stand-ins the test started.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.servers import REPO, Service, Stub, free_port, start_service

ENV_SCRIPT = REPO / "scripts" / "openwebui-env.sh"
EX_CANNOT_BUILD = 75
ADMIN_EMAIL = "admin@example.org"
ADMIN_PASSWORD = "admin-pass-123"


class CannotBuild(Exception):
    """The env script says this machine cannot host Open WebUI (its exit 75)."""


def openwebui_python(timeout_s: float = 1500) -> tuple[Path, float]:
    """Build or reuse the Open WebUI environment; returns its python and the seconds it took."""
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(ENV_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO,
    )
    took = time.monotonic() - started
    if done.returncode == EX_CANNOT_BUILD:
        reason = [line for line in done.stderr.splitlines() if line.startswith("cannot build:")]
        raise CannotBuild(reason[-1] if reason else done.stderr[-500:])
    if done.returncode != 0:
        raise RuntimeError(
            f"scripts/openwebui-env.sh failed with exit {done.returncode}\n{done.stderr[-4000:]}"
        )
    for line in done.stdout.splitlines():
        if line.startswith("OPENWEBUI_PYTHON="):
            return Path(line.split("=", 1)[1]), took
    raise RuntimeError(f"scripts/openwebui-env.sh printed no OPENWEBUI_PYTHON=\n{done.stdout}")


@dataclass
class OpenWebUI(Service):
    """A running Open WebUI and an admin session on it."""

    admin_token: str = ""
    startup_s: float = 0.0

    def client(self, token: str | None = None, timeout: float = 60) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def sign_in(self, email: str, password: str) -> str:
        response = httpx.post(
            f"{self.url}/api/v1/auths/signin",
            json={"email": email, "password": password},
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["token"])

    def rss_mb(self) -> float:
        """Resident memory of the server process (and its children), from /proc."""
        total = 0
        for pid in [self.process.pid, *_children(self.process.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total / 1024

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    kids = [int(p) for p in text.split()]
    return kids + [k for kid in kids for k in _children(kid)]


def start_openwebui(
    python: Path,
    data_dir: Path,
    log: Path,
    openai: Sequence[Stub],
    ollama: Sequence[Service],
    timeout_s: float = 600,  # about 30 s on an idle machine; 230 s seen on a loaded one
) -> OpenWebUI:
    """Start Open WebUI offline with these stand-ins as its connections; sign the admin in."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "DATA_DIR": str(data_dir),
        "OFFLINE_MODE": "true",  # no hub downloads, no pip installs of function requirements
        "HF_HUB_OFFLINE": "1",
        "RAG_EMBEDDING_MODEL": "",  # no SentenceTransformer load at start
        "WEBUI_ADMIN_EMAIL": ADMIN_EMAIL,
        "WEBUI_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "WEBUI_SECRET_KEY": secrets.token_hex(16),
        "ENABLE_OPENAI_API": "true",
        "ENABLE_API_KEYS": "true",  # off by default in 0.12; the installer takes an API key
        "OPENAI_API_BASE_URLS": ";".join(f"{s.url}/v1" for s in openai),
        "OPENAI_API_KEYS": ";".join(f"sk-test-{s.name}" for s in openai),
        "ENABLE_OLLAMA_API": "true" if ollama else "false",
        "OLLAMA_BASE_URLS": ";".join(s.url for s in ollama),
        "ENABLE_VERSION_UPDATE_CHECK": "false",
        "ANONYMIZED_TELEMETRY": "false",
        "DO_NOT_TRACK": "true",
        "SCARF_NO_ANALYTICS": "true",
        "GLOBAL_LOG_LEVEL": "INFO",
        "PYTHONPATH": "",
    }
    command = [
        str(python),
        "-c",
        "from open_webui import app; app()",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    started = time.monotonic()
    service = start_service(
        command, f"http://127.0.0.1:{port}/health", log, env=env, timeout_s=timeout_s, cwd=data_dir
    )
    server = OpenWebUI(service.process, service.url, service.log)
    try:
        server.startup_s = time.monotonic() - started
        server.admin_token = server.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
    except Exception:
        server.stop()
        raise
    return server


def start_ollama_stub(name: str, log_dir: Path, models: Sequence[str]) -> Service:
    """The Ollama-compatible stand-in (tests/servers/ollama_stub.py)."""
    port = free_port()
    command = [sys.executable, "-m", "tests.servers.ollama_stub", "--port", str(port)]
    command += ["--name", name]
    for model in models:
        command += ["--model", model]
    log = log_dir / f"ollama-{name}.log"
    return start_service(command, f"http://127.0.0.1:{port}/health", log, timeout_s=20)


def ollama_requests(service: Service) -> list[dict[str, Any]]:
    return list(httpx.get(f"{service.url}/requests", timeout=5).json())


def reset(service: Service) -> None:
    httpx.post(f"{service.url}/reset", timeout=5).raise_for_status()


def control(service: Service, **changes: Any) -> None:
    httpx.post(f"{service.url}/control", json=changes, timeout=5).raise_for_status()

"""A summarizer that calls an OpenAI-compatible server, and the local stand-in server for it.

`tierwise eval-summarize` needs a real model server on the other end of the summarizer call,
so the latency it reports includes a real HTTP round trip. With no --summarizer-url it starts
the project's OpenAI-compatible stand-in (tests/servers/openai_stub.py) on a loopback port.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tierwise.summarize import SummaryJob

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "tests" / "servers" / "openai_stub.py"


class SummarizerServerError(RuntimeError):
    """The summarizer server could not be started or reached; the message says what to do."""


class HttpSummarizer:
    """summarizer(job) -> text, via POST {base_url}/chat/completions (non-streaming)."""

    def __init__(
        self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 60.0
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout_s, headers=headers)

    def __call__(self, job: SummaryJob) -> str:
        body = {
            "model": self.model,
            "messages": job.as_messages(),
            "max_tokens": job.max_tokens,
            "temperature": 0,
        }
        response = self.client.post(self.url, json=body)
        response.raise_for_status()
        content: Any = response.json()["choices"][0]["message"].get("content")
        return content if isinstance(content, str) else ""

    def close(self) -> None:
        self.client.close()


class StandinServer:
    """The OpenAI-compatible stand-in, run as a child process on a free loopback port."""

    def __init__(self, log_path: Path, reply: str, ttft_ms: float = 0.0) -> None:
        if not STANDIN.is_file():
            raise SummarizerServerError(
                f"the stand-in model server ({STANDIN}) is not beside this installation; run "
                "from a source checkout or pass --summarizer-url URL of an OpenAI-compatible "
                "server"
            )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        self.root = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.root}/v1"
        self._log = log_path.open("wb")
        command = [sys.executable, "-m", "tests.servers.openai_stub", "--port", str(port)]
        command += ["--name", "summarizer", "--model", "summarizer"]
        self.process = subprocess.Popen(
            command, cwd=str(REPO), stdout=self._log, stderr=subprocess.STDOUT
        )
        try:
            self._wait_ready(log_path)
            httpx.post(
                f"{self.root}/control", json={"reply": reply, "ttft_ms": ttft_ms}, timeout=5
            ).raise_for_status()
        except Exception:
            self.stop()
            raise

    def _wait_ready(self, log_path: Path, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise SummarizerServerError(f"the stand-in server exited early:\n{tail}")
            try:
                if httpx.get(f"{self.root}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SummarizerServerError(f"the stand-in server did not answer within {timeout_s:g}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()

    def __enter__(self) -> StandinServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

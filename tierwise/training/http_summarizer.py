"""A summarizer that calls an OpenAI-compatible server, and the local stand-in server for it.

`tierwise eval-summarize` needs a real model server on the other end of the summarizer call,
so the latency it reports includes a real HTTP round trip. With no --summarizer-url it starts
the project's OpenAI-compatible stand-in (tierwise.standin) on a loopback port.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tierwise.processes import LOOPBACK, NotReady, free_port, stop, wait_http
from tierwise.summarize import SummaryJob


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
        port = free_port()
        self.root = f"http://{LOOPBACK}:{port}"
        self.base_url = f"{self.root}/v1"
        self._log = log_path.open("wb")
        command = [sys.executable, "-m", "tierwise.standin", "--port", str(port)]
        command += ["--name", "summarizer", "--model", "summarizer"]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(log_path)
            httpx.post(
                f"{self.root}/control", json={"reply": reply, "ttft_ms": ttft_ms}, timeout=5
            ).raise_for_status()
        except Exception:
            self.stop()
            raise

    def _wait_ready(self, log_path: Path, timeout_s: float = 20.0) -> None:
        try:
            wait_http(f"{self.root}/health", self.process, timeout_s)
        except NotReady as exc:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise SummarizerServerError(f"the stand-in server: {exc}\n{tail}") from None

    def stop(self) -> None:
        stop(self.process)
        self._log.close()

    def __enter__(self) -> StandinServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

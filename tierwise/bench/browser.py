"""Drive Debian's headless Chromium through chromedriver's W3C WebDriver HTTP API.

Used by the dashboard's page test and by `tierwise bench log` to see the page as a person
does (real layout, real JavaScript). Needs /usr/bin/chromium and /usr/bin/chromedriver
(scripts/system-deps.sh installs them); `available()` says whether they are there.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tierwise.processes import free_port, stop

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
)


def binaries() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None when either is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def available() -> bool:
    return binaries() is not None


class Browser:
    """One chromedriver process and one headless Chromium session; use as a context manager."""

    def __init__(self, width: int = 1440, height: int = 1000, timeout_s: float = 30.0) -> None:
        found = binaries()
        if found is None:
            raise RuntimeError("chromium and chromedriver are needed (scripts/system-deps.sh)")
        self.chromium, driver = found
        self.width, self.height = width, height
        self.timeout_s = timeout_s
        self._profile = tempfile.TemporaryDirectory(prefix="tierwise-chromium-")
        port = free_port()
        self._driver = subprocess.Popen(
            [driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=timeout_s)
        self.session = ""

    def __enter__(self) -> Browser:
        try:
            self._wait_driver()
            caps = {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": self.chromium,
                    "args": [
                        *CHROMIUM_FLAGS,
                        f"--user-data-dir={self._profile.name}",
                        f"--window-size={self.width},{self.height}",
                    ],
                },
            }
            body = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
            self.session = body["sessionId"]
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait_driver(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self._driver.poll() is not None:
                raise RuntimeError(f"chromedriver exited with {self._driver.returncode}")
            try:
                if self._http.get("/status").json()["value"].get("ready"):
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise TimeoutError("chromedriver did not become ready")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, json=body)
        value = response.json().get("value")
        if response.status_code >= 400:
            raise RuntimeError(f"WebDriver {method} {path}: {value}")
        return value

    def _session(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body)

    def open(self, url: str) -> None:
        self._session("POST", "/url", {"url": url})

    def run(self, script: str, *args: Any) -> Any:
        """Run JavaScript in the page (a function body: use `return`)."""
        return self._session("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait_for(self, script: str, timeout_s: float = 15.0, interval_s: float = 0.02) -> Any:
        """Poll `script` until it returns something truthy; returns that value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.run(script)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"page condition not met within {timeout_s}s: {script}")
            time.sleep(interval_s)

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """Save a PNG; with full_page the window first grows to the page's height."""
        if full_page:
            height = int(self.run("return document.documentElement.scrollHeight"))
            self._session("POST", "/window/rect", {"width": self.width, "height": height})
        data = self._session("GET", "/screenshot")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        if self.session:
            with contextlib.suppress(httpx.HTTPError, RuntimeError):
                self._call("DELETE", f"/session/{self.session}")
            self.session = ""
        self._http.close()
        stop(self._driver)
        self._profile.cleanup()

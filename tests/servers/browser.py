"""A real headless Chromium for the browser tests, driven by selenium (the dev extra).

Debian's chromium + chromium-driver come from scripts/system-deps.sh. The browser starts with
a fresh profile and everything that could reach beyond loopback switched off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tierwise.bench.browser import CHROMIUM_FLAGS, binaries


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A selenium WebDriver on headless Chromium with a fresh profile in `profile`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = binaries()
    if paths is None:
        raise RuntimeError("chromium and chromedriver are needed (scripts/system-deps.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in (*CHROMIUM_FLAGS, "--window-size=1280,800", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()

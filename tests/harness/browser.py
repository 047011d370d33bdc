"""A real headless browser: Debian's chromium driven through selenium and Debian's chromedriver.

:func:`chromium` starts one with the flags a closed network needs (no background networking,
component updates, sync or first-run work) and a fresh profile; it skips without chromium
locally and fails in CI (``.ci/run`` installs ``chromium`` and ``chromium-driver``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = ["chromium"]

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER = "/usr/bin/chromedriver"


def _binary() -> str | None:
    return next((b for b in CHROMIUM if os.path.exists(b)), None) or shutil.which("chromium")


@contextmanager
def chromium(profile: Path, *, width: int = 1200, height: int = 1600) -> Iterator[Any]:
    """A headless chromium (selenium ``WebDriver``), closed at the end."""
    binary, driver = _binary(), DRIVER if os.path.exists(DRIVER) else shutil.which("chromedriver")
    if binary is None or driver is None:
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are required in CI (.ci/run installs them)")
        pytest.skip("chromium or chromedriver not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                 "--autoplay-policy=no-user-gesture-required", "--mute-audio",
                 f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    try:
        yield browser
    finally:
        browser.quit()

"""Headless Chromium for the UI tests and the UI benchmark: Debian's ``chromium`` package
driven by Playwright's Python API (Playwright cannot download its own browsers here).

Flags: no sandbox (we run as root), no GPU, and no background networking, component updates,
sync or QUIC — a closed network refuses those connections by the dozen at every start.
Every launch gets a fresh, empty user-data-dir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def find_chromium(install: bool = True) -> tuple[str | None, str]:
    """``(path, why)``: the chromium executable, installing Debian's package when missing and
    allowed (root with apt-get); otherwise None and why not."""
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found:
        return found, "found"
    if not install:
        return None, "chromium is not installed"
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return None, "chromium is not installed and cannot be (needs root and apt-get)"
    for command in (
        ["apt-get", "install", "-y", "-qq", "chromium"],
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "chromium"],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if command[1] == "install" and done.returncode == 0:
            break
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found:
        return found, "installed"
    return None, f"apt-get install chromium failed: {done.stderr.strip()[-300:]}"


@contextmanager
def browser_context(executable: str, user_data_dir: Path, **options: Any) -> Iterator[Any]:
    """A Playwright ``BrowserContext`` of a fresh headless Chromium (closed on exit)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=executable,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 860},
            **options,
        )
        try:
            yield context
        finally:
            context.close()


@contextmanager
def launch(executable: str) -> Iterator[Any]:
    """A Playwright ``Browser`` (headless, a fresh temporary profile); ``new_context()`` per
    sample gives each one an empty cache, like a first visit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()

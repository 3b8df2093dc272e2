"""A real headless browser for tests: Debian's Chromium driven by Playwright.

Playwright's own browser download is never used (no internet): it is pointed at the system
Chromium, started with the flags that keep it off the network. `browser_page()` yields a
page that records console errors and failed requests; tests assert on them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

CHROMIUM = os.environ.get("MOSAIC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class PageLog:
    """What the page said: console errors, uncaught exceptions, failed requests."""

    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def require_browser() -> None:
    """Skip without Chromium or Playwright (a failure under CI=true, where both must exist)."""
    missing = []
    if not os.path.exists(CHROMIUM):
        missing.append(f"Chromium ({CHROMIUM})")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright")
    if missing:
        reason = f"browser test: {' and '.join(missing)} not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@contextlib.contextmanager
def browser_page(width: int = 1024, height: int = 768) -> Iterator[tuple[Any, PageLog]]:
    """A fresh headless Chromium page (and its log), closed afterwards."""
    require_browser()
    from playwright.sync_api import sync_playwright

    log = PageLog()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: log.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: log.errors.append(str(e)))
            page.on("requestfailed", lambda r: log.failed.append(r.url))
            yield page, log
        finally:
            browser.close()

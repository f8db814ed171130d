"""Headless Chromium (Debian's ``chromium``) opening a page from a file URL, for tests and benchmarks
of the fleet page: what it logged (console errors and uncaught exceptions), every request it made,
its visible text, the load time, and a screenshot.

Driven through Playwright's Python package with Debian's browser (``executable_path``): the
package's own driver runs it, and no browser is downloaded. The flags keep Chromium off the
network it would otherwise call home on (background networking, component updates, sync).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tfgov_ci.errors import ToolError

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip


@dataclass(frozen=True)
class Loaded:
    errors: tuple[str, ...]  # console errors and uncaught exceptions
    requests: tuple[str, ...]  # every URL the page asked for, itself first
    text: str  # document.body.innerText
    seconds: float  # from navigation to the load event
    sections: int


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        raise ToolError("chromium is not installed", "apt-get install -y chromium")
    return found


def load(page_file: Path, screenshot: Path | None = None, *, width: int = 1400, height: int = 1000) -> Loaded:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on(
                "console",
                lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            t0 = time.monotonic()
            page.goto(page_file.resolve().as_uri(), wait_until="load")
            seconds = time.monotonic() - t0
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
            text = page.inner_text("body")
            sections = page.locator("section").count()
        finally:
            browser.close()
    return Loaded(tuple(errors), tuple(requests), text, seconds, sections)

"""A PNG of each console page, taken by headless Chromium through Playwright: what
``scripts/console-screenshots`` runs against a running platform, and what the browser
test runs at its end when ``CONSOLE_SCREENSHOTS_DIR`` is set.

Playwright is a development dependency and drives the system's Chromium (Debian's
``chromium``, never a browser download), so it is imported only here, when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1440, "height": 900}
# (file name, path): the profile page's path is given by the caller (a real profile).
PAGES = [("live.png", "/live"), ("deadletters.png", "/deadletters"),
         ("definitions.png", "/definitions"), ("activity.png", "/activity"),
         ("delivery.png", "/delivery"), ("search.png", "/profiles")]


def launch(headless: bool = True) -> tuple[object, Browser]:
    """(the Playwright handle to stop, a Chromium browser)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium")
    handle = sync_playwright().start()
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    browser = handle.chromium.launch(executable_path=CHROMIUM, headless=headless,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
    return handle, browser


def sign_in(page: Page, base: str, api_key: str) -> None:
    page.goto(base + "/login")
    page.fill("#api_key", api_key)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


def capture(page: Page, base: str, out: Path, profile_path: str | None) -> list[Path]:
    """Screenshots of every page (full height) into ``out``; returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    pages = list(PAGES)
    if profile_path:
        pages.insert(1, ("profile.png", profile_path))
    saved = []
    for name, path in pages:
        page.goto(base + path)
        page.wait_for_load_state("networkidle") if path != "/live" else \
            page.wait_for_timeout(2500)  # the live page's stream never idles
        target = out / name
        page.screenshot(path=str(target), full_page=True)
        saved.append(target)
    return saved


def capture_login(browser: Browser, base: str, out: Path) -> Path:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto(base + "/login")
    target = out / "login.png"
    page.screenshot(path=str(target))
    context.close()
    return target

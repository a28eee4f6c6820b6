"""Playwright (Python) driving Debian's Chromium against pytest-django's live_server.

Never ``playwright install``: the browser is the distribution's, at
/usr/bin/chromium. Screenshots go to test-output/screenshots/ (gitignored);
the README's pages are also copied to docs/screenshots/ when
CONFLICTDESK_README_SHOTS=1, so a plain test run leaves the tree clean.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the
# tests make between page actions are ordinary blocking calls, which is safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "test-output" / "screenshots"
README_SHOTS = REPO / "docs" / "screenshots"
CHROMIUM = os.environ.get("CONFLICTDESK_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser, live_server):
    contexts = []

    def make(width=1366, height=900):
        context = browser.new_context(viewport={"width": width, "height": height}, base_url=live_server.url)
        context.set_default_timeout(15000)
        contexts.append(context)
        return context.new_page()

    yield make
    # Pages now write (a page showing demographics audits the view): let every answer arrive, so no request
    # is still being served by the live server while the test database is flushed under it (a deadlock).
    for context in contexts:
        for page in context.pages:
            page.wait_for_load_state("networkidle")
        context.close()


def shot(page, name: str, readme: bool = False) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if readme and os.environ.get("CONFLICTDESK_README_SHOTS") == "1":
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, README_SHOTS / path.name)
    return path


def totp_now(secret: str) -> str:
    """The current code, computed as an authenticator app would; waits out the last seconds of a period."""
    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

    if 30 - time.time() % 30 < 3:
        time.sleep(3.5)
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def log_in(page, email: str, password: str, secret: str) -> None:
    """E-mail + password, then the TOTP step allauth shows for an enrolled user."""
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")
    page.wait_for_url("**/accounts/2fa/authenticate/**")
    page.fill("input[name=code]", totp_now(secret))
    page.click("main button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/" not in url)

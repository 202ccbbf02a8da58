"""Playwright driving the system's Chromium (never a downloaded browser),
headless, against pytest-django's live server."""

import os
import shutil
from pathlib import Path

import pytest
from django.db import connections
from playwright.sync_api import expect, sync_playwright

REPO_ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct-horse-battery-staple"  # noqa: S105 - tests.factories.UserFactory's
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def chromium_executable() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        raise RuntimeError("Debian's chromium is not installed (./twokey test installs it)")
    return path


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API keeps an event loop running in this thread, so
    # Django would refuse the test's own ORM calls as "async"; they are not.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable(), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
        # Connections the test opened while Playwright's loop ran live in that
        # loop's context; close them here, or they outlive the test database.
        connections.close_all()


@pytest.fixture
def new_context(browser):
    """new_context(**options): a browser context whose console errors and
    page errors (a script failing, a content security policy refusal) fail
    the test."""
    problems: list[str] = []
    contexts = []

    def on_console(msg):
        # A form sent back with its errors answers 400 on purpose; Chromium logs that.
        if msg.type == "error" and "status of 400 (Bad Request)" not in msg.text:
            problems.append(f"{msg.text} ({msg.location.get('url')})")

    def make(**options):
        context = browser.new_context(**options)
        context.on("console", on_console)
        context.on("weberror", lambda error: problems.append(str(error.error)))
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()
    assert problems == []


@pytest.fixture
def screenshots(tmp_path):
    """Where screenshots go: docs/screenshots when TWOKEY_SCREENSHOTS=1
    (to refresh the README's pictures), else the test's temporary folder."""
    folder = REPO_ROOT / "docs" / "screenshots" if os.environ.get("TWOKEY_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> None:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    return take

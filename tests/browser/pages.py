"""What every browser test does to a page: sign in, and check the page is
usable (labels, no sideways scrolling, no server error)."""

import re

from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD

UNLABELLED_FIELDS = """() => [...document.querySelectorAll('input, select, textarea')]
    .filter(el => el.type !== 'hidden' && el.labels.length === 0 && !el.getAttribute('aria-label'))
    .map(el => el.name || el.id)"""
SIDEWAYS_OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


def sign_in(context, base_url: str, username: str):
    page = context.new_page()
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    return page


def check_usable(page) -> None:
    """Every form field labelled; the page does not scroll sideways; words,
    not a stack trace."""
    assert page.evaluate(UNLABELLED_FIELDS) == [], page.url
    assert page.evaluate(SIDEWAYS_OVERFLOW) <= 0, f"{page.url} scrolls sideways"
    assert "Traceback" not in page.content()


def nav(page, label: str):
    """A link of the header's navigation."""
    return page.get_by_role("navigation", name="Sections").get_by_role("link", name=label, exact=True)


def pick(page, label: str, typed: str, path: str, *, keyboard: bool = False) -> None:
    """Choose an object in a ticket form's picker: type part of its name and
    choose the option at `path`, by click or (keyboard) arrows and Enter."""
    field = page.get_by_label(re.compile(rf"^{re.escape(label)}( \(optional\))?$"))
    field.click()
    field.fill("")
    field.press_sequentially(typed)
    listbox = page.locator(f"#{field.get_attribute('id')}-options")
    # The answer to what was typed (not to an earlier keystroke) is shown.
    expect(listbox.locator(f'[data-query="{typed}"]')).to_be_attached()
    option = listbox.locator(f'[role=option][data-value="{path}"]')
    expect(option).to_be_visible()
    if keyboard:
        for _ in range(_position(listbox, path) + 1):
            field.press("ArrowDown")
        expect(option).to_have_attribute("aria-selected", "true")
        expect(field).to_have_attribute("aria-activedescendant", option.get_attribute("id"))
        field.press("Enter")
    else:
        option.click()
    expect(field).to_have_value(path)
    expect(listbox).to_be_hidden()


def _position(listbox, path: str) -> int:
    values = [o.get_attribute("data-value") for o in listbox.locator("[role=option]").all()]
    return values.index(path)

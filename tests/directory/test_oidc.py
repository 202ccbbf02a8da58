"""OpenID Connect sign-in against a real provider (the npm package
oidc-provider, tests/fixtures/oidc_provider.py), through Chromium: the
groups claim mapped to roles, PKCE, state and nonce on, and a wrong issuer
or a tampered token refused. The tampering is done by a relay between the
portal and the provider, as a network attacker would: a real provider does
not sign lies."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import expect

from accounts.directory.config import directory_settings
from accounts.models import AccountState
from audit.models import AuditEntry

User = get_user_model()
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def provider_sign_in(browser, base, account):
    """Sign in at the portal through the provider; returns the page and the
    authorization request the browser sent."""
    context = browser.new_context()
    page = context.new_page()
    sent = []
    page.on("request", lambda r: sent.append(r.url) if "/auth?" in r.url else None)
    page.goto(f"{base}/accounts/login/")
    page.get_by_role("link", name="Sign in with Example SSO").click()
    page.locator("input[name=login]").fill(account)
    page.locator("input[name=password]").fill("the-provider-checks-this")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(re.escape(base)))
    return page, sent


def roles_of(name):
    return set(User.objects.get(username=name).groups.values_list("name", flat=True))


def test_sign_in_through_the_provider_with_pkce_state_and_nonce(browser, live_server, oidc_directory, roles):
    page, sent = provider_sign_in(browser, live_server.url, "olivia")
    expect(page.locator(".who")).to_have_text("olivia")
    query = parse_qs(urlsplit(sent[0]).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) >= 43
    assert query["state"][0] and query["nonce"][0] and query["client_id"] == ["twokey-portal"]
    assert roles_of("olivia") == {"approver"}
    state = AccountState.objects.get(user__username="olivia")
    assert (state.directory, state.directory_id) == ("oidc", "olivia")
    assert AuditEntry.objects.filter(action="directory.roles_changed", details__directory="oidc").exists()
    page.context.close()
    page, _ = provider_sign_in(browser, live_server.url, "oscar")
    assert roles_of("oscar") == {"requester", "auditor"}
    page.context.close()


def test_a_person_in_no_mapped_group_is_told(browser, live_server, oidc_directory, roles):
    page, _ = provider_sign_in(browser, live_server.url, "otto")
    expect(page.locator(".who")).to_have_text("otto")
    expect(page.get_by_text("give you no role in TwoKey")).to_be_visible()
    assert roles_of("otto") == set()
    page.context.close()


def test_a_tampered_id_token_is_refused(browser, live_server, oidc_directory, roles):
    oidc_directory.relay.tamper = "id_token"
    page, _ = provider_sign_in(browser, live_server.url, "olivia")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    expect(page.get_by_text("Sign-in through the provider failed")).to_be_visible()
    assert not User.objects.filter(groups__name="portal_admin").exists()
    refused = AuditEntry.objects.get(action="directory.token_refused")
    assert "InvalidSignatureError" in refused.details["reason"]
    page.context.close()


def test_a_provider_naming_another_issuer_is_refused(live_server, oidc_directory, settings):
    # Configured for localhost, the provider calls itself 127.0.0.1: discovery refuses it.
    port = oidc_directory.relay.server_address[1]
    settings.TWOKEY_OIDC_ISSUER = f"http://localhost:{port}"
    response = Client().get("/accounts/oidc/start/", follow=True)
    assert "must be exactly OIDC_ISSUER" in response.content.decode()
    assert not response.wsgi_request.user.is_authenticated


def test_a_token_from_another_issuer_is_refused(browser, live_server, oidc_directory, settings, roles):
    # The relay makes discovery agree with the configured issuer; the token still names the real one.
    port = oidc_directory.relay.server_address[1]
    settings.TWOKEY_OIDC_ISSUER = oidc_directory.relay.claimed_issuer = f"http://localhost:{port}"
    oidc_directory.relay.tamper = "issuer"
    page, _ = provider_sign_in(browser, live_server.url, "olivia")
    expect(page.get_by_text("Sign-in through the provider failed")).to_be_visible()
    assert "InvalidIssuerError" in AuditEntry.objects.get(action="directory.token_refused").details["reason"]
    page.context.close()


def test_without_oidc_the_provider_routes_do_not_exist(db):
    assert Client().get("/accounts/oidc/start/").status_code == 404
    assert Client().get("/accounts/oidc/callback/?code=x&state=y").status_code == 404
    assert directory_settings({})["TWOKEY_DIRECTORY"] == ()

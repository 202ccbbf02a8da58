"""The background sync for OpenID Connect against the real provider
(tests/fixtures/oidc/provider.mjs, which re-reads its accounts at every
lookup and rotates refresh tokens at every use): sign-in keeps a refresh
grant sealed to the worker's key; the sync refreshes it and applies the
groups the provider names now, ends the account the provider no longer
vouches for, and changes nothing while the provider is away or lies."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client

from accounts.directory import OIDC
from accounts.directory.oidc_sync import NO_GRANT
from accounts.directory.services import DirectoryEntry, directory_sign_in
from accounts.models import AccountState, ApiToken, DirectoryGrant
from accounts.services import token_issue
from accounts.tasks import sync_directory
from audit.models import AuditEntry
from connectors.credentials import unseal
from tests.directory.test_oidc import provider_sign_in, roles_of
from tests.fixtures.oidc_provider import ACCOUNTS, INSTALL

User = get_user_model()
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def provider_accounts(provider, **changes) -> None:
    """Change the provider's people while it runs (None removes one)."""
    config = json.loads(provider.config.read_text())
    for name, account in changes.items():
        if account is None:
            config["accounts"].pop(name, None)
        else:
            config["accounts"][name] = account
    written = provider.config.with_suffix(".next")
    written.write_text(json.dumps(config))
    written.replace(provider.config)


@pytest.fixture
def provider(oidc_directory):
    """The provider, with its people as tests/fixtures/oidc_provider.py made them."""
    config = json.loads(oidc_directory.config.read_text())
    if config["accounts"] != ACCOUNTS:
        provider_accounts(oidc_directory, **dict.fromkeys(config["accounts"]))
        provider_accounts(oidc_directory, **ACCOUNTS)
    return oidc_directory


def provider_restart(provider, timeout: float = 20) -> None:
    """Start the provider's process again after a test stopped it (its grants,
    kept in memory, are gone)."""
    started = provider.log.read_text(errors="replace").count("listening on")
    env = {**os.environ, "NODE_PATH": str(INSTALL / "node_modules")}
    with provider.log.open("ab") as log:
        provider.proc = subprocess.Popen(  # noqa: S603 - our own provider, as a child
            [shutil.which("node"), str(INSTALL / "provider.mjs"), str(provider.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + timeout
    while provider.log.read_text(errors="replace").count("listening on") == started:
        assert time.monotonic() < deadline and provider.proc.poll() is None, provider.log.read_text()
        time.sleep(0.05)


def sync() -> str:
    out = io.StringIO()
    call_command("sync_directory", stdout=out)
    return out.getvalue()


def refresh_token_of(name) -> str:
    return unseal(DirectoryGrant.objects.get(user__username=name).sealed_refresh_token)


def rows_containing(secret: str) -> list[str]:
    """Every table whose rows, as text, contain `secret`."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            name = connection.ops.quote_name(table)
            cursor.execute(f"SELECT count(*) FROM {name} AS r WHERE strpos(r::text, %s) > 0", [secret])  # noqa: S608  # nosec B608 - table names from introspection
            if cursor.fetchone()[0]:
                found.append(table)
    return found


def test_a_person_moved_out_of_secops_at_the_provider_loses_the_role_at_the_next_sync(
    browser, live_server, provider, roles, caplog
):
    caplog.set_level(logging.DEBUG)
    page, sent = provider_sign_in(browser, live_server.url, "olivia")
    query = parse_qs(urlsplit(sent[0]).query)
    assert "offline_access" in query["scope"][0].split() and query["prompt"] == ["consent"]
    olivia = User.objects.get(username="olivia")
    assert roles_of("olivia") == {"approver"}
    grant = DirectoryGrant.objects.get(user=olivia)
    assert (grant.issuer, grant.subject) == (provider.issuer, "olivia")
    assert grant.sealed_refresh_token.startswith("sealed:")
    first_token = refresh_token_of("olivia")
    api = Client(HTTP_AUTHORIZATION=f"Token {token_issue(user=olivia)}")
    assert api.get("/api/audit/").status_code == 200
    assert page.goto(f"{live_server.url}/audit/").status == 200

    # Still in secops: the grant is refreshed (and rotated), nothing else changes.
    sync()
    assert roles_of("olivia") == {"approver"}
    second_token = refresh_token_of("olivia")
    assert second_token != first_token and DirectoryGrant.objects.get(user=olivia).refreshed_at is not None

    provider_accounts(provider, olivia={**ACCOUNTS["olivia"], "groups": ["lunch-club"]})
    said = sync()
    assert "oidc: 1 accounts, 1 roles changed, 0 deactivated, 0 without grant" in said
    assert roles_of("olivia") == set()
    change = AuditEntry.objects.get(action="directory.roles_changed", object_id=str(olivia.pk), details__when="sync")
    assert change.details["roles"] == {"from": ["approver"], "to": []} and change.details["directory"] == "oidc"
    # The API token and the browser's session stop granting the role at once.
    assert api.get("/api/audit/").status_code == 403
    assert page.goto(f"{live_server.url}/audit/").status == 403
    olivia.refresh_from_db()
    assert olivia.is_active

    # The refresh tokens are nowhere in the clear: database, audit log, pages, logs, output.
    shown = page.content()
    page.context.close()
    for token in (first_token, second_token, refresh_token_of("olivia")):
        assert rows_containing(token) == []
        assert not any(token in json.dumps(e.details) for e in AuditEntry.objects.all())
        assert token not in shown and token not in caplog.text and token not in said


def test_a_person_removed_at_the_provider_is_deactivated_and_comes_back_by_signing_in(
    browser, live_server, provider, roles
):
    page, _ = provider_sign_in(browser, live_server.url, "oscar")
    oscar = User.objects.get(username="oscar")
    assert roles_of("oscar") == {"requester", "auditor"}
    key = token_issue(user=oscar)
    provider_accounts(provider, oscar=None)
    sync_directory()  # the beat task
    oscar.refresh_from_db()
    assert not oscar.is_active and roles_of("oscar") == set()
    assert AccountState.objects.get(user=oscar).directory_disabled
    assert not DirectoryGrant.objects.filter(user=oscar).exists()
    assert page.goto(f"{live_server.url}/").url.startswith(f"{live_server.url}/accounts/login/")  # session ended
    assert Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/tickets/").status_code == 401
    assert not ApiToken.objects.filter(user=oscar, revoked_at__isnull=True).exists()
    disabled = AuditEntry.objects.get(action="directory.account_disabled", object_id=str(oscar.pk))
    assert "refused its refresh grant" in disabled.details["reason"] and "invalid_grant" in disabled.details["reason"]
    change = AuditEntry.objects.get(action="directory.roles_changed", object_id=str(oscar.pk), details__when="sync")
    assert change.details["roles"] == {"from": ["auditor", "requester"], "to": []}
    page.context.close()

    provider_accounts(provider, oscar=ACCOUNTS["oscar"])
    page, _ = provider_sign_in(browser, live_server.url, "oscar")
    oscar.refresh_from_db()
    assert oscar.is_active and roles_of("oscar") == {"requester", "auditor"}
    assert DirectoryGrant.objects.filter(user=oscar).exists()
    page.context.close()


def test_an_account_without_a_grant_loses_its_roles_but_stays(provider, roles):
    entry = DirectoryEntry(kind=OIDC, directory_id="nadia", username="nadia", groups=frozenset({"secops"}))
    outcome = directory_sign_in(entry=entry, refresh_token=None)
    assert roles_of("nadia") == {"approver"} and "no refresh token" in outcome.warning
    assert AuditEntry.objects.filter(action="directory.grant_missing", details__username="nadia").exists()
    assert "1 without grant" in sync()
    nadia = User.objects.get(username="nadia")
    assert roles_of("nadia") == set() and nadia.is_active
    change = AuditEntry.objects.get(action="directory.roles_changed", object_id=str(nadia.pk), details__when="sync")
    assert change.details["roles"] == {"from": ["approver"], "to": []} and change.details["reason"] == NO_GRANT


def test_a_provider_that_lies_or_stopped_changes_nothing_and_the_run_says_so(browser, live_server, provider, roles):
    page, _ = provider_sign_in(browser, live_server.url, "olivia")
    page.context.close()
    before = refresh_token_of("olivia")
    provider_accounts(provider, olivia={**ACCOUNTS["olivia"], "groups": ["twokey-admins"]})
    provider.relay.tamper = "id_token"
    with pytest.raises(CommandError, match="Could not sync oidc.*was refused"):
        sync()
    assert roles_of("olivia") == {"approver"}
    refused = AuditEntry.objects.get(action="directory.token_refused", details__when="sync")
    assert "InvalidSignatureError" in refused.details["reason"]
    # The provider rotated the token in that answer: the new one was kept,
    # so the grant still works (a spent token would revoke it).
    assert refresh_token_of("olivia") != before
    provider.relay.tamper = None
    provider_accounts(provider, olivia=ACCOUNTS["olivia"])
    sync()
    assert roles_of("olivia") == {"approver"} and User.objects.get(username="olivia").is_active

    provider_accounts(provider, olivia={**ACCOUNTS["olivia"], "groups": []})
    provider.proc.terminate()
    provider.proc.wait(timeout=10)
    try:
        with pytest.raises(CommandError, match="Could not sync oidc.*cannot be reached"):
            sync()
        assert roles_of("olivia") == {"approver"} and User.objects.get(username="olivia").is_active
        assert DirectoryGrant.objects.filter(user__username="olivia").exists()
        failed = AuditEntry.objects.filter(action="directory.sync_failed", details__directory="oidc").latest("pk")
        assert "cannot be reached" in failed.details["reason"]
    finally:
        provider_restart(provider)

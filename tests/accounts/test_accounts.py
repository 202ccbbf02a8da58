"""Accounts: throttled sign-in, generated passwords changed at first use,
idle sessions, signing out everywhere, and no default passwords in deploy."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.management import call_command

from accounts.services import mark_password_generated
from audit.models import AuditEntry
from tests.factories import UserFactory
from tests.fixtures.workers import subprocess_database_url

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery-staple"  # the factory's
ROOT = Path(__file__).resolve().parents[2]


def sign_in(client, username, password):
    return client.post("/accounts/login/", {"username": username, "password": password})


def test_failed_sign_in_says_so_plainly_and_is_audited(client, requester):
    response = sign_in(client, "alice", "wrong")
    assert response.status_code == 200
    assert "did not match" in response.content.decode()
    entry = AuditEntry.objects.get(action="auth.login_failed")
    assert entry.actor_name == "alice" and entry.source_ip == "127.0.0.1"
    assert "wrong" not in str(entry.details)


def test_sign_in_locks_after_repeated_failures(client, requester):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "alice", "wrong")
    locked = sign_in(client, "alice", PASSWORD)
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    # Another user from the same address is not locked out.
    UserFactory(username="bert", roles=["requester"])
    assert sign_in(client, "bert", PASSWORD).status_code == 302


def test_generated_password_must_be_changed_first(client, requester):
    mark_password_generated(requester)
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/password_change/")
    assert client.get("/api/tickets/").status_code == 302
    new = "a-brand-new-long-passphrase"
    changed = client.post(
        "/accounts/password_change/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    )
    assert changed.status_code == 302
    assert client.get("/api/tickets/").status_code == 200
    entry = AuditEntry.objects.get(action="auth.password_changed", actor_name="alice")
    assert entry.details == {"changed": ["password"], "must_change_password": {"from": True, "to": False}}
    requester.refresh_from_db()
    assert new not in str(entry.details) and requester.password not in str(entry.details)


def test_sessions_expire_after_inactivity():
    assert settings.SESSION_SAVE_EVERY_REQUEST is True
    assert settings.SESSION_COOKIE_AGE == 30 * 60


def test_sign_out_everywhere_ends_every_session(client, requester):
    other = type(client)()
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    assert sign_in(other, "alice", PASSWORD).status_code == 302
    assert other.get("/api/tickets/").status_code == 200
    assert client.post("/accounts/logout-everywhere/").status_code == 302
    assert other.get("/api/tickets/").status_code == 401
    assert not Session.objects.exists()
    assert AuditEntry.objects.get(action="auth.signed_out_everywhere").details["sessions"] == 2


def deploy_check(**extra):
    env = {k: v for k, v in os.environ.items()}
    env.update({"DEBUG": "0", "TWOKEY_HTTPS": "1", "ALLOWED_HOSTS": "twokey.example.org", **extra})
    return subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db(transaction=True)
def test_deploy_check_passes_production_settings_and_fails_on_default_passwords(roles):
    url = subprocess_database_url()
    ok = deploy_check(DATABASE_URL=url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    weak = UserFactory(username="ops", roles=["auditor"])
    weak.set_password("VMware1!")
    weak.save()
    refused = deploy_check(DATABASE_URL=url)
    assert refused.returncode != 0 and "'ops' has a well-known default password" in refused.stderr
    weak.set_password("a-long-unusual-passphrase")
    weak.save()
    out = io.StringIO()
    call_command("adduser", "newbie", "--role", "requester", stdout=out)
    refused = deploy_check(DATABASE_URL=url)
    assert refused.returncode != 0 and "'newbie' still has the password bootstrap generated" in refused.stderr


def test_security_headers(client, requester):
    response = client.get("/accounts/login/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]

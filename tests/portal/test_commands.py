"""The management commands a newcomer and an operator use."""

import io
import os
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import ApiToken, token_digest
from approvals.models import CatalogueTemplate, Policy, Zone
from audit.models import AuditEntry
from connectors.models import Connector

pytestmark = pytest.mark.django_db


def run(*args, stdin=None, env=None):
    out = io.StringIO()
    saved = {}
    if env:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
    try:
        if stdin is not None:
            import sys

            real, sys.stdin = sys.stdin, io.StringIO(stdin)
            try:
                call_command(*args, stdout=out)
            finally:
                sys.stdin = real
        else:
            call_command(*args, stdout=out)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return out.getvalue()


def lab_env(vcsim):
    return {"VCSIM_URL": vcsim.url, "VCSIM_USERNAME": vcsim.username, "VCSIM_PASSWORD": vcsim.password}


def test_bootstrap_creates_roles_idempotently():
    run("bootstrap")
    run("bootstrap")
    names = set(get_user_model()._meta.get_field("groups").related_model.objects.values_list("name", flat=True))
    assert names == {"requester", "approver", "auditor", "portal_admin", "break_glass"}


def test_bootstrap_demo_prints_random_passwords_once_and_keeps_them(vcsim):
    first = run("bootstrap", "--demo", env=lab_env(vcsim))
    passwords = dict(re.findall(r"^\s+(\w+)\s+password: (\S+)", first, re.M))
    assert set(passwords) == {"requester", "approver1", "approver2", "auditor", "portaladmin", "portaladmin2"}
    assert len(set(passwords.values())) == 6 and all(len(p) >= 16 for p in passwords.values())
    User = get_user_model()
    assert User.objects.get(username="approver1").check_password(passwords["approver1"])
    second = run("bootstrap", "--demo", env=lab_env(vcsim))
    assert "password:" not in second and "exists (password unchanged)" in second
    assert User.objects.get(username="approver1").check_password(passwords["approver1"])
    lab = Connector.objects.get(name="lab")
    assert Zone.objects.filter(connector=lab).count() == 3
    assert CatalogueTemplate.objects.filter(connector=lab).count() == 3
    # One for every ticket kind and one for configuration changes.
    assert set(Policy.objects.values_list("kind", flat=True)) == {
        "vm_create",
        "vm_migrate",
        "admin_access",
        "vm_decommission",
        "vm_reconfigure",
        "vm_power",
        "vm_snapshot",
        "config_change",
    }
    assert Policy.objects.get(kind="vm_decommission").required_approvals == 2
    assert not any(p in e.details.__repr__() for e in AuditEntry.objects.all() for p in passwords.values())


def test_bootstrap_demo_without_a_lab_fails_clearly():
    with pytest.raises(CommandError, match="needs VCSIM_URL"):
        run("bootstrap", "--demo", env={"VCSIM_URL": "", "VCSIM_USERNAME": "", "VCSIM_PASSWORD": ""})


def test_adduser_prints_a_generated_password(roles):
    out = run("adduser", "frank", "--role", "requester", "--role", "auditor")
    password = re.search(r"Password \(shown once\): (\S+)", out).group(1)
    user = get_user_model().objects.get(username="frank")
    assert user.check_password(password)
    assert set(user.groups.values_list("name", flat=True)) == {"requester", "auditor"}
    with pytest.raises(CommandError, match="already exists"):
        run("adduser", "frank", "--role", "requester")


def test_adduser_reads_a_password_from_stdin_and_checks_it(roles):
    with pytest.raises(CommandError, match="Password refused"):
        run("adduser", "gina", "--role", "approver", "--password-stdin", stdin="password\n")
    assert not get_user_model().objects.filter(username="gina").exists()
    out = run("adduser", "gina", "--role", "approver", "--password-stdin", stdin="a-long-and-unusual-passphrase\n")
    assert "Password" not in out
    assert get_user_model().objects.get(username="gina").check_password("a-long-and-unusual-passphrase")


def test_apitoken_rotates_and_prints_once(requester):
    first = run("apitoken", "alice").strip()
    second = run("apitoken", "alice").strip()
    assert first != second
    live = ApiToken.objects.filter(user=requester, revoked_at__isnull=True)
    assert [t.digest for t in live] == [token_digest(second)]
    assert not ApiToken.objects.filter(digest__in=[first, second]).exists()  # never stored in the clear
    entries = AuditEntry.objects.filter(action="auth.token_issued")
    assert entries.count() == 2
    assert all(first not in str(e.details) and second not in str(e.details) for e in entries)
    with pytest.raises(CommandError, match="No user"):
        run("apitoken", "nobody")


def test_a_revoked_token_is_refused_and_its_use_audited(requester):
    key = run("apitoken", "alice").strip()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/tickets/").status_code == 200
    assert "Revoked 1 token(s)" in run("apitoken", "alice", "--revoke")
    response = client.get("/api/tickets/")
    assert response.status_code == 401 and "revoked" in response.json()["detail"]
    entry = AuditEntry.objects.get(action="auth.revoked_token_used")
    assert entry.actor_name == "alice" and key not in str(entry.details)


def test_an_unknown_token_is_refused(requester):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get("/api/tickets/").status_code == 401


def test_addconnector_checks_the_login(vcsim):
    out = run(
        "addconnector",
        "vc1",
        "--url",
        vcsim.url,
        "--username",
        vcsim.username,
        "--password-stdin",
        "--no-verify-tls",
        stdin=vcsim.password + "\n",
    )
    assert "Registered connector vc1" in out
    connector = Connector.objects.get(name="vc1")
    assert vcsim.password not in connector.password_encrypted
    assert connector.connection_config().password == vcsim.password
    with pytest.raises(CommandError, match="Cannot log in"):
        run(
            "addconnector",
            "vc2",
            "--url",
            vcsim.url,
            "--username",
            vcsim.username,
            "--password-stdin",
            "--no-verify-tls",
            stdin="wrong-password\n",
        )
    with pytest.raises(CommandError, match="Cannot log in"):
        run(
            "addconnector",
            "vc3",
            "--url",
            "https://127.0.0.1:9/sdk",
            "--username",
            "x",
            "--password-stdin",
            "--no-verify-tls",
            stdin="whatever\n",
        )
    assert not Connector.objects.filter(name__in=["vc2", "vc3"]).exists()

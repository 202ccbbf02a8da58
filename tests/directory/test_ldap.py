"""LDAP sign-in against a real OpenLDAP (tests/fixtures/slapd.py): the
sign-in form, the API, roles from groups, the background sync, disabled
people, break-glass accounts and the directory going away."""

from __future__ import annotations

import io
import time

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from accounts.models import AccountState, ApiToken
from accounts.services import token_issue
from accounts.tasks import sync_directory
from approvals.models import Ticket
from audit.models import AuditEntry
from tests.approvals.helpers import migrate_within_zone
from tests.factories import UserFactory

User = get_user_model()
pytestmark = pytest.mark.django_db


def sign_in(name, password, client=None):
    client = client or Client()
    response = client.post("/accounts/login/", {"username": name, "password": password}, follow=True)
    return client, response


def roles_of(name) -> set[str]:
    return set(User.objects.get(username=name).groups.values_list("name", flat=True))


def test_sign_in_through_the_form_then_use_an_api_token(ldap_directory, roles):
    client, response = sign_in("req", ldap_directory.password("req"))
    assert response.status_code == 200 and response.wsgi_request.user.username == "req"
    user = User.objects.get(username="req")
    state = AccountState.objects.get(user=user)
    assert (state.directory, state.directory_id) == ("ldap", "uid=req,ou=people,dc=example,dc=org")
    assert (user.email, user.first_name, user.has_usable_password()) == ("req@example.org", "Req", False)
    assert roles_of("req") == {"requester"}
    changed = AuditEntry.objects.get(action="directory.roles_changed", object_id=str(user.pk))
    assert changed.details["roles"] == {"from": [], "to": ["requester"]} and changed.details["when"] == "sign-in"
    assert AuditEntry.objects.filter(action="directory.account_created", object_id=str(user.pk)).exists()
    assert AuditEntry.objects.filter(action="auth.login", actor=user).exists()
    out = io.StringIO()
    call_command("apitoken", "req", stdout=out)
    key = out.getvalue().strip().split()[-1]
    api = Client(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/tickets/").status_code == 200
    # Signing in again changes nothing and creates nobody.
    sign_in("req", ldap_directory.password("req"))
    assert User.objects.filter(username="req").count() == 1
    assert AuditEntry.objects.filter(action="directory.roles_changed", object_id=str(user.pk)).count() == 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("req", {"requester"}),
        ("sec1", {"approver"}),
        ("aud", {"auditor"}),
        ("adm1", {"portal_admin"}),
        ("multi", {"requester", "approver", "auditor"}),
    ],
)
def test_each_role_comes_from_its_group(ldap_directory, roles, name, expected):
    _, response = sign_in(name, ldap_directory.password(name))
    assert response.wsgi_request.user.is_authenticated
    assert roles_of(name) == expected
    assert User.objects.get(username=name).is_staff == ("portal_admin" in expected)


def test_a_person_in_no_mapped_group_signs_in_with_no_role_and_is_told(ldap_directory, roles):
    client, response = sign_in("nogroup", ldap_directory.password("nogroup"))
    assert response.wsgi_request.user.username == "nogroup"
    assert roles_of("nogroup") == set()
    assert "give you no role in TwoKey" in response.content.decode()
    assert client.get("/tickets/new/").status_code == 403
    token = token_issue(user=User.objects.get(username="nogroup"))
    assert Client(HTTP_AUTHORIZATION=f"Token {token}").post("/api/tickets/", {}).status_code == 403


def test_a_forbidden_pair_of_roles_is_refused_audited_and_shown(ldap_directory, roles):
    # 'clash' is in twokey-admins (portal_admin) and secops (approver).
    _, response = sign_in("clash", ldap_directory.password("clash"))
    assert response.wsgi_request.user.username == "clash"  # signing in never crashes
    assert roles_of("clash") == set()
    page = response.content.decode()
    assert "approver, portal_admin" in page and "none of them was granted" in page
    refused = AuditEntry.objects.get(action="directory.roles_refused")
    assert refused.details["refused"] == ["approver", "portal_admin"]
    assert "portal admin cannot also hold approver" in refused.details["reason"]


def test_wrong_password_and_unknown_user_get_the_same_answer_audited_and_throttled(ldap_directory, roles, settings):
    _, wrong = sign_in("sec1", "not-the-password")
    _, unknown = sign_in("nobody-here", "whatever-it-is")
    for response in (wrong, unknown):
        assert not response.wsgi_request.user.is_authenticated
        assert "Your username and password did not match" in response.content.decode()
    assert set(AuditEntry.objects.filter(action="auth.login_failed").values_list("actor_name", flat=True)) == {
        "sec1",
        "nobody-here",
    }
    assert not User.objects.filter(username="nobody-here").exists()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in("sec2", "not-the-password")
    _, locked = sign_in("sec2", ldap_directory.password("sec2"))
    assert not locked.wsgi_request.user.is_authenticated  # throttled like a local account


def test_a_break_glass_name_is_never_taken_over_by_the_directory(ldap_directory, roles):
    call_command("adduser", "aud", "--role", "auditor", "--break-glass", stdout=io.StringIO())
    _, response = sign_in("aud", ldap_directory.password("aud"))
    assert not response.wsgi_request.user.is_authenticated
    assert "break-glass account" in response.content.decode()
    assert AccountState.objects.get(user__username="aud").directory == ""
    assert AuditEntry.objects.filter(action="directory.sign_in_refused").exists()


def test_a_local_account_neither_signs_in_nor_keeps_its_token_or_roles(ldap_directory, roles):
    local = UserFactory(username="oldlocal", roles=["approver"])
    key = token_issue(user=local)
    _, response = sign_in("oldlocal", "correct-horse-battery-staple")
    assert not response.wsgi_request.user.is_authenticated
    assert Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/tickets/").status_code == 401
    web = Client()
    web.force_login(local)  # a session from before the directory was configured
    assert web.get("/").status_code == 302
    sync_directory()
    assert roles_of("oldlocal") == set()
    assert AuditEntry.objects.filter(action="directory.roles_changed", object_id=str(local.pk)).exists()


def test_a_local_account_the_directory_knows_is_taken_over(ldap_directory, roles):
    local = UserFactory(username="aud", roles=["requester"])
    sync_directory()
    assert AccountState.objects.get(user=local).directory == "ldap"
    assert roles_of("aud") == {"auditor"}


def test_adduser_makes_only_break_glass_accounts_with_a_directory(ldap_directory, roles):
    with pytest.raises(CommandError, match="--break-glass"):
        call_command("adduser", "someone", "--role", "auditor", stdout=io.StringIO())


def test_configuration_requests_give_way_to_the_directory(ldap_directory, roles, api):
    for name in ("adm1", "adm2", "sec1"):
        sign_in(name, ldap_directory.password(name))
    admin = User.objects.get(username="adm1")
    sec1 = User.objects.get(username="sec1")
    client = api(admin)
    created = client.post(
        "/api/users/", {"username": "newbie", "roles": ["approver"], "justification": "more hands"}, format="json"
    )
    assert created.status_code == 400 and "directory" in created.content.decode()
    for change in ({"roles": ["approver", "auditor"]}, {"roles": []}, {"email": "x@example.org"}):
        response = client.patch(f"/api/users/{sec1.pk}/", {**change, "justification": "j"}, format="json")
        assert response.status_code == 400 and "directory" in response.content.decode(), change
    # The portal's own field of a directory account is still a request.
    principal = client.patch(
        f"/api/users/{sec1.pk}/", {"hypervisor_principal": "LAB\\sec1", "justification": "j"}, format="json"
    )
    assert principal.status_code == 202


@pytest.mark.django_db(transaction=True)
def test_an_approver_moved_out_of_secops_loses_the_role_at_the_next_sync_and_the_approval_stops_counting(
    ldap_directory, own_lab, workers, api
):
    for name in ("req", "sec3"):
        sign_in(name, ldap_directory.password(name))
    requester, sec3 = User.objects.get(username="req"), User.objects.get(username="sec3")
    body = {
        "kind": "vm_migrate",
        "connector": own_lab.pk,
        "justification": "rebalance",
        "params": migrate_within_zone(api(requester), own_lab),
    }
    first = api(requester).post("/api/tickets/", body, format="json").json()
    second = (
        api(requester)
        .post(
            "/api/tickets/",
            {**body, "params": migrate_within_zone(api(requester), own_lab, "dev-app-02")},
            format="json",
        )
        .json()
    )
    web = Client()
    web.force_login(sec3, backend="accounts.directory.ldap_backend.DirectoryLDAPBackend")
    sec3_api = api(sec3)
    assert sec3_api.post(f"/api/tickets/{first['id']}/approve/", {}, format="json").status_code == 200
    assert Ticket.objects.get(pk=first["id"]).state == "approved"  # queued; no worker runs yet
    ldap_directory.remove_member("secops", "sec3")
    try:
        call_command("sync_directory", stdout=io.StringIO())
        assert roles_of("sec3") == set()
        change = AuditEntry.objects.get(action="directory.roles_changed", object_id=str(sec3.pk), details__when="sync")
        assert change.details["roles"] == {"from": ["approver"], "to": []}
        # Token and session stop granting the role at once.
        # (404: without a role they no longer even see the ticket.)
        assert sec3_api.post(f"/api/tickets/{second['id']}/approve/", {}, format="json").status_code == 404
        web.post(f"/tickets/{second['id']}/approve/", {})
        assert Ticket.objects.get(pk=second["id"]).state == "pending"
        workers(1)
        deadline = time.monotonic() + 60
        while Ticket.objects.get(pk=first["id"]).state in ("approved", "running") and time.monotonic() < deadline:
            time.sleep(0.3)
        ticket = Ticket.objects.get(pk=first["id"])
        assert ticket.state == "failed" and "Only 0 of 1 approvals are still valid" in ticket.error
    finally:
        ldap_directory.add_member("secops", "sec3")


def test_a_person_disabled_in_the_directory_is_locked_out(ldap_directory, roles):
    client, response = sign_in("leaver", ldap_directory.password("leaver"))
    assert response.wsgi_request.user.is_authenticated
    leaver = User.objects.get(username="leaver")
    key = token_issue(user=leaver)
    ldap_directory.lock("leaver")
    _, again = sign_in("leaver", ldap_directory.password("leaver"))
    assert not again.wsgi_request.user.is_authenticated
    call_command("sync_directory", stdout=io.StringIO())
    leaver.refresh_from_db()
    assert not leaver.is_active and roles_of("leaver") == set()
    assert AccountState.objects.get(user=leaver).directory_disabled
    assert client.get("/").status_code == 302  # the session ended
    assert Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/tickets/").status_code == 401
    assert not ApiToken.objects.filter(user=leaver, revoked_at__isnull=True).exists()
    disabled = AuditEntry.objects.get(action="directory.account_disabled", object_id=str(leaver.pk))
    assert disabled.details["reason"] == "disabled in the directory"


def test_the_directory_stopped_mid_run(ldap_directory, roles, monkeypatch):
    sign_in("sec2", ldap_directory.password("sec2"))
    assert roles_of("sec2") == {"approver"}
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-break-glass-passphrase\n"))
    call_command(
        "adduser", "glass", "--role", "portal_admin", "--break-glass", "--password-stdin", stdout=io.StringIO()
    )
    ldap_directory.stop()
    try:
        _, down = sign_in("sec2", ldap_directory.password("sec2"))
        assert not down.wsgi_request.user.is_authenticated
        assert "The directory cannot be reached" in down.content.decode()
        glass, page = sign_in("glass", "a-long-break-glass-passphrase")
        assert page.wsgi_request.user.username == "glass"
        assert "Break-glass account" in glass.get("/").content.decode()
        assert AuditEntry.objects.filter(action="auth.break_glass_sign_in", actor__username="glass").exists()
        with pytest.raises(CommandError, match="Could not sync ldap"):
            call_command("sync_directory", stdout=io.StringIO())
        assert roles_of("sec2") == {"approver"}  # nothing changed while the directory was away
        assert AuditEntry.objects.filter(action="directory.sync_failed").exists()
    finally:
        ldap_directory.start()
    _, back = sign_in("sec2", ldap_directory.password("sec2"))
    assert back.wsgi_request.user.is_authenticated

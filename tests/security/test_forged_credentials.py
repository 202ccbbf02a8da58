"""A database writer cannot sign in, call the API or sign an approval as
someone else (accounts/bindings.py, accounts/sessions.py). Each attack is
what such a person can do alone: rows written with SQL, with a real worker
running and the hypervisor read back through a separate pyVmomi session.
Each is refused, the log says so where there was a credential to name,
the ticket stays pending and the VM stays where it was; the approver's own
credentials then carry the same ticket through."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Passkey
from accounts.passkeys import passkey_remove
from accounts.services import token_issue
from approvals.models import Approval, Ticket
from approvals.services.execution import approvals_problem
from audit.models import AuditEntry
from tests.accounts import test_password_reset as resets
from tests.accounts.test_passkeys import passkey_policy, register, sign_and_approve
from tests.approvals.helpers import configure, file_ticket, migrate_within_zone, wait_for
from tests.audit.passkey_authenticator import SoftAuthenticator
from tests.factories import UserFactory
from tests.fixtures import slapd as slapd_fixtures
from tests.fixtures.vcsim import host_of

User = get_user_model()
slapd, ldap_directory = slapd_fixtures.slapd, slapd_fixtures.ldap_directory
mailbox, ask = resets.mailbox, resets.ask
PASSWORD = "correct-horse-battery-staple"  # noqa: S105 - the test factory's password


def sql(statement: str, params=()):
    """What a database writer does, alone."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else None


def forged(credential: str, username: str) -> AuditEntry:
    return AuditEntry.objects.get(
        action="auth.credential_forged", details__credential=credential, details__username=username
    )


def signed_in(username: str) -> bool:
    page = Client().post("/accounts/login/", {"username": username, "password": PASSWORD})
    return page.wsgi_request.user.is_authenticated


def approve_with_token(key: str, ticket_id: int):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.post(f"/api/tickets/{ticket_id}/approve/", {}, format="json")


def approve_with_cookie(session_key: str, ticket_id: int):
    client = Client()
    client.cookies["sessionid"] = session_key
    return client.post(f"/api/tickets/{ticket_id}/approve/", {}, content_type="application/json")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_database_writer_cannot_approve_as_the_approver(api, own_lab, requester, approver, workers, fresh_vcsim):
    mallory = UserFactory(username="mallory", roles=["requester"])  # the writer's own account
    before = host_of(fresh_vcsim.connect(), "dev-app-01")
    workers(1)
    ticket_id = file_ticket(api(mallory), own_lab, "vm_migrate", migrate_within_zone(api(mallory), own_lab))["id"]

    # 1. A token row for the approver, with the digest of a key the writer chose.
    chosen = "chosen-by-the-database-writer-0123456789"
    sql(
        "INSERT INTO accounts_apitoken (user_id, prefix, digest, created_at, binding) VALUES (%s, %s, %s, %s, '')",
        [approver.pk, chosen[:8], hashlib.sha256(chosen.encode()).hexdigest(), timezone.now()],
    )
    assert approve_with_token(chosen, ticket_id).status_code == 401
    assert forged("api_token", "bob").details["token_prefix"] == chosen[:8]

    # 2. The writer's own, real token moved to the approver.
    own = token_issue(user=mallory, actor_name="test")
    sql("UPDATE accounts_apitoken SET user_id = %s WHERE user_id = %s", [approver.pk, mallory.pk])
    assert approve_with_token(own, ticket_id).status_code == 401
    assert AuditEntry.objects.filter(action="auth.credential_forged", details__token_prefix=own[:8]).exists()

    # 3. The writer's own password hash copied onto the approver.
    sql(
        "UPDATE auth_user SET password = (SELECT password FROM auth_user WHERE id = %s) WHERE id = %s",
        [mallory.pk, approver.pk],
    )
    assert not signed_in("bob")
    assert forged("password", "bob").details["problem"].startswith("the password hash or address in the table")

    # 4. The approver's live session, read from the session table.
    sql("UPDATE auth_user SET password = %s WHERE id = %s", [approver.password, approver.pk])  # put back
    bob = Client()
    assert bob.post("/accounts/login/", {"username": "bob", "password": PASSWORD}).wsgi_request.user == approver
    [(stored, data)] = sql("SELECT session_key, session_data FROM django_session")
    assert bob.cookies["sessionid"].value != stored  # the table holds no cookie
    assert approve_with_cookie(stored, ticket_id).status_code == 401
    # ... and its data copied under a key of the writer's choosing.
    sql(
        "INSERT INTO django_session (session_key, session_data, expire_date) VALUES (%s, %s, %s)",
        ["writersownsessionkey0123456789abcdef", data, timezone.now() + timedelta(hours=1)],
    )
    assert approve_with_cookie("writersownsessionkey0123456789abcdef", ticket_id).status_code == 401

    # Nothing was decided, nothing reached the hypervisor.
    assert not Approval.objects.filter(ticket_id=ticket_id).exists()
    assert Ticket.objects.get(pk=ticket_id).state == "pending"
    assert host_of(fresh_vcsim.connect(), "dev-app-01") == before
    # The approver's own session, which the writer could not use, approves; the worker carries it out.
    response = bob.post(f"/api/tickets/{ticket_id}/approve/", {}, content_type="application/json")
    assert response.status_code == 200, response.content
    done = wait_for(ticket_id, "succeeded", "failed")
    assert done.state == "succeeded", done.error
    assert host_of(fresh_vcsim.connect(), "dev-app-01") != before


def test_a_passkey_written_under_the_approver_signs_nothing(api, lab, requester, approver):
    passkey_policy(required=1)
    register(approver)  # the approver's own
    ticket_id = file_ticket(api(requester), lab, "vm_migrate", migrate_within_zone(api(requester), lab))["id"]
    # The writer's own authenticator, registered on their own account, then moved under the approver.
    mallory = UserFactory(username="mallory", roles=["requester"])
    writers = register(mallory, SoftAuthenticator())
    sql("UPDATE accounts_passkey SET user_id = %s WHERE user_id = %s", [approver.pk, mallory.pk])
    response, _ = sign_and_approve(api, approver, writers, ticket_id)
    assert response.status_code == 403, response.content
    assert "not registered by you through the portal" in response.json()["detail"]
    assert forged("passkey", "bob").details["credential_id"] == writers.id
    refused = AuditEntry.objects.get(action="ticket.decision_refused", ticket_id=ticket_id)
    assert "not registered by you" in refused.details["reason"]
    assert Ticket.objects.get(pk=ticket_id).state == "pending"


def test_the_worker_refuses_an_approval_whose_passkey_row_was_rewritten(api, lab, requester, approver):
    passkey_policy(required=1)
    own = register(approver)
    ticket_id = file_ticket(api(requester), lab, "vm_migrate", migrate_within_zone(api(requester), lab))["id"]
    assert sign_and_approve(api, approver, own, ticket_id)[0].status_code == 200
    ticket = Ticket.objects.get(pk=ticket_id)
    assert ticket.state == "approved" and approvals_problem(ticket) is None
    # Removed through the portal, then brought back by clearing removed_at in the table.
    passkey = passkey_remove(user=approver, passkey_id=Passkey.objects.get(user=approver).pk, second_factor=True)
    assert "was signed with a passkey that has since been removed" in approvals_problem(ticket)
    sql("UPDATE accounts_passkey SET removed_at = NULL WHERE id = %s", [passkey.pk])
    assert "was signed with a passkey whose record the portal never registered for the approver" in (
        approvals_problem(ticket)
    )


def ldap_sign_in(ldap_directory, name):
    page = Client().post("/accounts/login/", {"username": name, "password": ldap_directory.password(name)})
    return page.wsgi_request.user


def test_a_directory_identity_moved_to_another_account_signs_nobody_in(ldap_directory, roles):
    sec1 = ldap_sign_in(ldap_directory, "sec1")
    assert sec1.username == "sec1"
    victim = UserFactory(username="victim", roles=["approver"])
    # The writer moves sec1's directory identity onto the victim's account.
    [(dn,)] = sql("SELECT directory_id FROM accounts_accountstate WHERE user_id = %s", [sec1.pk])
    sql("UPDATE accounts_accountstate SET directory_id = 'moved' WHERE user_id = %s", [sec1.pk])
    sql(
        "INSERT INTO accounts_accountstate (user_id, must_change_password, hypervisor_principal, directory,"
        " directory_id, directory_disabled, break_glass, identity_binding) VALUES (%s, false, '', 'ldap', %s,"
        " false, false, '')",
        [victim.pk, dn],
    )
    assert not ldap_sign_in(ldap_directory, "sec1").is_authenticated
    entry = forged("directory_identity", "victim")
    assert entry.details["identity"] == dn
    refused = AuditEntry.objects.filter(action="directory.sign_in_refused").latest("seq")
    assert "is not bound to the account victim by the portal" in refused.details["reason"]
    assert json.dumps(entry.details).count(ldap_directory.password("sec1")) == 0


def test_an_account_renamed_or_cleared_in_the_table_is_not_taken_over_by_the_directory(ldap_directory, roles):
    """The directory takes over a local account by its name. The writer `req`
    (a requester in the directory) clears the way for their own sign-in to
    land on the approver sec1's account: their identity row deleted, their
    account renamed away, sec1's renamed `req`; then sec1's identity row
    cleared too. Each time the log shows the account bound as sec1, so
    neither the sign-in nor the sync takes it over."""
    sec1, req = ldap_sign_in(ldap_directory, "sec1"), ldap_sign_in(ldap_directory, "req")
    table = User._meta.db_table
    sql("DELETE FROM accounts_accountstate WHERE user_id = %s", [req.pk])
    sql(f"UPDATE {table} SET username = 'req-old' WHERE id = %s", [req.pk])  # noqa: S608 - the model's table
    sql(f"UPDATE {table} SET username = 'req' WHERE id = %s", [sec1.pk])  # noqa: S608 - the model's table
    [(sec1_dn,)] = sql("SELECT directory_id FROM accounts_accountstate WHERE user_id = %s", [sec1.pk])

    assert not ldap_sign_in(ldap_directory, "req").is_authenticated
    renamed = forged("directory_identity", "req")
    assert renamed.object_id == str(sec1.pk)
    assert renamed.details["problem"] == "the account bound as sec1 was renamed outside the portal"
    refused = AuditEntry.objects.filter(action="directory.sign_in_refused").latest("seq")
    assert "is not bound to the account req by the portal" in refused.details["reason"]
    assert sql("SELECT directory_id FROM accounts_accountstate WHERE user_id = %s", [sec1.pk]) == [(sec1_dn,)]

    sql(
        "UPDATE accounts_accountstate SET directory = '', directory_id = '', identity_binding = '' WHERE user_id = %s",
        [sec1.pk],
    )
    assert not ldap_sign_in(ldap_directory, "req").is_authenticated
    call_command("sync_directory", stdout=io.StringIO())  # the sync looks the account up by its name as well
    cleared = AuditEntry.objects.filter(action="auth.credential_forged", object_id=str(sec1.pk)).order_by("seq")
    assert [e.details["problem"] for e in cleared][1:] == [
        "the account's directory identity was removed outside the portal"
    ] * 2
    # Never bound to req's identity, never given req's roles: as a local
    # account beside a directory, the sync took the roles it had.
    assert sql("SELECT directory_id FROM accounts_accountstate WHERE user_id = %s", [sec1.pk]) == [("",)]
    assert not User.objects.get(pk=sec1.pk).groups.exists()
    after = AuditEntry.objects.filter(action__startswith="directory.", object_id=str(sec1.pk), seq__gt=renamed.seq)
    assert [(e.action, e.details["directory"], e.details["roles"]) for e in after] == [
        ("directory.roles_changed", "local", {"from": ["approver"], "to": []})
    ]


@pytest.mark.django_db
def test_bind_credentials_carries_the_bindings_over_a_new_secret_key(settings, api):
    gina = UserFactory(username="gina", roles=["requester"])
    key = token_issue(user=gina, actor_name="test")
    old = settings.SECRET_KEY
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a-new-secret-key-" + "x" * 50, [old]
    assert signed_in("gina")  # the old key still binds, as a fallback
    with pytest.raises(CommandError, match="No such user: nobody"):
        call_command("bind_credentials", "--user", "nobody", stdout=io.StringIO())
    out = io.StringIO()
    call_command("bind_credentials", "--all", stdout=out)
    assert "gina: api_token, password" in out.getvalue()
    entry = AuditEntry.objects.get(action="config.user.credentials_bound", object_id=str(gina.pk))
    assert entry.details == {"username": "gina", "credentials": ["api_token", "password"]}
    assert key not in json.dumps(entry.details)
    settings.SECRET_KEY_FALLBACKS = []
    assert signed_in("gina")
    assert APIClient(HTTP_AUTHORIZATION=f"Token {key}").get("/api/tickets/").status_code == 200
    again = io.StringIO()
    call_command("bind_credentials", "--all", stdout=again)
    assert "Bound the credentials of 0 of" in again.getvalue()


def test_a_reset_to_an_address_written_in_the_table_is_not_mailed(client, approver, mailbox):
    sql("UPDATE auth_user SET email = 'writer@evil.invalid' WHERE id = %s", [approver.pk])
    response = ask(client, "writer@evil.invalid")
    assert response.status_code == 302  # the same answer as for any address
    assert mailbox.deliveries == []
    entry = forged("password", "bob")
    assert "not mailed" in entry.details["problem"]
    asked = AuditEntry.objects.get(action="auth.password_reset_requested")
    assert asked.details["accounts"] == []
    assert not signed_in("bob")  # nor does the changed address sign in


def test_an_address_changed_by_a_request_keeps_the_password_bound(api, approver, portal_admin, portal_admin2):
    done = configure(api(portal_admin), api(portal_admin2), f"/api/users/{approver.pk}/", {"email": "bob@new.invalid"})
    assert done.state == "succeeded", done.error
    assert signed_in("bob")

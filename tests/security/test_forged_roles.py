"""Who grants the roles: the worker believes role membership only from the
audit log. A database writer who adds a user row of their own to the
approver group, or gives themselves break_glass, is refused by a real
worker: the ticket fails with a finding and an audit entry, and the
hypervisor (read back through a separate pyVmomi session) is unchanged.
Every path that grants roles (a configuration request, adduser, the
directory's sync at sign-in) writes the entry the worker believes."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client

from approvals.models import Policy, Ticket
from approvals.services import memberships
from audit.models import AuditEntry, Finding, FindingKind
from audit.writer import record
from tests.approvals.helpers import body, configure, file_ticket, migrate_within_zone, wait_for
from tests.audit.conftest import tamper
from tests.factories import UserFactory
from tests.fixtures import slapd as slapd_fixtures
from tests.fixtures.vcsim import host_of

User = get_user_model()
slapd, ldap_directory = slapd_fixtures.slapd, slapd_fixtures.ldap_directory


def sql_grant(user, group):
    """What a database writer does, alone: a membership row, no request."""
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO auth_user_groups (user_id, group_id) VALUES (%s, %s)", [user.pk, group.pk])


def assert_refused(ticket_id, words):
    done = wait_for(ticket_id, "succeeded", "failed")
    assert done.state == "failed", done.error
    assert "Role memberships do not verify" in done.error and words in done.error, done.error
    refused = AuditEntry.objects.get(ticket_id=ticket_id, action="ticket.records_unverified")
    assert "role membership not in the audit log" in refused.details["problem"]
    assert Finding.objects.filter(kind=FindingKind.RECORDS_UNVERIFIED, object_ref=f"ticket:{ticket_id}:records")
    assert not AuditEntry.objects.filter(ticket_id=ticket_id, action__startswith="hypervisor.").exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_counts_roles_only_as_the_audit_log_gives_them(
    api, own_lab, roles, requester, approver, portal_admin, portal_admin2, workers, fresh_vcsim
):
    """One worker, three attacks by a database writer, then the same worker
    carrying out a ticket whose approver a request made one."""
    admins = api(portal_admin), api(portal_admin2)
    mallory = UserFactory(username="mallory", roles=["requester"])
    second = UserFactory(username="mallory-too", roles=[])  # a row of the DBA's own
    sql_grant(second, roles["approver"])
    assert configure(*admins, f"/api/users/{approver.pk}/", {"roles": ["auditor"]}).state == "succeeded"
    sql_grant(approver, roles["approver"])  # taken away by a request, put back with SQL
    sql_grant(mallory, roles["break_glass"])
    newcomer = UserFactory(username="newcomer", roles=[])
    assert configure(*admins, f"/api/users/{newcomer.pk}/", {"roles": ["approver"]}).state == "succeeded"
    before = host_of(fresh_vcsim.connect(), "dev-app-01")
    workers(1)

    def approved_by(filer, decider):
        ticket = file_ticket(api(filer), own_lab, "vm_migrate", migrate_within_zone(api(filer), own_lab))
        response = api(decider).post(f"/api/tickets/{ticket['id']}/approve/", {}, format="json")
        assert response.status_code == 200, response.content  # the web reads the rows ...
        return ticket["id"]

    # ... the worker does not.
    assert_refused(approved_by(mallory, second), "no audit entry ever gave mallory-too a role")
    removed = AuditEntry.objects.get(action="config.user.update", object_id=str(approver.pk))
    assert_refused(approved_by(requester, approver), f"audit entry #{removed.seq} left bob with: auditor")
    emergency = {"emergency": True, "emergency_reason": "says who"}
    params = migrate_within_zone(api(mallory), own_lab)
    response = api(mallory).post("/api/tickets/", body(own_lab, "vm_migrate", params, **emergency), format="json")
    assert response.status_code == 201 and response.json()["state"] == "approved", response.content
    assert_refused(response.json()["id"], "mallory holds break_glass in the database")
    assert host_of(fresh_vcsim.connect(), "dev-app-01") == before

    done = wait_for(approved_by(requester, newcomer), "succeeded", "failed")
    assert done.state == "succeeded", done.error
    assert host_of(fresh_vcsim.connect(), "dev-app-01") != before


def test_adduser_writes_the_roles_it_grants(roles):
    call_command("adduser", "gina", "--role", "approver", "--role", "requester", stdout=io.StringIO())
    gina = User.objects.get(username="gina")
    entry = AuditEntry.objects.get(action="config.user.created", object_id=str(gina.pk))
    assert entry.details["role_groups"] == {"approver": roles["approver"].pk, "requester": roles["requester"].pk}
    assert memberships.logged_roles(gina) == {"approver", "requester"}


def test_the_directory_sign_in_writes_the_roles_it_syncs(ldap_directory, roles):
    Client().post("/accounts/login/", {"username": "sec1", "password": ldap_directory.password("sec1")})
    sec1 = User.objects.get(username="sec1")
    assert memberships.logged_roles(sec1) == {"approver"}
    sql_grant(sec1, roles["requester"])  # the database now says more than the log
    assert memberships.logged_roles(sec1) == {"approver"}
    # The next sign-in puts the database back to what the directory grants.
    Client().post("/accounts/login/", {"username": "sec1", "password": ldap_directory.password("sec1")})
    assert set(sec1.groups.values_list("name", flat=True)) == {"approver"}
    assert memberships.logged_roles(sec1) == {"approver"}


def test_a_role_entry_changed_in_the_table_makes_the_log_unreadable_for_roles(roles):
    gina = UserFactory(username="gina", roles=["requester"])
    memberships.forget()
    entry = AuditEntry.objects.get(action="config.user.created", object_id=str(gina.pk))
    grown = {**entry.details, "role_groups": {**entry.details["role_groups"], "approver": roles["approver"].pk}}
    tamper("UPDATE audit_auditentry SET details = %s WHERE seq = %s", [json.dumps(grown), entry.seq])
    assert memberships.logged_roles(gina) is None
    problem, _ = memberships.read_roles()
    assert f"audit entry #{entry.seq} (config.user.created) does not verify" in problem


def test_attest_roles_adopts_memberships_the_shell_vouches_for(roles):
    legacy = UserFactory(username="legacy", roles=[])
    sql_grant(legacy, roles["approver"])  # e.g. granted before the worker read roles from the log
    assert memberships.logged_roles(legacy) is None
    with pytest.raises(CommandError, match="No such user: nobody"):
        call_command("attest_roles", "--user", "nobody", stdout=io.StringIO())
    out = io.StringIO()
    call_command("attest_roles", "--all", stdout=out)
    assert "legacy: approver" in out.getvalue()
    assert memberships.logged_roles(legacy) == {"approver"}
    again = io.StringIO()
    call_command("attest_roles", "--all", stdout=again)
    assert "Attested 0 of" in again.getvalue()


@pytest.mark.parametrize("span", [memberships.SMALL_SPAN, 3], ids=["read-whole", "counted"])
def test_an_entry_deleted_after_the_last_reading_makes_the_log_unreadable_for_roles(roles, monkeypatch, span):
    monkeypatch.setattr(memberships, "SMALL_SPAN", span)
    gina = UserFactory(username="gina", roles=["approver"])
    assert memberships.logged_roles(gina) == {"approver"}
    entries = [record("test.event", actor_name="test", details={"i": i}) for i in range(5)]
    taken = UserFactory(username="hal", roles=["requester"])
    tamper("DELETE FROM audit_auditentry WHERE seq = %s", [entries[2].seq])
    assert memberships.logged_roles(taken) is None
    problem, _ = memberships.read_roles()
    assert problem.startswith("entries between #") and problem.endswith("are missing")


def test_a_standard_change_by_a_requester_made_with_sql_is_refused(api, lab, roles, portal_admin, portal_admin2):
    policy = Policy.objects.get(kind="vm_migrate", zone=None)
    done = configure(
        api(portal_admin), api(portal_admin2), f"/api/policies/{policy.pk}/", {"standard_scope": {"zone": "dev"}}
    )
    assert done.state == "succeeded", done.error
    lone = UserFactory(username="lone", roles=[])
    sql_grant(lone, roles["requester"])  # no approver needed for a standard change: one row would do
    ticket = file_ticket(api(lone), lab, "vm_migrate", migrate_within_zone(api(lone), lab))
    assert ticket["state"] == "approved" and ticket["is_standard"] is True  # the web reads the row ...
    problem = memberships.forged_roles_problem(Ticket.objects.get(pk=ticket["id"]), [])  # ... the worker's check
    assert problem == "lone holds requester in the database, but no audit entry ever gave lone a role"


def test_no_request_about_a_person_whose_roles_were_written_with_sql(api, roles, requester, portal_admin):
    sql_grant(requester, roles["approver"])  # so that an innocent-looking request would log it as granted
    response = api(portal_admin).patch(
        f"/api/users/{requester.pk}/", {"email": "alice@new.invalid", "justification": "new address"}, format="json"
    )
    assert response.status_code == 400, response.content
    [words] = response.json()["roles"]
    assert "alice holds approver, requester in the database, but the audit log gives them requester" in words
    assert not Ticket.objects.filter(kind="config_change").exists()

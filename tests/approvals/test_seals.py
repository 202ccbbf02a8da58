"""Sealed decisions: rows written into the database without SEAL_KEY never
make the worker act. The attacks are carried out with SQL, as a database
writer would, against a real worker and vcsim; the hypervisor is read back
through a separate pyVmomi session."""

import pytest
from django.db import connection
from django.test import override_settings
from pyVmomi import vim

from approvals import seals
from approvals.models import Approval, Ticket
from audit.models import AuditEntry, Finding
from tests.approvals.helpers import ADMIN_ACCESS, VM_CREATE, file_ticket, migrate_within_zone, wait_for
from tests.fixtures.vcsim import host_of

pytestmark = pytest.mark.django_db(transaction=True)


def forge_approval(ticket_id, approver, content_hash, seal=""):
    """What a database writer without the key can do: insert a decision row
    (with any seal it can find) and set the ticket approved."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO approvals_approval (ticket_id, approver_id, decision, comment, content_hash, created_at, seal)"
            " VALUES (%s, %s, 'approve', '', %s, now(), %s)",
            [ticket_id, approver.pk, content_hash, seal],
        )
        cursor.execute("UPDATE approvals_ticket SET state = 'approved', queued_at = NULL WHERE id = %s", [ticket_id])


@pytest.mark.worker
def test_forged_approval_rows_make_the_ticket_fail_and_nothing_moves(
    api, own_lab, fresh_vcsim, requester, approver, workers
):
    check = fresh_vcsim.connect()
    params = migrate_within_zone(api(requester), own_lab)
    ticket = file_ticket(api(requester), own_lab, "vm_migrate", params)
    before = host_of(check, "dev-app-01")
    forge_approval(ticket["id"], approver, ticket["content_hash"])
    workers(1)  # its beat's sweeper queues the "approved" ticket
    done = wait_for(ticket["id"], "failed", "succeeded")
    assert done.state == "failed"
    assert done.error.startswith("Approval records do not verify")
    assert host_of(check, "dev-app-01") == before
    finding = Finding.objects.get(kind="records_unverified")
    assert finding.object_ref == f"ticket:{ticket['id']}:records" and finding.connector_id == own_lab.pk
    assert AuditEntry.objects.filter(ticket_id=ticket["id"], action="ticket.records_unverified").exists()
    assert not AuditEntry.objects.filter(ticket_id=ticket["id"], action="hypervisor.operation").exists()


def test_a_seal_copied_from_another_decision_does_not_count(api, lab, requester, approver, approver2):
    from approvals.services import ticket_approve
    from approvals.services.execution import approvals_problem

    first = file_ticket(api(requester), lab, "vm_migrate", migrate_within_zone(api(requester), lab))
    ticket_approve(ticket_id=first["id"], approver=approver)
    stolen = Approval.objects.get(ticket_id=first["id"]).seal
    second = file_ticket(api(requester), lab, "vm_create", VM_CREATE)
    forge_approval(second["id"], approver, second["content_hash"], seal=stolen)
    problem = approvals_problem(Ticket.objects.get(pk=second["id"]))
    assert problem and problem.startswith("Approval records do not verify")


def test_terms_lowered_in_the_database_void_the_submission(api, lab, requester, approver):
    from approvals.services import ticket_approve
    from approvals.services.execution import approvals_problem

    ticket = file_ticket(api(requester), lab, "admin_access", ADMIN_ACCESS)
    assert ticket["required_approvals"] == 2
    ticket_approve(ticket_id=ticket["id"], approver=approver)
    Ticket.objects.filter(pk=ticket["id"]).update(required_approvals=1, state="approved")
    problem = approvals_problem(Ticket.objects.get(pk=ticket["id"]))
    assert "submission" in problem and "no valid seal" in problem


def test_a_valid_record_set_verifies(api, lab, requester, approver):
    from approvals.services import ticket_approve
    from approvals.services.execution import approvals_problem

    ticket = file_ticket(api(requester), lab, "vm_migrate", migrate_within_zone(api(requester), lab))
    ticket_approve(ticket_id=ticket["id"], approver=approver)
    assert approvals_problem(Ticket.objects.get(pk=ticket["id"])) is None


def test_rotation_keeps_old_seals_verifying_and_seals_new_ones_with_the_new_key(settings):
    from datetime import UTC, datetime

    fields = {
        "ticket_id": 1,
        "content_hash": "c" * 64,
        "terms": {"required_approvals": 2},
        "person_id": 7,
        "decision": "approve",
        "at": datetime(2026, 12, 1, tzinfo=UTC),
    }
    old_key, new_key = "a" * 60, "b" * 60
    with override_settings(SEAL_KEY=old_key, SEAL_OLD_KEYS=[]):
        sealed = seals.make(**fields)
        assert seals.verifies(sealed, **fields)
        assert not seals.verifies(sealed, **{**fields, "person_id": 8})
    with override_settings(SEAL_KEY=new_key, SEAL_OLD_KEYS=[old_key]):
        assert seals.verifies(sealed, **fields)  # decided before the rotation: still counts
        assert seals.make(**fields).startswith(seals.key_id(new_key) + ":")
    with override_settings(SEAL_KEY=new_key, SEAL_OLD_KEYS=[]):
        assert not seals.verifies(sealed, **fields)


def _permissions_of(si, entity_name, principal):
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.ManagedEntity], True)
    entity = next(e for e in view.view if e.name == entity_name)
    view.Destroy()
    perms = content.authorizationManager.RetrieveEntityPermissions(entity=entity, inherited=False)
    return [p for p in perms if p.principal.lower() == principal.lower()]


def _granted_then_revoked(api, lab, requester, approver, approver2):
    from approvals.services import access_revoke, ticket_approve
    from approvals.services.execution import access_expire, ticket_execute

    ticket = file_ticket(api(requester), lab, "admin_access", ADMIN_ACCESS)
    for user in (approver, approver2):
        ticket_approve(ticket_id=ticket["id"], approver=user)
    assert ticket_execute(ticket_id=ticket["id"], worker="w1") == "succeeded"
    access_revoke(ticket_id=ticket["id"], user=requester)
    assert access_expire(ticket_id=ticket["id"], actor_name="w1") == "revoked"
    return ticket["id"]


def test_a_finished_ticket_set_back_to_approved_is_not_replayed(
    api, own_lab, fresh_vcsim, requester, approver, approver2
):
    from approvals.services.execution import ticket_execute

    check = fresh_vcsim.connect()
    ticket_id = _granted_then_revoked(api, own_lab, requester, approver, approver2)
    assert _permissions_of(check, "prod-web-01", ADMIN_ACCESS["principal"]) == []
    # The database writer's replay: the seals still verify, the state says approved.
    Ticket.objects.filter(pk=ticket_id).update(state="approved", access_expires_at=None)
    assert ticket_execute(ticket_id=ticket_id, worker="w2") == "re-check failed"
    done = Ticket.objects.get(pk=ticket_id)
    assert done.state == "failed" and "history does not verify" in done.error
    assert "revoked" in done.error  # the log says where the ticket really was
    assert _permissions_of(check, "prod-web-01", ADMIN_ACCESS["principal"]) == []
    assert Finding.objects.filter(kind="records_unverified", object_ref=f"ticket:{ticket_id}:records").exists()


def test_a_replay_with_the_tickets_last_entries_deleted_is_caught_by_the_chain(
    api, own_lab, fresh_vcsim, requester, approver, approver2
):
    from approvals.services.execution import ticket_execute

    check = fresh_vcsim.connect()
    ticket_id = _granted_then_revoked(api, own_lab, requester, approver, approver2)
    later = (
        AuditEntry.objects.filter(ticket_id=ticket_id, action="ticket.succeeded").values_list("seq", flat=True).get()
    )
    # As the table owner: drop the entries that show the ticket ran, and set it back.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER USER")
        cursor.execute("DELETE FROM audit_auditentry WHERE ticket_id = %s AND seq >= %s", [ticket_id, later])
        cursor.execute("ALTER TABLE audit_auditentry ENABLE TRIGGER USER")
    Ticket.objects.filter(pk=ticket_id).update(state="approved", access_expires_at=None)
    assert ticket_execute(ticket_id=ticket_id, worker="w2") == "re-check failed"
    done = Ticket.objects.get(pk=ticket_id)
    assert done.state == "failed" and "history does not verify" in done.error
    assert _permissions_of(check, "prod-web-01", ADMIN_ACCESS["principal"]) == []


def test_entries_deleted_below_what_the_worker_already_verified_are_still_caught(
    api, own_lab, fresh_vcsim, requester, approver, approver2
):
    """The worker verifies only what was appended since it last looked; the
    ticket's history it learnt from entries already verified stays with it."""
    from approvals.services.execution import ticket_execute
    from approvals.services.history import history_problem

    check = fresh_vcsim.connect()
    ticket_id = _granted_then_revoked(api, own_lab, requester, approver, approver2)
    # This process walks the log past the ticket's last entry (any check does;
    # a revoked ticket's history is as the log says).
    assert history_problem(Ticket.objects.get(pk=ticket_id)) is None
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER USER")
        cursor.execute(
            "DELETE FROM audit_auditentry WHERE ticket_id = %s AND action IN ('ticket.claimed', 'ticket.running', "
            "'ticket.succeeded', 'ticket.revoked') ",
            [ticket_id],
        )
        cursor.execute("ALTER TABLE audit_auditentry ENABLE TRIGGER USER")
    Ticket.objects.filter(pk=ticket_id).update(state="approved", access_expires_at=None)
    assert ticket_execute(ticket_id=ticket_id, worker="w2") == "re-check failed"
    done = Ticket.objects.get(pk=ticket_id)
    assert done.state == "failed" and "history does not verify" in done.error
    assert _permissions_of(check, "prod-web-01", ADMIN_ACCESS["principal"]) == []


def test_a_replay_through_a_forged_running_state_is_caught(api, own_lab, fresh_vcsim, requester, approver, approver2):
    """The sweeper queues a "running" ticket whose lease ran out and whose
    worker never called the hypervisor; the log then says it went from
    running to approved, though it never was running after its revocation."""
    from django.utils import timezone

    from approvals.services import sweeper
    from approvals.services.execution import PHASE_CHECKING, ticket_execute

    check = fresh_vcsim.connect()
    ticket_id = _granted_then_revoked(api, own_lab, requester, approver, approver2)
    Ticket.objects.filter(pk=ticket_id).update(
        state="running",
        progress=PHASE_CHECKING,
        lease_owner="gone",
        lease_expires_at=timezone.now(),
        access_expires_at=None,
    )
    sweeper.take_back_leases()
    ticket_execute(ticket_id=ticket_id, worker="w2")
    done = Ticket.objects.get(pk=ticket_id)
    assert done.state == "failed" and "history does not verify" in done.error, (done.state, done.error)
    assert "from running although it was revoked" in done.error
    assert _permissions_of(check, "prod-web-01", ADMIN_ACCESS["principal"]) == []

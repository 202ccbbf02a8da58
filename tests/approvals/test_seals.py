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

pytestmark = pytest.mark.django_db(transaction=True)


def host_of(si, name):
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        return next(vm.runtime.host.name for vm in view.view if vm.name == name)
    finally:
        view.Destroy()


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

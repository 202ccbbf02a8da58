"""A decommission and a snapshot whose workers die inside the hypervisor call
end succeeded, with one effect each: the sweeper settles them by identity
(the VM's instance UUID gone; a snapshot carrying the ticket's operation
UUID), never by calling again. Real workers, killed with SIGKILL; vcsim holds
each call long enough for the kill to land inside it."""

import time

import pytest

from approvals.models import Ticket
from approvals.services import execution
from audit.models import AuditEntry
from tests.approvals.helpers import file_ticket, wait_for
from tests.approvals.test_vm_kinds_end_to_end import find_vm, walk
from tests.conftest import register_lab
from tests.fixtures.vcsim import recent_tasks, start_vcsim

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Short leases, so the sweeper takes the tickets back within seconds.
QUICK_LEASES = {
    "EXECUTION_LEASE_SECONDS": "4",
    "EXECUTION_LEASE_RENEW_SECONDS": "1",
    "GUEST_SHUTDOWN_TIMEOUT_SECONDS": "5",
}


def approve(api, ticket, *approvers):
    for user in approvers:
        assert api(user).post(f"/api/tickets/{ticket['id']}/approve/", {}, format="json").status_code == 200


def test_decommission_and_snapshot_killed_mid_call_are_settled_once(
    api, db, roles, requester, approver, approver2, workers
):
    slow = start_vcsim(method_delay="Destroy_Task=3000,CreateSnapshot_Task=3000")
    try:
        lab = register_lab(slow, name="slow-lab")
        check = slow.connect()
        uuid = find_vm(check, "dev-app-02").config.instanceUuid
        first, second = workers(2, beat=False, env=QUICK_LEASES)  # one ticket each
        gone = file_ticket(api(requester), lab, "vm_decommission", {"vm": "dev-app-02"})
        snap = file_ticket(
            api(requester), lab, "vm_snapshot", {"vm": "prod-db-01", "action": "create", "snapshot": "pre"}
        )
        approve(api, gone, approver, approver2)
        approve(api, snap, approver)
        deadline = time.monotonic() + 30
        while set(Ticket.objects.filter(pk__in=[gone["id"], snap["id"]]).values_list("progress", flat=True)) != {
            execution.PHASE_CALLING
        }:
            assert time.monotonic() < deadline, first.output() + second.output()
            time.sleep(0.05)
        time.sleep(1)
        first.kill()
        second.kill()
        assert set(Ticket.objects.filter(pk__in=[gone["id"], snap["id"]]).values_list("state", flat=True)) == {
            "running"
        }
        workers(1, env=QUICK_LEASES)  # with beat: the sweeper takes both back once their leases run out
        for ticket in (gone, snap):
            done = wait_for(ticket["id"], "succeeded", "failed", timeout=60)
            assert done.state == "succeeded", done.error
            assert AuditEntry.objects.get(ticket_id=ticket["id"], action="ticket.succeeded").actor_name == "sweeper"
            assert AuditEntry.objects.filter(ticket_id=ticket["id"], action="ticket.running").count() == 1
        assert check.content.searchIndex.FindByUuid(None, uuid, True, True) is None
        db_vm = find_vm(check, "prod-db-01")
        [taken] = list(walk(db_vm.snapshot.rootSnapshotList))
        assert taken.name == "pre" and str(Ticket.objects.get(pk=snap["id"]).operation_uuid) in taken.description
        assert len(recent_tasks(check, "createSnapshot", db_vm._moId)) == 1
        assert len(recent_tasks(check, "destroy")) == 1
    finally:
        slow.close()

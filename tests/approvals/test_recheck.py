"""What the worker checks before it acts, and how the sweeper settles a
running ticket whose worker vanished. The services run in this process
against real vcsim; no worker is needed to exercise these decisions."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from approvals.models import Policy, Ticket
from approvals.services import execution, sweeper
from approvals.services.transitions import transition
from audit.models import AuditEntry
from tests.approvals.helpers import DEV_TO_PROD, VM_CREATE, file_ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def approved(api, own_lab, requester, approver, approver2):
    def make(kind="vm_create", params=None, **extra):
        ticket = file_ticket(api(requester), own_lab, kind, params or VM_CREATE, **extra)
        for user in [approver, approver2][: ticket["required_approvals"]]:
            api(user).post(f"/api/tickets/{ticket['id']}/approve/", {}, format="json")
        stored = Ticket.objects.get(pk=ticket["id"])
        assert stored.state == "approved"
        return stored

    return make


def vm_names(connector):
    return {vm.name for vm in execution.backend_for(Ticket(connector=connector)).inventory().vms}


def test_an_approver_who_left_the_group_no_longer_counts(approved, approver, own_lab):
    ticket = approved()
    approver.groups.clear()
    assert execution.ticket_execute(ticket_id=ticket.pk, worker="t") == "re-check failed"
    ticket.refresh_from_db()
    assert ticket.state == "failed" and "Only 0 of 1 approvals" in ticket.error
    assert VM_CREATE["name"] not in vm_names(own_lab)


def test_content_changed_after_approval_is_refused(approved, own_lab):
    ticket = approved()
    Ticket.objects.filter(pk=ticket.pk).update(params={**ticket.params, "cpus": 8})
    execution.ticket_execute(ticket_id=ticket.pk, worker="t")
    ticket.refresh_from_db()
    assert ticket.state == "failed" and "no longer matches" in ticket.error
    assert VM_CREATE["name"] not in vm_names(own_lab)


def test_zone_rules_are_checked_again_against_the_live_inventory(approved, own_lab):
    ticket = approved("vm_migrate", DEV_TO_PROD)
    policy = Policy.objects.get(kind="vm_migrate", zone=None)
    policy.allowed_zone_pairs = []
    policy.save()
    execution.ticket_execute(ticket_id=ticket.pk, worker="t")
    ticket.refresh_from_db()
    assert ticket.state == "failed"
    assert "No policy allows migration from zone dev to zone prod" in ticket.error


def test_a_window_not_yet_open_waits_without_a_worker(approved):
    ticket = approved(not_before=(timezone.now() + timedelta(hours=1)).isoformat())
    assert execution.ticket_execute(ticket_id=ticket.pk, worker="t") == "waiting for the change window"
    assert Ticket.objects.get(pk=ticket.pk).state == "approved"
    assert sweeper.requeue_unclaimed() == 0  # not before the window opens
    # Approved an hour ago; the window opened a second ago.
    Ticket.objects.filter(pk=ticket.pk).update(
        queued_at=timezone.now() - timedelta(hours=1), not_before=timezone.now() - timedelta(seconds=1)
    )
    assert sweeper.requeue_unclaimed() == 1


def test_a_closed_window_expires_the_ticket(approved):
    ticket = approved(not_after=(timezone.now() + timedelta(seconds=30)).isoformat())
    Ticket.objects.filter(pk=ticket.pk).update(not_after=timezone.now() - timedelta(seconds=1))
    assert execution.ticket_execute(ticket_id=ticket.pk, worker="t") == "expired"
    assert Ticket.objects.get(pk=ticket.pk).state == "expired"


def test_expired_lease_before_the_hypervisor_call_is_queued_again(approved):
    ticket = approved()
    # A worker claimed it (through the one gate, so the log says so) and died while re-checking.
    transition(
        ticket,
        "running",
        actor_name="gone",
        progress=execution.PHASE_CHECKING,
        lease_owner="gone",
        lease_expires_at=timezone.now(),
    )
    assert sweeper.take_back_leases() == 1
    ticket.refresh_from_db()
    assert ticket.state == "approved" and ticket.lease_owner == ""
    assert execution.ticket_execute(ticket_id=ticket.pk, worker="t2") == "succeeded"


def test_expired_lease_during_the_call_with_nothing_done_needs_an_operator(approved, own_lab):
    ticket = approved()
    Ticket.objects.filter(pk=ticket.pk).update(
        state="running", progress=execution.PHASE_CALLING, lease_owner="gone", lease_expires_at=timezone.now()
    )
    sweeper.take_back_leases()
    ticket.refresh_from_db()
    assert ticket.state == "failed" and ticket.error.startswith("Needs an operator")
    assert VM_CREATE["name"] not in vm_names(own_lab)


def test_expired_lease_with_the_change_made_is_succeeded(approved, own_lab):
    ticket = approved()
    backend = execution.backend_for(ticket)
    execution.perform(ticket, backend, on_task=None)  # the worker did it, then died
    Ticket.objects.filter(pk=ticket.pk).update(
        state="running", progress=execution.PHASE_CALLING, lease_owner="gone", lease_expires_at=timezone.now()
    )
    sweeper.take_back_leases()
    ticket.refresh_from_db()
    assert ticket.state == "succeeded"
    assert AuditEntry.objects.filter(ticket=ticket, action="ticket.succeeded").get().actor_name == "sweeper"


def test_only_one_sweeper_acts_at_a_time():
    cache.add(sweeper.LOCK_KEY, "someone else", timeout=30)
    assert sweeper.sweep() == {"skipped": 1}
    cache.delete(sweeper.LOCK_KEY)
    assert "requeued" in sweeper.sweep()

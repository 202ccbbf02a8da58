import itertools

import pytest

from approvals.choices import ALLOWED_TRANSITIONS, FINAL_STATES, TicketState
from approvals.errors import StateConflict
from approvals.models import Ticket
from approvals.services.transitions import transition
from audit.models import AuditEntry

EXPECTED = {
    ("pending", "approved"),
    ("pending", "rejected"),
    ("pending", "cancelled"),
    ("pending", "expired"),
    ("approved", "running"),
    ("approved", "cancelled"),
    ("approved", "expired"),
    ("approved", "failed"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "expired"),
    ("running", "approved"),
    ("succeeded", "revoked"),
}


def test_transition_table_is_exactly_the_designed_one():
    allowed = {(s, t) for s, targets in ALLOWED_TRANSITIONS.items() for t in targets}
    assert allowed == EXPECTED
    assert FINAL_STATES == {"failed", "rejected", "cancelled", "expired", "revoked"}


@pytest.fixture
def make_ticket(lab, requester, roles):
    from tests.approvals.helpers import VM_CREATE

    def make(state):
        ticket = Ticket.objects.create(
            kind="vm_create",
            connector=lab,
            requester=requester,
            justification="x",
            params=dict(VM_CREATE, name=f"t-{state}"),
            content_hash="0" * 64,
            required_approvals=1,
            approver_group=roles["approver"],
            pending_expires_at="2100-01-01T00:00:00Z",
            state=state,
        )
        return ticket

    return make


@pytest.mark.django_db
@pytest.mark.parametrize("source,target", list(itertools.product(TicketState.values, TicketState.values)))
def test_every_pair_of_states(make_ticket, source, target):
    ticket = make_ticket(source)
    before = AuditEntry.objects.count()
    if (source, target) in EXPECTED:
        transition(ticket, target, actor_name="test")
        assert Ticket.objects.get(pk=ticket.pk).state == target
        entry = AuditEntry.objects.get(seq=AuditEntry.objects.order_by("-seq").first().seq)
        assert entry.action == f"ticket.{target}" and entry.details["from"] == source
    else:
        with pytest.raises(StateConflict):
            transition(ticket, target, actor_name="test")
        assert Ticket.objects.get(pk=ticket.pk).state == source
        assert AuditEntry.objects.count() == before


@pytest.mark.django_db
def test_compare_and_set_refuses_a_stale_ticket(make_ticket):
    ticket = make_ticket("approved")
    stale = Ticket.objects.get(pk=ticket.pk)
    transition(ticket, "running", actor_name="worker-1")
    with pytest.raises(StateConflict):
        transition(stale, "running", actor_name="worker-2")
    assert AuditEntry.objects.filter(action="ticket.running").count() == 1

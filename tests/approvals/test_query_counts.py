"""The ticket list and detail cost the same number of queries with 10 or 500
tickets (and their approvals and audit entries)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from approvals.models import Approval, Ticket
from audit.writer import record
from tests.approvals.helpers import VM_CREATE
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def add_tickets(lab, requester, approvers, group, count):
    start = Ticket.objects.count()
    tickets = Ticket.objects.bulk_create(
        Ticket(
            kind="vm_create",
            connector=lab,
            requester=requester,
            justification="bulk",
            params={**VM_CREATE, "name": f"bulk-{start + i}"},
            content_hash="0" * 64,
            required_approvals=2,
            approver_group=group,
            pending_expires_at=timezone.now(),
        )
        for i in range(count)
    )
    Approval.objects.bulk_create(
        Approval(ticket=t, approver=a, decision="approve", content_hash="0" * 64) for t in tickets for a in approvers
    )
    for t in tickets[:20]:
        record("ticket.submitted", actor=requester, ticket=t, obj=t)
    return tickets


def queries(client, url):
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_list_and_detail_query_counts_do_not_grow(api, lab, requester, approver, approver2, roles):
    client = api(approver)
    client.get("/api/tickets/")  # the token's first use is recorded once; measure after it
    first = add_tickets(lab, requester, [approver, approver2], roles["approver"], 10)
    small = (queries(client, "/api/tickets/"), queries(client, f"/api/tickets/{first[0].pk}/"))
    add_tickets(lab, requester, [approver, approver2], roles["approver"], 490)
    UserFactory.create_batch(5, roles=["requester"])
    large = (queries(client, "/api/tickets/"), queries(client, f"/api/tickets/{first[0].pk}/"))
    assert small == large
    assert large[0] <= 8 and large[1] <= 8

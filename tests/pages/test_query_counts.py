"""Each page costs the same number of SQL queries with little data or much
more (tickets, approvals, audit entries, findings, users)."""

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import Finding
from audit.writer import record
from tests.approvals.test_query_counts import add_tickets
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def grow(lab, requester, approvers, group, tickets):
    add_tickets(lab, requester, approvers, group, tickets)
    now = timezone.now()
    start = Finding.objects.count()
    Finding.objects.bulk_create(
        Finding(
            connector=lab,
            kind="vm_unexplained",
            object_ref=f"vm:{start + i}",
            observed={"name": f"x{i}"},
            expected={},
            first_seen=now,
            last_seen=now,
        )
        for i in range(tickets)
    )
    for i in range(tickets):
        record("test.entry", actor_name="pages", object_type="test", object_id=str(i))
    UserFactory.create_batch(3, roles=["requester"])


def count_queries(client, url, status=200) -> int:
    # With nothing cached: the dashboard's counts are then read too.
    cache.clear()
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == status, url
    return len(ctx.captured_queries)


def test_page_query_counts_do_not_grow_with_the_data(page, lab, requester, approver, approver2, auditor, roles):
    group = roles["approver"]
    # Two approvals of three needed: tickets stay pending and in the queue.
    grow(lab, requester, [approver2], group, 10)
    from approvals.models import Ticket

    Ticket.objects.update(required_approvals=3)
    first = Ticket.objects.order_by("id").first()
    views = {
        "requester dashboard": (requester, "/"),
        "approver dashboard": (approver, "/"),
        "auditor dashboard": (auditor, "/"),
        "ticket list": (approver, "/tickets/"),
        "filtered ticket list": (approver, "/tickets/?state=pending&kind=vm_create&requester=alice"),
        "own ticket list": (requester, "/tickets/"),
        "ticket detail": (approver, f"/tickets/{first.pk}/"),
        "live part": (requester, f"/tickets/{first.pk}/live/?shown=approved"),
        "audit log": (auditor, "/audit/"),
        "audit log of a ticket": (auditor, f"/audit/?ticket={first.ref}"),
        "findings": (approver, "/findings/"),
    }
    clients = {user: page(user) for user, _ in views.values()}
    small = {name: count_queries(clients[user], url) for name, (user, url) in views.items()}
    grow(lab, requester, [approver2], group, 120)
    Ticket.objects.update(required_approvals=3)
    for _ in range(5):
        record("ticket.approval", actor=approver2, ticket=first, obj=first)
    large = {name: count_queries(clients[user], url) for name, (user, url) in views.items()}
    assert small == large
    # Beyond what any signed-in page costs (session, user, roles, account
    # checks: measured on the not-found page), a handful for the page itself.
    overhead = count_queries(clients[approver], "/no-such-page/", status=404)
    assert max(large.values()) - overhead <= 6, (overhead, large)

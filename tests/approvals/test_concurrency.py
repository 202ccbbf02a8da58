"""Ten approvers press approve at the same moment, each on their own
PostgreSQL connection: one transition to approved, one execution queued."""

import json
import threading

import pytest
import redis
from django.conf import settings
from django.db import connection

from approvals.errors import StateConflict
from approvals.models import Approval, Ticket
from approvals.services import ticket_approve
from audit.models import AuditEntry
from tests.approvals.helpers import ADMIN_ACCESS, file_ticket
from tests.factories import UserFactory


def queued_executions(client, ticket_id):
    """Execution messages waiting in the broker's default queue for this ticket."""
    found = 0
    for raw in client.lrange("celery", 0, -1):
        message = json.loads(raw)
        if (
            message["headers"]["task"] == "approvals.tasks.execute_ticket"
            and message["headers"]["argsrepr"] == f"({ticket_id},)"
        ):
            found += 1
    return found


@pytest.mark.django_db(transaction=True)
def test_ten_simultaneous_approvals_move_the_ticket_once(api, lab, requester):
    assert connection.vendor == "postgresql"
    approvers = [UserFactory(roles=["approver"]) for _ in range(10)]
    ticket = file_ticket(api(requester), lab, "admin_access", ADMIN_ACCESS)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    before = queued_executions(broker, ticket["id"])
    barrier = threading.Barrier(len(approvers))
    outcomes = []

    def press(user):
        try:
            barrier.wait()
            ticket_approve(ticket_id=ticket["id"], approver=user)
            outcomes.append("ok")
        except StateConflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=press, args=(user,)) for user in approvers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["conflict"] * 8 + ["ok"] * 2
    assert Ticket.objects.get(pk=ticket["id"]).state == "approved"
    assert Approval.objects.filter(ticket_id=ticket["id"]).count() == 2
    assert AuditEntry.objects.filter(ticket_id=ticket["id"], action="ticket.approved").count() == 1
    assert queued_executions(broker, ticket["id"]) - before == 1

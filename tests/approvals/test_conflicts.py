"""Two open tickets that change the same object (by identity) are marked
as conflicting on both pages and in the API, and the second does not start
while the first runs. Real PostgreSQL, Redis, Celery worker and vcsim."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from approvals.models import Ticket
from approvals.services.execution import PHASE_CHECKING
from approvals.services.transitions import transition
from audit.models import AuditEntry
from tests.approvals.helpers import ADMIN_ACCESS, file_ticket, migrate_within_zone, wait_for
from tests.approvals.test_freezes import granted, wait_for_progress
from tests.conftest import register_lab
from tests.fixtures.vcsim import VcsimProcess

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def module_vcsim():
    with VcsimProcess() as lab:
        yield lab


def approve(api, ticket, *users):
    for user in users:
        assert api(user).post(f"/api/tickets/{ticket['id']}/approve/", {}, format="json").status_code == 200


def test_conflicting_tickets_are_marked_and_the_second_waits_while_the_first_runs(
    api, module_vcsim, roles, requester, approver, approver2, workers
):
    lab = register_lab(module_vcsim, name="conflicts")
    first = file_ticket(api(requester), lab, "vm_migrate", migrate_within_zone(api(requester), lab, "dev-app-01"))
    access = {**ADMIN_ACCESS, "principal": "LAB\\conflict", "entity": "dev-app-01"}
    second = file_ticket(api(requester), lab, "admin_access", access)
    elsewhere = file_ticket(api(requester), lab, "admin_access", {**ADMIN_ACCESS, "principal": "LAB\\other"})
    # Both pages and the API name the other ticket; an unrelated one names none.
    reads = {t["id"]: api(approver).get(f"/api/tickets/{t['id']}/").json() for t in (first, second, elsewhere)}
    assert [c["ref"] for c in reads[first["id"]]["conflicts"]] == [second["ref"]]
    assert [c["ref"] for c in reads[second["id"]]["conflicts"]] == [first["ref"]]
    assert reads[elsewhere["id"]]["conflicts"] == []
    page = Client()
    page.force_login(approver)
    for mine, other in ((first, second), (second, first)):
        text = page.get(f"/tickets/{mine['id']}/").text
        assert "Conflicting tickets" in text and f'/tickets/{other["id"]}/">{other["ref"]}</a>' in text
    # The first runs, claimed by a worker that is slow to finish (claimed here:
    # vcsim answers a migration too fast to watch the second wait).
    approve(api, first, approver)
    ticket = Ticket.objects.get(pk=first["id"])
    transition(
        ticket,
        "running",
        actor_name="slow-worker",
        lease_owner="slow-worker",
        lease_expires_at=timezone.now() + timedelta(hours=1),
        started_at=timezone.now(),
        progress=PHASE_CHECKING,
        attempts=1,
    )
    workers(1, env={"CONFLICT_RETRY_SECONDS": "1"})
    approve(api, second, approver, approver2)
    held = wait_for_progress(second["id"], f"waiting for {first['ref']}")
    assert held.state == "approved"
    assert api(approver).get(f"/api/tickets/{second['id']}/").json()["held"].startswith(f"waiting for {first['ref']}")
    check = module_vcsim.connect()
    assert granted(check, "dev-app-01", "LAB\\conflict") == []
    # The slow worker's lease runs out: the sweeper takes the first back, a worker runs it, then the second.
    Ticket.objects.filter(pk=first["id"]).update(lease_expires_at=timezone.now())
    done_first = wait_for(first["id"], "succeeded", "failed")
    done_second = wait_for(second["id"], "succeeded", "failed")
    assert done_first.state == "succeeded", done_first.error
    assert done_second.state == "succeeded", done_second.error
    assert done_second.started_at >= done_first.finished_at
    assert len(granted(check, "dev-app-01", "LAB\\conflict")) == 1
    [entry] = AuditEntry.objects.filter(ticket_id=second["id"], action="ticket.held")
    assert entry.details["conflict"] == first["ref"]
    # A finished ticket conflicts with nothing.
    assert api(approver).get(f"/api/tickets/{first['id']}/").json()["conflicts"] == []

"""Break-glass: a break_glass holder's emergency runs at once with no
approvals (a real worker, vcsim read back through a separate pyvmomi
session), every approver and auditor is mailed at once (the worker's mail,
written to files), the post-review is by others, and an emergency not
reviewed in time becomes a finding, a dashboard banner and a reminder."""

import time
from datetime import timedelta
from email import message_from_string
from pathlib import Path

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from approvals.models import Ticket
from approvals.services import emergencies
from audit.models import AuditEntry, Finding, FindingKind
from tests.approvals.helpers import ADMIN_ACCESS, body, migrate_within_zone, wait_for
from tests.factories import UserFactory
from tests.fixtures.vcsim import host_of

EMERGENCY = {"emergency": True, "emergency_reason": "prod database host failing; move the VM off it now"}


@pytest.fixture
def breaker(roles):
    return UserFactory(username="frank", roles=["requester", "break_glass"])


def file_emergency(client, lab, kind, params, **extra):
    return client.post("/api/tickets/", body(lab, kind, params, **EMERGENCY, **extra), format="json")


def mails_in(folder: Path) -> list:
    return [message_from_string(p.read_text()) for p in sorted(folder.glob("*.log"))]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_break_glass_runs_at_once_and_tells_every_approver_and_auditor(
    api, own_lab, breaker, approver, approver2, auditor, workers, fresh_vcsim, tmp_path
):
    outbox = tmp_path / "mail"
    outbox.mkdir()
    workers(
        1,
        env={"EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend", "EMAIL_FILE_PATH": str(outbox)},
    )
    params = migrate_within_zone(api(breaker), own_lab)
    response = file_emergency(api(breaker), own_lab, "vm_migrate", params)
    assert response.status_code == 201, response.content
    ticket = response.json()
    assert ticket["state"] == "approved" and ticket["is_emergency"] is True and ticket["approvals"] == []
    done = wait_for(ticket["id"], "succeeded", "failed")
    assert done.state == "succeeded", done.error
    assert host_of(fresh_vcsim.connect(), "dev-app-01") == params["target_host"]
    filed = AuditEntry.objects.get(ticket_id=ticket["id"], action="ticket.approved")
    assert filed.details["emergency"] is True and filed.actor_name == "frank"

    deadline = timezone.now() + timedelta(seconds=20)
    while timezone.now() < deadline and not any("EMERGENCY" in m["Subject"] for m in mails_in(outbox)):
        time.sleep(0.2)
    [told] = [m for m in mails_in(outbox) if "EMERGENCY" in m["Subject"]]
    assert sorted(a.strip() for a in told["To"].split(",")) == sorted(u.email for u in (approver, approver2, auditor))
    assert "move the VM off it now" in told.get_payload()

    # The review: never the requester, then the policy's number of approvers.
    own = api(breaker).post(f"/api/tickets/{ticket['id']}/review/", {"comment": "fine"}, format="json")
    assert own.status_code == 403
    assert AuditEntry.objects.filter(ticket_id=ticket["id"], action="ticket.decision_refused").exists()
    assert (
        api(auditor).post(f"/api/tickets/{ticket['id']}/review/", {"comment": "ok"}, format="json").status_code == 403
    )
    reviewed = api(approver).post(f"/api/tickets/{ticket['id']}/review/", {"comment": "justified"}, format="json")
    assert reviewed.status_code == 200, reviewed.content
    assert reviewed.json()["emergency"]["reviews_given"] == 1
    assert Ticket.objects.get(pk=ticket["id"]).reviewed_at is not None  # vm_migrate: one approval by policy
    assert AuditEntry.objects.filter(ticket_id=ticket["id"], action="ticket.emergency_reviewed").exists()


def test_only_break_glass_holders_file_emergencies(api, lab, requester):
    response = file_emergency(api(requester), lab, "vm_migrate", migrate_within_zone(api(requester), lab))
    assert response.status_code == 403
    assert not Ticket.objects.exists()
    refused = AuditEntry.objects.get(action="ticket.emergency_refused")
    assert refused.actor_name == requester.get_username()


def test_an_emergency_needs_a_reason_and_caps_access(api, lab, breaker):
    client = api(breaker)
    no_reason = client.post(
        "/api/tickets/", body(lab, "admin_access", ADMIN_ACCESS, emergency=True, emergency_reason=" "), format="json"
    )
    assert no_reason.status_code == 400 and "emergency_reason" in no_reason.json()
    too_long = file_emergency(client, lab, "admin_access", {**ADMIN_ACCESS, "duration_minutes": 61})
    assert too_long.status_code == 400 and "at most 60 minutes" in str(too_long.json())
    assert not Ticket.objects.exists()
    capped = file_emergency(client, lab, "admin_access", {**ADMIN_ACCESS, "duration_minutes": 60})
    assert capped.status_code == 201 and capped.json()["state"] == "approved"


def test_break_glass_never_goes_with_portal_admin_or_auditor(api, roles, portal_admin, portal_admin2):
    from approvals.config.users import role_conflict

    assert role_conflict(["portal_admin", "break_glass"])
    assert role_conflict(["auditor", "break_glass"])
    assert role_conflict(["requester", "approver", "break_glass"]) is None
    from django.db import IntegrityError, transaction

    user = UserFactory(roles=["auditor"])
    with pytest.raises(IntegrityError), transaction.atomic():
        user.groups.add(roles["break_glass"])  # the database refuses it too


def test_unreviewed_emergency_becomes_a_finding_a_banner_and_a_daily_reminder(
    api, lab, breaker, approver, auditor, settings
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.EMERGENCY_REVIEW_SECONDS = 0  # due at once
    ticket = file_emergency(api(breaker), lab, "vm_migrate", migrate_within_zone(api(breaker), lab)).json()
    assert emergencies.flag_overdue() == 1
    finding = Finding.objects.get(kind=FindingKind.EMERGENCY_UNREVIEWED)
    assert finding.observed["ticket"] == ticket["ref"] and finding.acknowledged_at is None
    [reminder] = mail.outbox
    assert "not reviewed in time" in reminder.subject and set(reminder.to) == {approver.email, auditor.email}
    # Again, and the daily reminder straight after: nothing new.
    assert emergencies.flag_overdue() == 0 and emergencies.remind_overdue() == 0 and len(mail.outbox) == 1
    for user in (approver, auditor):
        web = Client()
        web.force_login(user)
        page = web.get("/").content.decode()
        assert "EMERGENCY changes not reviewed in time" in page and ticket["ref"] in page
    web = Client()
    web.force_login(breaker)
    assert "not reviewed in time" not in web.get("/").content.decode()
    # A day later the reminder goes out again.
    Ticket.objects.filter(pk=ticket["id"]).update(review_reminded_at=timezone.now() - timedelta(days=1))
    assert emergencies.remind_overdue() == 1 and len(mail.outbox) == 2
    audit = web.get("/audit/")  # the requester reads no audit log
    assert audit.status_code in (302, 403)
    # Rows of the audit log of an emergency's ticket are marked, also those that do not say so themselves.
    from audit.writer import record

    # As the worker's entries (hypervisor.operation, ticket.succeeded) do not say so themselves.
    record("hypervisor.operation", actor_name="worker", ticket=Ticket.objects.get(pk=ticket["id"]), details={})
    web.force_login(auditor)
    log = web.get("/audit/").content.decode()
    marked = [row for row in log.split("<tr>") if ticket["ref"] in row]
    assert any("hypervisor.operation" in row for row in marked)
    assert len(marked) >= 4 and all("EMERGENCY" in row for row in marked)


def test_an_emergency_flag_written_in_the_database_is_refused(api, lab, requester, vcsim):
    from approvals.services.execution import ticket_execute
    from tests.approvals.helpers import file_ticket

    params = migrate_within_zone(api(requester), lab)
    before = host_of(vcsim.connect(), "dev-app-01")
    ticket = file_ticket(api(requester), lab, "vm_migrate", params)
    # A DBA makes an ordinary pending ticket an approved emergency.
    Ticket.objects.filter(pk=ticket["id"]).update(
        is_emergency=True, emergency_reason="forged", review_due_at=timezone.now(), state="approved"
    )
    assert ticket_execute(ticket_id=ticket["id"], worker="test-worker") == "re-check failed"
    failed = Ticket.objects.get(pk=ticket["id"])
    assert failed.state == "failed" and "do not verify" in failed.error
    assert host_of(vcsim.connect(), "dev-app-01") == before
    assert AuditEntry.objects.filter(ticket_id=ticket["id"], action="ticket.records_unverified").exists()


def test_the_page_files_an_emergency_for_break_glass_holders_only(api, lab, breaker, requester):
    inventory = api(breaker).get(f"/api/connectors/{lab.pk}/inventory/").json()
    params = migrate_within_zone(api(breaker), lab)
    form = {
        "connector": lab.pk,
        "vm": next(vm["id"] for vm in inventory["vms"] if vm["name"] == params["vm"]),
        "target_host": next(h["id"] for h in inventory["hosts"] if h["name"] == params["target_host"]),
        "justification": "host failing",
        "emergency": "on",
        "emergency_reason": "",
    }
    web = Client()
    web.force_login(breaker)
    url = f"/tickets/new/vm_migrate/?connector={lab.pk}"
    assert "Emergency (break-glass)" in web.get(url).content.decode()
    no_reason = web.post(url, form)
    assert no_reason.status_code == 400 and not Ticket.objects.exists()
    filed = web.post(url, {**form, "emergency_reason": "disk controller dying"})
    assert filed.status_code == 302
    ticket = Ticket.objects.get()
    assert ticket.is_emergency and ticket.state == "approved"
    page = web.get(f"/tickets/{ticket.pk}/").content.decode()
    assert "EMERGENCY" in page and "disk controller dying" in page
    web.force_login(requester)
    assert "Emergency (break-glass)" not in web.get(url).content.decode()

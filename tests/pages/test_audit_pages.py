"""The audit log and findings pages: who may read them, filters, paging by
sequence number, the chain status and acknowledging findings."""

import csv
import io

import pytest
from django.core.cache import cache
from django.utils import timezone

from audit.models import AuditEntry, ChainHead, Finding
from audit.writer import record
from tests.pages.helpers import MIGRATE_WITHIN_DEV, submit

pytestmark = pytest.mark.django_db


def make_finding(connector, object_ref="vm:1234", **fields):
    now = timezone.now()
    return Finding.objects.create(
        connector=connector,
        kind="vm_unexplained",
        object_ref=object_ref,
        observed={"name": "rogue-01", "host": "prod-esx-01"},
        expected={},
        first_seen=now,
        last_seen=now,
        **fields,
    )


def test_only_auditors_and_approvers_open_the_audit_pages(page, requester, approver, auditor, portal_admin):
    for user in (requester, portal_admin):
        for url in ("/audit/", "/audit/chain/", "/findings/"):
            response = page(user).get(url)
            assert response.status_code == 403, (user, url)
            assert "Only auditors and approvers read" in response.content.decode()
    for user in (approver, auditor):
        for url in ("/audit/", "/findings/"):
            assert page(user).get(url).status_code == 200


def test_audit_log_filters_by_ticket_reference(page, lab, requester, requester2, auditor):
    mine = submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV)
    other = submit(requester2, lab, "vm_migrate", {"vm": "dev-app-02", "target_host": "dev-esx-01"})
    html = page(auditor).get("/audit/", {"ticket": mine.ref}).content.decode()
    rows = html.split("<tbody>")[1]
    assert mine.ref in rows and other.ref not in rows and "auth.login" not in rows
    # The export buttons carry the same filters to the export.
    assert f"/api/audit/export/?format=csv&amp;ticket={mine.ref}" in html
    bad = page(auditor).get("/audit/", {"ticket": "yesterday"}).content.decode()
    assert "Give a ticket id (42) or reference (CHG-000042)." in bad and "Export CSV" not in bad


def test_audit_export_link_downloads_the_filtered_csv(page, lab, requester, auditor):
    ticket = submit(requester, lab, "vm_migrate", MIGRATE_WITHIN_DEV)
    response = page(auditor).get("/api/audit/export/", {"format": "csv", "ticket": ticket.ref})
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["action"] for row in rows] == ["ticket.submitted"]


def test_audit_log_pages_by_sequence_number(page, auditor):
    for i in range(60):
        record("test.entry", actor_name="pages", object_type="test", object_id=str(i))
    client = page(auditor)
    first = client.get("/audit/", {"action": "test.entry"})
    entries = first.context["entries"]
    assert len(entries) == 50 and entries[0].object_id == "59"
    older = client.get("/audit/", {"action": "test.entry", "before": entries[-1].seq})
    assert [e.object_id for e in older.context["entries"]] == [str(i) for i in range(9, -1, -1)]
    assert older.context["older_query"] is None and older.context["newest_query"] == "action=test.entry"


def test_chain_status_shows_verified_then_where_it_breaks(page, auditor):
    record("test.entry", actor_name="pages")
    client = page(auditor)
    assert "Chain verified" in client.get("/audit/chain/").content.decode()
    # An entry forged around the writer (inserts are all the triggers allow).
    head = ChainHead.objects.get()
    AuditEntry.objects.create(
        seq=head.seq + 1,
        created_at=timezone.now(),
        actor_name="mallory",
        action="ticket.approval",
        prev_hash=head.hash,
        hash="0" * 64,
    )
    # The page shows the last check until asked again (a full check reads every entry).
    assert "Chain verified" in client.get("/audit/chain/").content.decode()
    html = client.get("/audit/chain/", {"again": "1"}).content.decode()
    assert f"Chain broken at entry {head.seq + 1}" in html
    cache.clear()
    assert f"Chain broken at entry {head.seq + 1}" in client.get("/audit/chain/").content.decode()


def test_findings_are_acknowledged_by_approvers_with_a_comment(page, lab, approver, auditor):
    finding = make_finding(lab)
    reader = page(auditor).get("/findings/").content.decode()
    assert "rogue-01" in reader and 'name="comment"' not in reader
    refused = page(auditor).post(f"/findings/{finding.pk}/acknowledge/", {"comment": "ok"}, follow=True)
    assert "Only approvers acknowledge findings." in refused.content.decode()
    client = page(approver)
    assert 'name="comment"' in client.get("/findings/").content.decode()
    empty = client.post(f"/findings/{finding.pk}/acknowledge/", {"comment": " "}, follow=True).content.decode()
    assert "Say why this finding is acceptable" in empty
    assert Finding.objects.get().acknowledged_at is None
    done = client.post(f"/findings/{finding.pk}/acknowledge/", {"comment": "Test VM, deleted."}, follow=True)
    assert f"Finding {finding.pk} acknowledged." in done.content.decode()
    assert "rogue-01" not in done.content.decode().split("<h1>")[1]  # gone from the open list
    acknowledged = client.get("/findings/", {"state": "acknowledged"}).content.decode()
    assert "Acknowledged by bob" in acknowledged and "Test VM, deleted." in acknowledged
    assert client.post("/findings/999999/acknowledge/", {"comment": "x"}).status_code == 404


def test_auditor_dashboard_lists_open_findings(page, lab, auditor):
    make_finding(lab)
    html = page(auditor).get("/").content.decode()
    assert "Open findings (1)" in html and "rogue-01" in html


def test_one_chain_check_at_a_time(page, auditor):
    from audit.views import CHAIN_CHECK_LOCK

    cache.add(CHAIN_CHECK_LOCK, True, 60)  # another request is checking
    html = page(auditor).get("/audit/chain/").content.decode()
    assert "another check is running" in html and 'hx-trigger="load delay:3s"' in html
    cache.delete(CHAIN_CHECK_LOCK)
    assert "Chain verified" in page(auditor).get("/audit/chain/").content.decode()
    assert cache.get(CHAIN_CHECK_LOCK) is None

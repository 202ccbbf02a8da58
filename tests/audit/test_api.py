"""The audit log through the API: auditors and approvers list it with
filters, verify it and export it; the export verifies offline."""

import csv
import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from audit.models import AuditEntry
from audit.verify_export import verify_file
from tests.approvals.helpers import VM_CREATE, file_ticket
from tests.audit.conftest import tamper

pytestmark = pytest.mark.django_db

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ticket(api, lab, requester, approver):
    """A vm_create ticket filed and approved: entries about it among others."""
    filed = file_ticket(api(requester), lab, "vm_create", {**VM_CREATE, "name": "audit-api-01"})
    response = api(approver).post(f"/api/tickets/{filed['id']}/approve/", {"comment": "fine"}, format="json")
    assert response.status_code == 200
    return filed


def all_pages(client, url):
    """Every entry the list gives, following the cursor links."""
    seqs = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        seqs += [entry["seq"] for entry in body["results"]]
        url = body["next"]
    return seqs


def test_requesters_and_portal_admins_get_403(api, requester, portal_admin):
    for user in (requester, portal_admin):
        for path in ("/api/audit/", "/api/audit/verify/", "/api/audit/export/", "/api/findings/"):
            assert api(user).get(path).status_code == 403


def test_auditor_lists_everything_about_a_ticket(api, auditor, ticket):
    client = api(auditor)
    by_ref = client.get(f"/api/audit/?ticket={ticket['ref']}").json()["results"]
    by_id = client.get(f"/api/audit/?ticket={ticket['id']}").json()["results"]
    assert by_ref == by_id
    assert [e["action"] for e in reversed(by_ref)] == ["ticket.submitted", "ticket.approval", "ticket.approved"]
    approval = by_ref[1]
    assert approval["actor"] == "bob" and approval["details"]["comment"] == "fine"
    assert approval["ticket_ref"] == ticket["ref"] and len(approval["hash"]) == 64
    expected = set(AuditEntry.objects.filter(ticket_id=ticket["id"]).values_list("seq", flat=True))
    assert {e["seq"] for e in by_ref} == expected


def test_filters(api, auditor, ticket, requester):
    client = api(auditor)

    def seqs(query):
        response = client.get(f"/api/audit/?{query}")
        assert response.status_code == 200, response.content
        return [e["seq"] for e in response.json()["results"]]

    entries = AuditEntry.objects.all()
    assert seqs("actor=alice") == list(entries.filter(actor_name="alice").values_list("seq", flat=True))
    assert seqs("action=ticket.approval") == list(
        entries.filter(action="ticket.approval").values_list("seq", flat=True)
    )
    assert seqs("action=ticket.") == list(entries.filter(action__startswith="ticket.").values_list("seq", flat=True))
    assert seqs("action=config.*") == list(entries.filter(action__startswith="config.").values_list("seq", flat=True))
    assert seqs(f"object_type=approvals.ticket&object_id={ticket['id']}") == list(
        entries.filter(object_type="approvals.ticket", object_id=str(ticket["id"])).values_list("seq", flat=True)
    )
    assert seqs("actor=alice&action=ticket.submitted") == list(
        entries.filter(actor_name="alice", action="ticket.submitted").values_list("seq", flat=True)
    )
    assert seqs("ticket=CHG-999999") == []


def test_time_filters(api, auditor, entries):
    client = api(auditor)  # issuing its token is audited: before the entries
    early = entries(3)
    middle = timezone.now()
    late = entries(2)

    def seqs(**params):
        return [e["seq"] for e in client.get("/api/audit/", params).json()["results"]]

    assert seqs(since=middle.isoformat()) == [e.seq for e in reversed(late)]
    assert seqs(until=middle.isoformat()) == [e.seq for e in reversed(early)] + list(
        AuditEntry.objects.filter(seq__lt=early[0].seq).values_list("seq", flat=True)
    )
    future = timezone.now() + timedelta(days=1)
    assert seqs(since=future.isoformat()) == []
    assert len(seqs(until=future.isoformat())) == AuditEntry.objects.count()
    assert seqs(since=middle.isoformat(), until=future.isoformat(), actor="tester0") == [
        e.seq for e in reversed(late) if e.actor_name == "tester0"
    ]


def test_bad_filters_are_400_with_field_errors(api, auditor):
    response = api(auditor).get("/api/audit/?ticket=ticket-7&since=yesterday")
    assert response.status_code == 400
    assert set(response.json()) == {"ticket", "since"}


def test_pages_follow_the_cursor_newest_first(api, auditor, entries):
    entries(7)
    client = api(auditor)
    first = client.get("/api/audit/?page_size=3").json()
    assert len(first["results"]) == 3 and first["next"]
    seqs = all_pages(client, "/api/audit/?page_size=3")
    assert seqs == sorted(AuditEntry.objects.values_list("seq", flat=True), reverse=True)


def test_verify_endpoint(api, approver, auditor, entries):
    entries(5)
    for user in (approver, auditor):
        assert api(user).get("/api/audit/verify/").json() == {
            "ok": True,
            "checked": AuditEntry.objects.count(),
            "first_broken": None,
            "reason": "",
            "witness": "not configured",
            "witnessed_seq": None,
            "witnessed_at": None,
        }
    tamper("DELETE FROM audit_auditentry WHERE seq = 3")
    report = api(auditor).get("/api/audit/verify/").json()
    assert (report["ok"], report["first_broken"]) == (False, 4)


def export(client, query="format=csv"):
    response = client.get(f"/api/audit/export/?{query}")
    assert response.status_code == 200, response.content
    assert response.streaming
    return b"".join(response.streaming_content).decode(), response


def test_csv_export_has_every_hashed_field_and_verifies_offline(api, auditor, ticket, tmp_path):
    text, response = export(api(auditor))
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(text)))
    exported_seqs = [int(r["seq"]) for r in rows]
    # The export itself is audited, after the entries it contains were read.
    assert AuditEntry.objects.filter(action="audit.exported", actor_name="erin").exists()
    assert exported_seqs == sorted(exported_seqs) and exported_seqs[0] == 1
    assert set(rows[0]) >= {
        "seq",
        "created_at",
        "actor_id",
        "actor_name",
        "action",
        "ticket_id",
        "ticket_ref",
        "object_type",
        "object_id",
        "source_ip",
        "details",
        "prev_hash",
        "hash",
    }
    path = tmp_path / "audit.csv"
    path.write_text(text)
    assert verify_file(path, key=settings.AUDIT_HMAC_KEY, subset=False)[0]
    ok, message = verify_file(path, key=None, subset=False)
    assert ok and "NOT checked" in message


def test_json_export_verifies_offline(api, approver, ticket, tmp_path):
    text, response = export(api(approver), "format=json")
    assert response["Content-Type"] == "application/json"
    entries = json.loads(text)
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    path = tmp_path / "audit.json"
    path.write_text(text)
    ok, message = verify_file(path, key=settings.AUDIT_HMAC_KEY, subset=False)
    assert ok, message


def test_a_filtered_export_is_everything_about_the_ticket(api, auditor, requester, ticket, entries, tmp_path):
    entries(2)
    assert api(requester).post(f"/api/tickets/{ticket['id']}/cancel/").status_code == 200
    text, _ = export(api(auditor), f"format=csv&ticket={ticket['ref']}")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["action"] for r in rows] == ["ticket.submitted", "ticket.approval", "ticket.approved", "ticket.cancelled"]
    assert {r["ticket_ref"] for r in rows} == {ticket["ref"]}
    path = tmp_path / "ticket.csv"
    path.write_text(text)
    # Other entries lie between these: a subset verifies, a full chain does not.
    assert verify_file(path, key=settings.AUDIT_HMAC_KEY, subset=True)[0]
    ok, message = verify_file(path, key=settings.AUDIT_HMAC_KEY, subset=False)
    assert not ok and "missing" in message


def test_offline_verification_names_the_changed_entry(api, auditor, entries, tmp_path):
    entries(6)
    text, _ = export(api(auditor))
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    details = header.index("details")
    body[2][details] = json.dumps({"n": 1000})  # the third entry is edited
    edited = tmp_path / "edited.csv"
    with edited.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *body])
    ok, message = verify_file(edited, key=settings.AUDIT_HMAC_KEY, subset=False)
    assert not ok and message.startswith(f"BROKEN at entry #{body[2][0]}: hash mismatch")
    # Without the key, an edit that keeps the links is not seen...
    assert verify_file(edited, key=None, subset=False)[0]
    # ...but a deletion is.
    deleted = tmp_path / "deleted.csv"
    with deleted.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *body[:3], *body[4:]])
    ok, message = verify_file(deleted, key=None, subset=False)
    assert not ok and f"BROKEN at entry #{body[4][0]}" in message


def test_offline_verifier_runs_without_the_portal(api, auditor, entries, tmp_path):
    entries(4)
    text, _ = export(api(auditor), "format=json")
    path = tmp_path / "audit.json"
    path.write_text(text)
    key_file = tmp_path / "key"
    key_file.write_text(settings.AUDIT_HMAC_KEY + "\n")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT)}  # no Django settings, no database

    def run(*args):
        return subprocess.run(  # noqa: S603 - our own module
            [sys.executable, "-m", "audit.verify_export", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = run(str(path), "--key-file", str(key_file))
    assert done.returncode == 0 and "hashes recomputed" in done.stdout, done.stderr
    assert run(str(path)).returncode == 0
    lines = text.splitlines()
    lines[2] = lines[2].replace('"test.event"', '"test.forged"')
    path.write_text("\n".join(lines))
    done = run(str(path), "--key-file", str(key_file))
    assert done.returncode == 1 and "hash mismatch" in done.stdout
    assert run(str(tmp_path / "missing.csv")).returncode == 2


def test_verify_export_command(api, auditor, entries, tmp_path, capsys):
    from django.core.management import call_command

    entries(3)
    text, _ = export(api(auditor))
    path = tmp_path / "audit.csv"
    path.write_text(text)
    call_command("verify_export", str(path))
    assert capsys.readouterr().out.startswith("OK:")
    path.write_text(text.replace("tester1", "tester9", 1))
    with pytest.raises(SystemExit) as exit_status:
        call_command("verify_export", str(path))
    assert exit_status.value.code == 1


def test_spreadsheet_formulas_are_neutralised_reversibly(api, auditor, client, tmp_path):
    client.post("/accounts/login/", {"username": '=HYPERLINK("http://x")', "password": "whatever-it-is"})
    text, _ = export(api(auditor))
    row = next(r for r in csv.DictReader(io.StringIO(text)) if r["action"] == "auth.login_failed")
    assert row["actor_name"] == '\'=HYPERLINK("http://x")'
    path = tmp_path / "audit.csv"
    path.write_text(text)
    assert verify_file(path, key=settings.AUDIT_HMAC_KEY, subset=False)[0]


def test_unknown_export_format_is_400(api, auditor):
    response = api(auditor).get("/api/audit/export/?format=xml")
    assert response.status_code == 400 and "format" in response.json()
    assert not AuditEntry.objects.filter(action="audit.exported").exists()

"""Findings through the API: auditors and approvers see them; approvers
acknowledge them with a comment, and that is audited."""

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from audit.models import AuditEntry, Finding
from audit.selectors import open_findings
from audit.services import finding_acknowledge

pytestmark = pytest.mark.django_db


@pytest.fixture
def finding(lab):
    now = timezone.now()
    return Finding.objects.create(
        connector=lab,
        kind="vm_unexplained",
        object_ref="vm:4242",
        observed={"name": "rogue", "host": "dmz-esx-01"},
        expected={"explained_by": "a succeeded vm_create ticket or the registration baseline"},
        first_seen=now,
        last_seen=now,
    )


def test_auditors_and_approvers_see_findings(api, auditor, approver, finding):
    for user in (auditor, approver):
        [shown] = api(user).get("/api/findings/").json()["results"]
        assert shown["id"] == finding.pk and shown["state"] == "open" and shown["connector_name"] == "lab"
        assert shown["observed"]["name"] == "rogue"
        assert api(user).get(f"/api/findings/{finding.pk}/").json()["object_ref"] == "vm:4242"


def test_approver_acknowledges_with_a_comment(api, approver, auditor, finding):
    response = api(approver).post(
        f"/api/findings/{finding.pk}/acknowledge/", {"comment": "  test VM, removed  "}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["state"], body["acknowledged_by"], body["ack_comment"]) == ("acknowledged", "bob", "test VM, removed")
    entry = AuditEntry.objects.get(action="finding.acknowledged")
    assert (entry.actor_name, entry.object_id, entry.details["comment"]) == ("bob", str(finding.pk), "test VM, removed")
    assert list(open_findings()) == []
    client = api(auditor)
    assert client.get("/api/findings/?state=open").json()["results"] == []
    assert [f["id"] for f in client.get("/api/findings/?state=acknowledged").json()["results"]] == [finding.pk]
    # Acknowledged once only.
    again = api(approver).post(f"/api/findings/{finding.pk}/acknowledge/", {"comment": "again"}, format="json")
    assert again.status_code == 409


@pytest.mark.parametrize("comment", [None, "", "   "])
def test_a_comment_is_required_and_nothing_is_stored_without(api, approver, finding, comment):
    body = {} if comment is None else {"comment": comment}
    response = api(approver).post(f"/api/findings/{finding.pk}/acknowledge/", body, format="json")
    assert response.status_code == 400 and "comment" in response.json()
    finding.refresh_from_db()
    assert finding.is_open and not AuditEntry.objects.filter(action="finding.acknowledged").exists()


def test_only_approvers_acknowledge(api, auditor, requester, portal_admin, finding):
    for user in (auditor, requester, portal_admin):
        response = api(user).post(f"/api/findings/{finding.pk}/acknowledge/", {"comment": "ok"}, format="json")
        assert response.status_code == 403
    with pytest.raises(PermissionDenied):
        finding_acknowledge(finding_id=finding.pk, user=auditor, comment="ok")
    finding.refresh_from_db()
    assert finding.is_open


def test_an_open_finding_exists_once(finding):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Finding.objects.create(
            connector=finding.connector,
            kind=finding.kind,
            object_ref=finding.object_ref,
            first_seen=finding.first_seen,
            last_seen=finding.last_seen,
        )

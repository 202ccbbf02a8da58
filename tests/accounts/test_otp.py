"""One-time passwords: enrolment by QR code, and approvals that need one."""

import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import otp
from approvals.models import Policy, Ticket
from audit.models import AuditEntry
from tests.approvals.helpers import VM_CREATE, file_ticket

pytestmark = pytest.mark.django_db


def code_for(device, offset=0):
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=offset):06d}"


def enrol(client, user):
    client.force_login(user)
    page = client.get("/accounts/otp/enrol/")
    assert page.status_code == 200 and "<svg" in page.content.decode()
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    assert client.post("/accounts/otp/enrol/", {"token": "000000"}).status_code == 200
    assert not TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    time.sleep(1.1)  # a failed code throttles the device for a second (django-otp)
    assert client.post("/accounts/otp/enrol/", {"token": code_for(device)}).status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    return device


def test_enrolment_shows_a_qr_code_and_needs_a_valid_code(client, approver):
    device = enrol(client, approver)
    enrolled = AuditEntry.objects.get(action="auth.otp_enrolled", actor_name="bob")
    assert enrolled.details == {"before": {"devices": []}, "after": {"devices": [device.pk]}}
    assert AuditEntry.objects.get(action="auth.otp_enrol_failed").details["reason"] == "wrong code"


@pytest.fixture
def otp_ticket(api, lab, requester):
    Policy.objects.filter(kind="vm_create").update(require_otp=True)
    return file_ticket(api(requester), lab, "vm_create", VM_CREATE)


def test_policy_requires_an_otp_for_approval_over_the_api(api, otp_ticket, approver, client):
    url = f"/api/tickets/{otp_ticket['id']}/approve/"
    refused = api(approver).post(url, {}, format="json")
    assert refused.status_code == 403 and "one-time password" in refused.json()["detail"]
    device = enrol(client, approver)
    wrong = api(approver).post(url, {"otp": "123456" if code_for(device) != "123456" else "654321"}, format="json")
    assert wrong.status_code == 403
    assert api(approver).post(url, {"otp": "12ab"}, format="json").status_code == 400
    assert Ticket.objects.get(pk=otp_ticket["id"]).state == "pending"
    time.sleep(1.1)  # the failed code throttled the device for a second
    ok = api(approver).post(url, {"otp": code_for(device, offset=1)}, format="json")
    assert ok.status_code == 200 and ok.json()["state"] == "approved"


def test_a_session_confirmation_counts_for_session_approvals(otp_ticket, approver, client):
    device = enrol(client, approver)  # enrolment itself confirms this session
    url = f"/api/tickets/{otp_ticket['id']}/approve/"
    assert client.post(url, {}, content_type="application/json").status_code == 200
    assert Ticket.objects.get(pk=otp_ticket["id"]).state == "approved"
    assert device.confirmed


def test_verify_page_confirms_for_the_session(otp_ticket, approver, client):
    device = enrol(client, approver)
    client.session.flush()
    client.force_login(approver)
    assert (
        client.post(f"/api/tickets/{otp_ticket['id']}/approve/", {}, content_type="application/json").status_code == 403
    )
    page = client.get("/accounts/otp/verify/?next=/")
    assert page.status_code == 200 and re.search(r'name="token"', page.content.decode())
    assert client.post("/accounts/otp/verify/", {"token": code_for(device, offset=1), "next": "/"}).status_code == 302
    assert (
        client.post(f"/api/tickets/{otp_ticket['id']}/approve/", {}, content_type="application/json").status_code == 200
    )


def audit_actions(user):
    return list(
        AuditEntry.objects.filter(actor=user, action__startswith="auth.otp")
        .order_by("seq")
        .values_list("action", flat=True)
    )


def test_without_a_current_code_a_session_cannot_replace_the_authenticator(client, approver):
    old = enrol(client, approver)
    # Another browser signed in as the same person (say, a session left open) tries to set up its own.
    other = type(client)()
    other.force_login(approver)
    page = other.get("/accounts/otp/enrol/").content.decode()
    assert 'name="current_token"' in page and "<svg" not in page
    assert not TOTPDevice.objects.filter(user=approver, confirmed=False).exists()
    wrong = "123456" if code_for(old, offset=1) != "123456" else "654321"
    refused = other.post("/accounts/otp/enrol/", {"current_token": wrong})
    assert refused.status_code == 200 and "<svg" not in refused.content.decode()
    assert 'name="current_token"' in refused.content.decode()
    # Skipping the first step: there is no new authenticator to confirm.
    other.post("/accounts/otp/enrol/", {"token": "000000"})
    assert list(TOTPDevice.objects.filter(user=approver).values_list("pk", "confirmed")) == [(old.pk, True)]
    assert audit_actions(approver)[-2:] == ["auth.otp_replace_refused", "auth.otp_replace_refused"]
    time.sleep(1.1)  # the wrong code throttled the device for a second
    assert otp.check(approver, code_for(old, offset=1))  # the old authenticator still works


def test_with_a_current_code_the_authenticator_is_replaced(client, approver):
    old = enrol(client, approver)
    other = type(client)()
    other.force_login(approver)
    started = other.post("/accounts/otp/enrol/", {"current_token": code_for(old, offset=1)})
    assert started.status_code == 200 and "<svg" in started.content.decode()
    new = TOTPDevice.objects.get(user=approver, confirmed=False)
    # The browser that did not give the code cannot confirm the new one, even with its code.
    assert client.post("/accounts/otp/enrol/", {"token": code_for(new)}).status_code == 200
    new.refresh_from_db()
    assert not new.confirmed
    assert other.post("/accounts/otp/enrol/", {"token": code_for(new, offset=1)}).status_code == 302
    assert list(TOTPDevice.objects.filter(user=approver).values_list("pk", "confirmed")) == [(new.pk, True)]
    replaced = AuditEntry.objects.get(action="auth.otp_replaced")
    assert replaced.details == {"before": {"devices": [old.pk]}, "after": {"devices": [new.pk]}}
    assert audit_actions(approver) == [
        "auth.otp_enrol_failed",  # enrol() tries a wrong code first
        "auth.otp_enrolled",
        "auth.otp_replacement_started",
        "auth.otp_replace_refused",
        "auth.otp_replaced",
    ]
    assert all(old.key not in str(e.details) and new.key not in str(e.details) for e in AuditEntry.objects.all())


def test_a_new_authenticator_must_be_confirmed_soon(client, approver):
    client.force_login(approver)
    client.get("/accounts/otp/enrol/")
    device = TOTPDevice.objects.get(user=approver, confirmed=False)
    TOTPDevice.objects.filter(pk=device.pk).update(
        created_at=timezone.now() - timedelta(seconds=otp.ENROLMENT_SECONDS + 1)
    )
    client.post("/accounts/otp/enrol/", {"token": code_for(device)})
    assert not TOTPDevice.objects.filter(user=approver, confirmed=True).exists()
    assert AuditEntry.objects.get(action="auth.otp_enrol_failed").details["reason"] == "expired or unknown"


def test_otp_reset_deletes_the_authenticators_and_is_audited(client, approver, portal_admin):
    enrol(client, approver)
    assert otp.otp_reset(user=approver, actor=portal_admin) == 1
    assert not TOTPDevice.objects.filter(user=approver).exists()
    entry = AuditEntry.objects.get(action="auth.otp_reset")
    assert (entry.actor_name, entry.object_id) == ("pat", str(approver.pk))
    assert entry.details["after"] == {"devices": []} and len(entry.details["before"]["devices"]) == 1
    # Without a device, enrolling works as the first time.
    assert "<svg" in client.get("/accounts/otp/enrol/").content.decode()

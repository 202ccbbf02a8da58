"""One-time passwords: enrolment by QR code, and approvals that need one."""

import re
import time

import pytest
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

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
    enrol(client, approver)
    assert AuditEntry.objects.filter(action="auth.otp_enrolled", actor_name="bob").exists()


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

"""Approvals signed with passkeys, below the browser: registration needs a
second factor and is audited with the public key; a passkey ticket takes
only assertions over its own statement, once, from a registered passkey
whose counter rises; the worker re-checks every signature before it acts;
the export alone proves each approval offline. A software authenticator
(tests/audit/passkey_authenticator.py) stands in for the browser's."""

import json
import time

import pytest
from django.test import Client

from accounts import otp
from accounts.models import Passkey
from approvals.models import Approval, Policy, Ticket
from approvals.services.execution import approvals_problem, ticket_execute
from audit.models import AuditEntry
from audit.verify_export import verify_file
from tests.approvals.helpers import ADMIN_ACCESS, file_ticket, migrate_within_zone
from tests.audit.passkey_authenticator import SoftAuthenticator, flip_byte

pytestmark = pytest.mark.django_db


def web_client(user, *, second_factor=True):
    client = Client()
    client.force_login(user)
    if second_factor:
        session = client.session
        session[otp.SESSION_KEY] = time.time()  # what confirming a code at /accounts/otp/verify/ records
        session.save()
    return client


def register(user, authenticator=None):
    authenticator = authenticator or SoftAuthenticator()
    client = web_client(user)
    options = client.post("/accounts/passkeys/options/")
    assert options.status_code == 200, options.content
    answer = authenticator.create(options.json())
    response = client.post(
        "/accounts/passkeys/register/",
        json.dumps({"credential": answer, "name": "key"}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    return authenticator


def passkey_policy(kind="vm_migrate", required=2):
    Policy.objects.filter(kind=kind, zone=None).update(require_passkey=True, required_approvals=required)


def challenge(api, user, ticket_id):
    response = api(user).post(f"/api/tickets/{ticket_id}/passkey-challenge/")
    assert response.status_code == 200, response.content
    return response.json()


def approve(api, user, ticket_id, assertion):
    return api(user).post(f"/api/tickets/{ticket_id}/approve/", {"passkey": assertion}, format="json")


def sign_and_approve(api, user, authenticator, ticket_id, **kwargs):
    options = challenge(api, user, ticket_id)
    assertion = authenticator.get(options["publicKey"]["challenge"], **kwargs)
    return approve(api, user, ticket_id, assertion), assertion


def test_registration_needs_a_second_factor_and_is_audited_with_its_public_key(approver):
    refused = web_client(approver, second_factor=False)
    assert refused.post("/accounts/passkeys/options/").status_code == 403
    assert refused.get("/accounts/passkeys/").status_code == 200
    response = refused.post("/accounts/passkeys/register/", "{}", content_type="application/json")
    assert response.status_code == 403
    assert AuditEntry.objects.filter(action="auth.passkey_refused", actor=approver).exists()
    assert not Passkey.objects.exists()

    authenticator = register(approver)
    passkey = Passkey.objects.get(user=approver)
    assert passkey.credential_id == authenticator.id and passkey.alg == -7 and passkey.rp_id == "testserver"
    entry = AuditEntry.objects.get(action="auth.passkey_registered")
    assert entry.details["credential_id"] == authenticator.id
    assert entry.details["public_key"] == passkey.public_key

    # Removal: a second factor too, audited with the id and key.
    assert refused.post("/accounts/passkeys/", {"passkey": passkey.pk}).status_code == 302
    assert Passkey.objects.get(pk=passkey.pk).removed_at is None
    assert web_client(approver).post("/accounts/passkeys/", {"passkey": passkey.pk}).status_code == 302
    assert Passkey.objects.get(pk=passkey.pk).removed_at is not None
    removed = AuditEntry.objects.get(action="auth.passkey_removed")
    assert removed.details["credential_id"] == authenticator.id and removed.details["public_key"] == passkey.public_key


def test_a_passkey_ticket_refuses_approvals_without_a_passkey(api, lab, requester, approver):
    passkey_policy()
    ticket = file_ticket(api(requester), lab, "vm_migrate", migrate_within_zone(api(requester), lab))
    assert Ticket.objects.get(pk=ticket["id"]).require_passkey
    response = api(approver).post(f"/api/tickets/{ticket['id']}/approve/", {}, format="json")
    assert response.status_code == 403 and "passkey" in response.json()["detail"]
    # No passkey registered: no challenge either.
    assert api(approver).post(f"/api/tickets/{ticket['id']}/passkey-challenge/").status_code == 403
    assert not Approval.objects.exists()


def test_replayed_assertion_and_one_for_another_ticket_are_refused_and_audited(api, lab, requester, approver):
    passkey_policy(required=2)
    key = register(approver)
    first = file_ticket(api(requester), lab, "vm_migrate", migrate_within_zone(api(requester), lab))
    passkey_policy("admin_access")
    second = file_ticket(api(requester), lab, "admin_access", ADMIN_ACCESS)
    # Signed for the first ticket, sent for the second.
    options = challenge(api, approver, first["id"])
    for_first = key.get(options["publicKey"]["challenge"])
    response = approve(api, approver, second["id"], for_first)
    assert response.status_code == 403 and f"not {Ticket.objects.get(pk=second['id']).ref}" in response.json()["detail"]
    # Sent where it belongs: counts. Sent again: a replay.
    assert approve(api, approver, first["id"], for_first).status_code == 200
    replay = approve(api, approver, first["id"], for_first)
    assert replay.status_code == 403 and "replayed" in replay.json()["detail"]
    reasons = list(
        AuditEntry.objects.filter(action="ticket.decision_refused", actor=approver).values_list("details", flat=True)
    )
    assert any("not CHG" in r["reason"] for r in reasons) and any("replayed" in r["reason"] for r in reasons)
    approval = Approval.objects.get(ticket_id=first["id"])
    assert approval.passkey_credential_id == key.id and approval.passkey_signature == for_first["response"]["signature"]
    entry = AuditEntry.objects.get(action="ticket.approval", ticket_id=first["id"])
    assert entry.details["passkey"]["signature"] == approval.passkey_signature


def test_a_sign_count_going_backwards_is_refused_audited_and_flagged(api, lab, requester, approver):
    passkey_policy()
    key = register(approver)
    ticket = file_ticket(api(requester), lab, "vm_migrate", migrate_within_zone(api(requester), lab))
    Passkey.objects.filter(user=approver).update(sign_count=50)
    response, _ = sign_and_approve(api, approver, key, ticket["id"], count=7)
    assert response.status_code == 403 and "cloned" in response.json()["detail"]
    passkey = Passkey.objects.get(user=approver)
    assert passkey.flagged_at is not None and passkey.sign_count == 50
    flagged = AuditEntry.objects.get(action="auth.passkey_flagged")
    assert flagged.details["given_sign_count"] == 7 and flagged.details["credential_id"] == key.id
    assert not Approval.objects.exists()
    # A flagged passkey proves nothing any more, whatever its counter says.
    response = api(approver).post(f"/api/tickets/{ticket['id']}/passkey-challenge/")
    assert response.status_code == 403


def test_the_worker_counts_only_signatures_that_verify_against_active_passkeys(
    api, lab, requester, approver, approver2
):
    passkey_policy(required=2)
    keys = {approver: register(approver), approver2: register(approver2)}
    ticket_id = file_ticket(api(requester), lab, "vm_migrate", migrate_within_zone(api(requester), lab))["id"]
    for user, key in keys.items():
        assert sign_and_approve(api, user, key, ticket_id)[0].status_code == 200
    ticket = Ticket.objects.get(pk=ticket_id)
    assert ticket.state == "approved" and approvals_problem(ticket) is None
    # One byte of a stored signature changed in the database: that approval no longer counts.
    approval = Approval.objects.get(ticket=ticket, approver=approver)
    good = approval.passkey_signature
    Approval.objects.filter(pk=approval.pk).update(passkey_signature=flip_byte(good, 30))
    assert "bob's approval the signature does not verify" in approvals_problem(ticket)
    Approval.objects.filter(pk=approval.pk).update(passkey_signature=good)
    # The nonce points at another statement: the challenge no longer matches.
    Approval.objects.filter(pk=approval.pk).update(passkey_nonce="another")
    assert "another challenge" in approvals_problem(ticket)
    Approval.objects.filter(pk=approval.pk).update(passkey_nonce=approval.passkey_nonce)
    # A passkey removed before the worker acts: its approval does not count.
    Passkey.objects.filter(user=approver2).update(removed_at=ticket.created_at)
    assert "carol's approval was signed with a passkey that has since been removed" in approvals_problem(ticket)


def test_two_passkey_approvals_carry_the_ticket_and_the_export_proves_them(
    api, own_lab, requester, approver, approver2, auditor, tmp_path
):
    passkey_policy(required=2)
    keys = {approver: register(approver), approver2: register(approver2)}
    ticket_id = file_ticket(api(requester), own_lab, "vm_migrate", migrate_within_zone(api(requester), own_lab))["id"]
    for user, key in keys.items():
        assert sign_and_approve(api, user, key, ticket_id)[0].status_code == 200
    assert ticket_execute(ticket_id=ticket_id, worker="test-worker") == "succeeded"
    ref = Ticket.objects.get(pk=ticket_id).ref

    export = tmp_path / "audit.json"
    export.write_bytes(b"".join(api(auditor).get("/api/audit/export/?format=json").streaming_content))
    verified, message = verify_file(export, key=None, subset=False)
    assert verified, message
    assert f"{ref}: approvals required 2, proved 2" in message

    # One byte of one stored signature changed in the export: broken, and said where.
    lines = export.read_text().splitlines()
    for i, line in enumerate(lines):
        if '"ticket.approval"' in line:
            entry = json.loads(line.rstrip(","))
            entry["details"]["passkey"]["signature"] = flip_byte(entry["details"]["passkey"]["signature"], 30)
            lines[i] = json.dumps(entry) + ("," if line.endswith(",") else "")
            break
    export.write_text("\n".join(lines) + "\n")
    verified, message = verify_file(export, key=None, subset=False)
    assert not verified
    assert "does not verify" in message and f"{ref}: approvals required 2, proved 1" in message

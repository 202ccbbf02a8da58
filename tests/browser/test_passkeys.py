"""Approvals signed with passkeys, in Chromium with the browser's own
virtual authenticator (the DevTools protocol's WebAuthn domain): two
approvers enrol a passkey and approve a passkey ticket, the worker carries
it out; an assertion replayed or made for another ticket is refused; the
export proves both approvals offline, and fails once one byte of a stored
signature changes."""

import json
import re

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from approvals.models import Policy, Ticket
from audit.verify_export import verify_file
from tests.approvals.helpers import ADMIN_ACCESS, file_ticket, migrate_within_zone, wait_for
from tests.audit.passkey_authenticator import flip_byte
from tests.browser.conftest import DESKTOP
from tests.browser.pages import check_usable, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# In the page: a fresh challenge for ticket `id` from the API, signed by the
# page's authenticator; the assertion as the portal's script would send it.
SIGN_FOR = """async (id) => {
  const enc = (b) => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  const dec = (t) => Uint8Array.from(atob(t.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((t.length + 3) % 4)), (c) => c.charCodeAt(0));
  const token = document.querySelector("input[name=csrfmiddlewaretoken]").value;
  const answer = await fetch(`/api/tickets/${id}/passkey-challenge/`, {method: "POST", headers: {"X-CSRFToken": token}});
  const publicKey = (await answer.json()).publicKey;
  publicKey.challenge = dec(publicKey.challenge);
  publicKey.allowCredentials = publicKey.allowCredentials.map((c) => ({type: c.type, id: dec(c.id)}));
  const cred = await navigator.credentials.get({publicKey});
  const r = cred.response;
  return {id: cred.id, rawId: enc(cred.rawId), type: cred.type, response: {
    authenticatorData: enc(r.authenticatorData), clientDataJSON: enc(r.clientDataJSON), signature: enc(r.signature)}};
}"""


def virtual_authenticator(context, page):
    """A platform authenticator with user verification, for this page."""
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp


def enrol_passkey(context, base, username):
    """Sign in, confirm a one-time password (registration needs a second
    factor), add a passkey from the browser's authenticator."""
    page = sign_in(context, base, username)
    device = TOTPDevice.objects.create(user=get_user_model().objects.get(username=username), confirmed=True)
    virtual_authenticator(context, page)
    page.goto(f"{base}/accounts/passkeys/")
    expect(page.get_by_role("link", name="confirm a code from your authenticator")).to_be_visible()
    page.get_by_role("link", name="confirm a code from your authenticator").click()
    code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"
    page.get_by_label("Code from the app").fill(code)
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="Passkeys")).to_be_visible()
    page.get_by_label("Name").fill(f"{username}'s laptop")
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.get_by_role("status")).to_contain_text(f"The passkey {username}'s laptop is registered.")
    expect(page.get_by_role("table", name="Your passkeys")).to_contain_text(f"{username}'s laptop")
    check_usable(page)
    return page


def post_json(context, base, page, path, body):
    token = page.locator("input[name=csrfmiddlewaretoken]").first.get_attribute("value")
    return context.request.post(
        f"{base}{path}",
        data=json.dumps(body),
        headers={"Content-Type": "application/json", "X-CSRFToken": token, "Referer": f"{base}/"},
    )


def test_two_approvers_sign_with_passkeys_the_worker_executes_and_the_export_proves_it(
    new_context, live_server, own_lab, api, requester, approver, approver2, auditor, workers, tmp_path
):
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    Policy.objects.filter(kind__in=["vm_migrate", "admin_access"], zone=None).update(
        require_passkey=True, required_approvals=2
    )
    ticket_id = file_ticket(api(requester), own_lab, "vm_migrate", migrate_within_zone(api(requester), own_lab))["id"]
    other_id = file_ticket(api(requester), own_lab, "admin_access", ADMIN_ACCESS)["id"]
    ticket = Ticket.objects.get(pk=ticket_id)
    workers(1)
    base = live_server.url

    # bob enrols and approves with his passkey; the page says what is signed.
    bob_context = new_context(viewport=DESKTOP)
    bob = enrol_passkey(bob_context, base, "bob")
    bob.goto(f"{base}/tickets/{ticket_id}/")
    box = bob.locator("#ticket-actions")
    expect(box.get_by_role("heading", name="What your passkey signs")).to_be_visible()
    expect(box).to_contain_text(f"I approve {ticket.ref}: Migrate VM on lab.")
    expect(box).to_contain_text("under terms of 2 approval(s) by approver")
    check_usable(bob)
    bob.get_by_label("Comment (optional)").fill("Signed with my passkey.")
    bob.get_by_role("button", name="Approve with passkey").click()
    expect(bob.get_by_role("status")).to_contain_text(f"You approved {ticket.ref}.")
    expect(bob.locator("#ticket-approvals")).to_contain_text("1 of 2 required")

    # The assertion bob's browser sent, replayed: refused.
    stored = ticket.approvals.get(approver=approver)
    replay = {
        "id": stored.passkey_credential_id,
        "rawId": stored.passkey_credential_id,
        "type": "public-key",
        "response": {
            "authenticatorData": stored.passkey_authenticator_data,
            "clientDataJSON": stored.passkey_client_data_json,
            "signature": stored.passkey_signature,
        },
    }
    refused = post_json(bob_context, base, bob, f"/api/tickets/{ticket_id}/approve/", {"passkey": replay})
    assert refused.status == 403 and "replayed" in refused.json()["detail"]

    # carol: a browser without WebAuthn is told so, and gets no way round it.
    carol_context = new_context(viewport=DESKTOP)
    carol = enrol_passkey(carol_context, base, "carol")
    bare_context = new_context(viewport=DESKTOP)
    bare_context.add_init_script("delete window.PublicKeyCredential;")
    bare = sign_in(bare_context, base, "carol")
    bare.goto(f"{base}/tickets/{ticket_id}/")
    expect(bare.get_by_role("alert")).to_contain_text("This browser cannot use passkeys (WebAuthn)")
    expect(bare.get_by_role("button", name="Approve with passkey")).to_be_disabled()
    expect(bare.get_by_role("button", name="Approve", exact=True)).to_have_count(0)
    bare_context.close()

    # An assertion made (by carol's own authenticator) for the other ticket: refused.
    carol.goto(f"{base}/tickets/{ticket_id}/")
    for_other = carol.evaluate(SIGN_FOR, other_id)
    refused = post_json(carol_context, base, carol, f"/api/tickets/{ticket_id}/approve/", {"passkey": for_other})
    assert refused.status == 403 and f"not {ticket.ref}" in refused.json()["detail"]

    carol.get_by_role("button", name="Approve with passkey").click()
    expect(carol.get_by_role("status")).to_contain_text(f"You approved {ticket.ref}.")
    done = wait_for(ticket_id, "succeeded", "failed", timeout=60)
    assert done.state == "succeeded", done.error
    expect(carol.locator("#ticket-state")).to_have_text("succeeded", timeout=20_000)

    # Offline: the export alone proves both approvals; one byte changed, it does not.
    export = tmp_path / "audit.json"
    export.write_bytes(b"".join(api(auditor).get("/api/audit/export/?format=json").streaming_content))
    verified, message = verify_file(export, key=None, subset=False)
    assert verified, message
    assert f"{ticket.ref}: approvals required 2, proved 2" in message
    text = export.read_text()
    signature = stored.passkey_signature
    assert text.count(signature) == 1
    export.write_text(text.replace(signature, flip_byte(signature, 20)))
    verified, message = verify_file(export, key=None, subset=False)
    assert not verified and re.search(rf"{ticket.ref}, approval at entry #\d+: the signature does not verify", message)

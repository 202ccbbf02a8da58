"""Approvals signed with passkeys: the challenge an approver's authenticator
signs (derived from the ticket's statement, audit/passkeys.py), the check of
the assertion when the approval is given, and the worker's re-check of each
stored proof before it acts."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from accounts import bindings
from accounts.models import Passkey, PasskeyChallenge
from accounts.passkeys import passkey_retire
from approvals import permissions, seals
from approvals.choices import TicketState
from approvals.errors import StateConflict
from approvals.models import Approval, Ticket, ticket_ref
from audit import passkeys as proofs
from audit.writer import record

# How long a challenge may be answered.
CHALLENGE_SECONDS = 5 * 60


class PasskeyRefused(PermissionDenied):
    """The assertion does not prove an approval of this ticket."""


class PasskeyForged(PasskeyRefused):
    """The credential's row does not bind to the person (written in the
    table, or moved there from someone else)."""

    def __init__(self, message: str, *, credential_id: str):
        super().__init__(message)
        self.credential_id = credential_id


class PasskeyCloned(PasskeyRefused):
    """The credential's sign count went backwards."""

    def __init__(self, message: str, *, passkey_id: int, stored: int, given: int):
        super().__init__(message)
        self.passkey_id, self.stored, self.given = passkey_id, stored, given


def ticket_statement(ticket: Ticket, nonce: str) -> dict:
    """What approving `ticket` with `nonce` means, as the authenticator signs it."""
    return proofs.statement(
        ticket_id=ticket.pk,
        content_hash=ticket.content_hash,
        objects=(ticket.params or {}).get("objects") or {},
        terms=seals.terms(ticket),
        nonce=nonce,
    )


def plain_words(ticket: Ticket) -> list[str]:
    """The statement in words, for the page that asks for the signature."""
    objects = (ticket.params or {}).get("objects") or {}
    lines = [f"I approve {ticket.ref}: {ticket.get_kind_display()} on {ticket.connector or 'the portal'}."]
    for field, ref in sorted(objects.items()):
        if isinstance(ref, dict):
            lines.append(
                f"{field.replace('_', ' ')}: {ref.get('type', '')} {ref.get('name', '')} ({ref.get('id', '')})"
            )
    lines.append(
        f"Content hash {ticket.content_hash[:16]}…, under terms of {ticket.required_approvals} approval(s) "
        f"by {ticket.approver_group.name}{', one-time password' if ticket.require_otp else ''}, passkeys required."
    )
    return lines


def active_passkeys(user):
    return Passkey.objects.filter(user=user, removed_at=None, flagged_at=None)


def passkey_challenge_issue(*, ticket_id: int, user, rp_id: str) -> dict:
    """A fresh, single-use challenge for `user` to sign an approval of the
    ticket: the WebAuthn request options, the statement and its words."""
    ticket = Ticket.objects.select_related("approver_group", "connector").get(pk=ticket_id)
    if ticket.requester_id == user.pk or not permissions.can_decide(user, ticket):
        raise PermissionDenied(f"You do not decide on {ticket.ref}.")
    if ticket.state != TicketState.PENDING:
        raise StateConflict(f"{ticket.ref} is {ticket.state}; it no longer takes decisions.")
    if not ticket.require_passkey:
        raise StateConflict(f"{ticket.ref}'s policy does not ask for passkey signatures.")
    keys = list(active_passkeys(user).values_list("credential_id", flat=True))
    if not keys:
        raise PermissionDenied("You have no passkey: register one under Account → Passkeys first.")
    nonce = secrets.token_urlsafe(24)
    body = ticket_statement(ticket, nonce)
    challenge = proofs.b64url(proofs.challenge_for(body))
    PasskeyChallenge.objects.create(user=user, ticket_id=ticket.pk, nonce=nonce, challenge=challenge)
    return {
        "publicKey": {
            "challenge": challenge,
            "rpId": rp_id,
            "timeout": CHALLENGE_SECONDS * 1000,
            "userVerification": "required",
            "allowCredentials": [{"type": "public-key", "id": key} for key in keys],
        },
        "statement": body,
        "words": plain_words(ticket),
    }


def _assertion_parts(assertion) -> tuple[str, dict, proofs.Proof]:
    """(credential id, client data, proof without nonce) of the browser's
    PublicKeyCredential JSON; PasskeyRefused when it is malformed."""
    response = assertion.get("response") if isinstance(assertion, dict) else None
    if not isinstance(response, dict) or assertion.get("type") != "public-key":
        raise PasskeyRefused("The passkey answer is not a WebAuthn assertion.")
    try:
        proof = proofs.Proof.from_dict(
            {
                "credential_id": assertion.get("id"),
                "authenticator_data": response.get("authenticatorData"),
                "client_data_json": response.get("clientDataJSON"),
                "signature": response.get("signature"),
                "nonce": "-",
            }
        )
        client = proofs.client_data(proof)
        proofs.sign_count(proof)
    except ValueError as exc:
        raise PasskeyRefused(f"The passkey answer cannot be read: {exc}.") from exc
    return proof.credential_id, client, proof


def passkey_proof_check(*, ticket: Ticket, user, assertion, origin: str) -> proofs.Proof:
    """Inside the approval's transaction, with the ticket locked: the proof
    that `user`'s registered passkey signed this ticket's statement now.
    Uses up the challenge and moves the credential's sign count on.
    PasskeyRefused (PasskeyCloned for a counter going backwards) otherwise."""
    credential_id, client, proof = _assertion_parts(assertion)
    issued = PasskeyChallenge.objects.select_for_update().filter(user=user, challenge=client.get("challenge")).first()
    if issued is None:
        raise PasskeyRefused("The passkey signed a challenge this portal never gave you.")
    if issued.ticket_id != ticket.pk:
        raise PasskeyRefused(f"The passkey signed an approval of {ticket_ref(issued.ticket_id)}, not {ticket.ref}.")
    if issued.used_at is not None:
        raise PasskeyRefused(f"This passkey signature was used already (replayed) on {ticket.ref}.")
    if issued.created_at < timezone.now() - timedelta(seconds=CHALLENGE_SECONDS):
        raise PasskeyRefused("The passkey challenge expired: sign again.")
    challenge = proofs.challenge_for(ticket_statement(ticket, issued.nonce))
    if proofs.b64url(challenge) != issued.challenge:
        raise PasskeyRefused(f"{ticket.ref} changed since the challenge was given: sign again.")
    passkey = active_passkeys(user).select_for_update().filter(credential_id=credential_id).first()
    if passkey is None:
        raise PasskeyRefused("That passkey is not one of your registered, active passkeys.")
    if not bindings.holds(passkey.binding, bindings.of_passkey(passkey)):
        raise PasskeyForged(
            "That passkey's record was not registered by you through the portal; it proves nothing.",
            credential_id=credential_id,
        )
    proof = proofs.Proof(**{**proof.as_dict(), "nonce": issued.nonce})
    problem = proofs.proof_problem(
        proof,
        public_key=passkey.public_key,
        alg=passkey.alg,
        rp_id=passkey.rp_id,
        expected_challenge=challenge,
        origins=[origin],
    )
    if problem:
        raise PasskeyRefused(f"The passkey signature is refused: {problem}.")
    given = proofs.sign_count(proof)
    cloned = proofs.counter_problem(passkey.sign_count, given)
    if cloned:
        raise PasskeyCloned(
            f"The passkey is refused and flagged: {cloned}",
            passkey_id=passkey.pk,
            stored=passkey.sign_count,
            given=given,
        )
    now = timezone.now()
    Passkey.objects.filter(pk=passkey.pk).update(sign_count=given, last_used_at=now)
    PasskeyChallenge.objects.filter(pk=issued.pk).update(used_at=now)
    return proof


def flag_cloned(exc: PasskeyCloned, *, user, ticket_id: int) -> None:
    """After the refused approval rolled back: the credential proves nothing
    any more, and the log says why."""
    with transaction.atomic():
        passkey = Passkey.objects.select_for_update().get(pk=exc.passkey_id)
        if passkey.flagged_at is None:
            passkey_retire(passkey, "flagged_at")
        record(
            "auth.passkey_flagged",
            actor=user,
            ticket=Ticket.objects.filter(pk=ticket_id).first(),
            obj=user,
            details={
                "credential_id": passkey.credential_id,
                "reason": "sign count went backwards: a cloned authenticator?",
                "stored_sign_count": exc.stored,
                "given_sign_count": exc.given,
            },
        )


def forged_audited(exc: PasskeyForged, *, user, ticket_id: int) -> None:
    """After the refused approval rolled back: the log says whose passkey
    row was forged, and on which ticket it was tried."""
    bindings.forged(
        credential="passkey",
        user=user,
        credential_id=exc.credential_id,
        ticket=ticket_ref(ticket_id),
        problem="the passkey's row is not one the portal registered for this account",
    )


def stored_proof(approval: Approval) -> proofs.Proof | None:
    try:
        return proofs.Proof.from_dict(
            {
                "credential_id": approval.passkey_credential_id,
                "authenticator_data": approval.passkey_authenticator_data,
                "client_data_json": approval.passkey_client_data_json,
                "signature": approval.passkey_signature,
                "nonce": approval.passkey_nonce,
            }
        )
    except ValueError:
        return None


def approval_proof_problem(ticket: Ticket, approval: Approval) -> str | None:
    """The worker's check: why `approval` is not proved by its approver's
    passkey over the ticket as it is now, in words, or None."""
    proof = stored_proof(approval)
    if proof is None:
        return "carries no passkey signature"
    passkey = Passkey.objects.filter(user_id=approval.approver_id, credential_id=proof.credential_id).first()
    if passkey is None:
        return "was signed with a credential the approver never registered"
    if passkey.removed_at is not None:
        return "was signed with a passkey that has since been removed"
    if passkey.flagged_at is not None:
        return "was signed with a passkey flagged as cloned"
    if not bindings.holds(passkey.binding, bindings.of_passkey(passkey)):
        return "was signed with a passkey whose record the portal never registered for the approver"
    return proofs.proof_problem(
        proof,
        public_key=passkey.public_key,
        alg=passkey.alg,
        rp_id=passkey.rp_id,
        expected_challenge=proofs.challenge_for(ticket_statement(ticket, proof.nonce)),
    )

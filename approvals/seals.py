"""Seals on decisions: an HMAC-SHA256, keyed with SEAL_KEY (which the
database does not hold), over what a submission, approval or rejection
means — the ticket, the content it binds, the policy terms it was filed
under, the person, the decision and the time. The worker counts only
records whose seal verifies, so rows written into the database by someone
without the key never make it act.

A seal is "<key id>:<hex>"; the key id (the first 8 hex digits of the key's
SHA-256) picks the key, so seals made before a rotation still verify with
SEAL_OLD_KEYS."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime

from django.conf import settings

SUBMIT, APPROVE, REJECT = "submit", "approve", "reject"


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def _keys() -> dict[str, str]:
    keys = {key_id(k): k for k in settings.SEAL_OLD_KEYS if k}
    if settings.SEAL_KEY:
        keys[key_id(settings.SEAL_KEY)] = settings.SEAL_KEY
    return keys


def terms(ticket) -> dict:
    """The policy terms a ticket copied at submission."""
    terms = {
        "required_approvals": ticket.required_approvals,
        "approver_group": ticket.approver_group_id,
        "require_otp": bool(ticket.require_otp),
        "policy": ticket.policy_id,
        "policy_digest": ticket.policy_digest,
    }
    if ticket.require_passkey:
        # Only when set, so seals made before passkeys existed still verify.
        terms["require_passkey"] = True
    # Likewise: a ticket approved at submission by its policy's standard
    # change, or filed as an emergency, says so under the requester's seal;
    # setting either flag in the database breaks the seal.
    if ticket.is_standard:
        terms["standard"] = True
    if ticket.is_emergency:
        terms["emergency"] = True
        terms["emergency_reason"] = ticket.emergency_reason
    return terms


def _message(*, ticket_id: int, content_hash: str, terms: dict, person_id: int, decision: str, at: datetime) -> bytes:
    body = {
        "ticket": ticket_id,
        "content_hash": content_hash,
        "terms": terms,
        "person": person_id,
        "decision": decision,
        "at": at.isoformat(),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def make(*, key: str | None = None, **fields) -> str:
    key = key or settings.SEAL_KEY
    if not key:
        raise RuntimeError("SEAL_KEY is not set: this process cannot seal decisions")
    mac = hmac.new(key.encode(), _message(**fields), hashlib.sha256).hexdigest()
    return f"{key_id(key)}:{mac}"


def verifies(seal: str, **fields) -> bool:
    kid, _, mac = (seal or "").partition(":")
    key = _keys().get(kid)
    if key is None or not mac:
        return False
    expected = hmac.new(key.encode(), _message(**fields), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, mac)


def submission_fields(ticket) -> dict:
    return {
        "ticket_id": ticket.pk,
        "content_hash": ticket.content_hash,
        "terms": terms(ticket),
        "person_id": ticket.requester_id,
        "decision": SUBMIT,
        "at": ticket.created_at,
    }


def decision_fields(ticket, approval) -> dict:
    return {
        "ticket_id": ticket.pk,
        "content_hash": approval.content_hash,
        "terms": terms(ticket),
        "person_id": approval.approver_id,
        "decision": approval.decision,
        "at": approval.created_at,
    }


def records_problem(ticket, decisions) -> str | None:
    """Why the ticket's records do not verify, in words, or None: the
    submission's seal and the seal of every decision on it."""
    if not verifies(ticket.seal, **submission_fields(ticket)):
        return f"the submission of {ticket.ref} carries no valid seal"
    bad = [d.pk for d in decisions if not verifies(d.seal, **decision_fields(ticket, d))]
    if bad:
        return f"{len(bad)} decision record(s) on {ticket.ref} carry no valid seal (ids {', '.join(map(str, bad))})"
    return None

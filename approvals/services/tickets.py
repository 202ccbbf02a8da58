"""Filing and deciding tickets. Every function checks, writes, audits and
enqueues inside one transaction."""

import hashlib
import json
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals import permissions, seals, standard
from approvals.choices import Decision, TicketKind, TicketState
from approvals.dispatch import enqueue_execution, enqueue_notification, enqueue_revocation
from approvals.errors import InvalidInput, StateConflict
from approvals.freezes import check_not_frozen
from approvals.inventory import IndexRules, StoredIndex
from approvals.models import Approval, Policy, Ticket
from approvals.services import emergencies, passkey_approvals
from approvals.services.refusals import refusal_audited as _refusal_audited
from approvals.services.transitions import transition
from approvals.validation import check_submission, check_window
from audit.passkeys import Proof
from audit.writer import record


def connector_pin(connector) -> dict | None:
    """The hypervisor's pinned identity, which every approval binds to: a
    connector re-pointed elsewhere voids what was approved against it."""
    if connector is None:
        return None
    return {"instance_uuid": connector.instance_uuid, "tls_fingerprint": connector.tls_fingerprint}


def content_hash(*, kind: str, connector, params: dict, not_before, not_after) -> str:
    """What an approval binds to: the ticket's kind, connector (and its pinned
    identity), parameters and window."""
    body = {
        "kind": kind,
        "connector": connector.pk if connector is not None else None,
        "connector_pin": connector_pin(connector),
        "params": params,
        "not_before": not_before.isoformat() if not_before else None,
        "not_after": not_after.isoformat() if not_after else None,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def ticket_content_hash(ticket: Ticket) -> str:
    return content_hash(
        kind=ticket.kind,
        connector=ticket.connector,
        params=ticket.params,
        not_before=ticket.not_before,
        not_after=ticket.not_after,
    )


def ticket_file(
    *,
    requester,
    kind: str,
    connector,
    justification: str,
    params: dict,
    policy: Policy,
    required_approvals: int,
    zone: str = "",
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    details: dict | None = None,
    standard_verdict: dict | None = None,
    emergency_reason: str = "",
) -> Ticket:
    """Store a checked ticket with what it copies from its policy, audit it
    and tell its approvers (after commit). Callers check first; every kind of
    ticket is filed here. A standard change (`standard_verdict` says it
    fits) is approved here by its policy, an emergency (`emergency_reason`)
    by its break-glass requester; both are queued at once."""
    standard = bool(standard_verdict and standard_verdict.get("standard")) and not emergency_reason
    now = timezone.now()
    ticket = Ticket.objects.create(
        kind=kind,
        connector=connector,
        requester=requester,
        justification=justification,
        params=params,
        not_before=not_before,
        not_after=not_after,
        content_hash=content_hash(
            kind=kind, connector=connector, params=params, not_before=not_before, not_after=not_after
        ),
        required_approvals=required_approvals,
        approver_group=policy.approver_group,
        require_otp=policy.require_otp,
        require_passkey=policy.require_passkey,
        zone=zone,
        policy_id=policy.pk,
        policy_digest=policy.digest(),
        pending_expires_at=now + timedelta(minutes=policy.pending_ttl_minutes),
        is_standard=standard,
        standard_verdict=standard_verdict or {},
        is_emergency=bool(emergency_reason),
        emergency_reason=emergency_reason,
        review_due_at=emergencies.review_due(now) if emergency_reason else None,
    )
    ticket.seal = seals.make(**seals.submission_fields(ticket))
    Ticket.objects.filter(pk=ticket.pk).update(seal=ticket.seal)
    record(
        "ticket.submitted",
        actor=requester,
        ticket=ticket,
        obj=ticket,
        details={
            "ref": ticket.ref,
            "kind": kind,
            "connector": connector.name if connector is not None else None,
            "params": params,
            "justification": justification,
            "required_approvals": ticket.required_approvals,
            "approver_group": policy.approver_group.name,
            "policy_id": policy.pk,
            "zone": ticket.zone,
            **(_signed_content(ticket) if ticket.require_passkey else {}),
            **({"standard": standard_verdict} if standard_verdict else {}),
            **({"emergency": True, "emergency_reason": emergency_reason} if emergency_reason else {}),
            **(details or {}),
        },
    )
    if standard:
        # The policy approves: the entry names it and its digest now.
        transition(
            ticket,
            TicketState.APPROVED,
            actor_name=f"policy #{policy.pk}",
            details={"standard": True, "policy_id": policy.pk, "policy_digest": ticket.policy_digest},
            queued_at=now,
        )
        enqueue_execution(ticket.pk)
        enqueue_notification(ticket.pk, "approved")
    elif emergency_reason:
        transition(
            ticket,
            TicketState.APPROVED,
            actor=requester,
            details={
                "emergency": True,
                "reason": emergency_reason,
                "review_due_at": ticket.review_due_at.isoformat(),
                "reviews_required": ticket.required_approvals,
            },
            queued_at=now,
        )
        enqueue_execution(ticket.pk)
        enqueue_notification(ticket.pk, "emergency")
    else:
        enqueue_notification(ticket.pk, "awaiting_approval")
    return ticket


def _signed_content(ticket: Ticket) -> dict:
    """What an offline check needs to derive the statement approvers sign
    (audit/passkeys.py): the content the hash covers, and the terms."""
    return {
        "require_passkey": True,
        "content": {
            "content_hash": ticket.content_hash,
            "connector": ticket.connector_id,
            "connector_pin": connector_pin(ticket.connector),
            "not_before": ticket.not_before.isoformat() if ticket.not_before else None,
            "not_after": ticket.not_after.isoformat() if ticket.not_after else None,
        },
        "terms": seals.terms(ticket),
    }


def clean_justification(justification: str) -> str:
    justification = (justification or "").strip()
    if not justification:
        raise InvalidInput({"justification": ["Say why this change is needed."]})
    return justification


def ticket_submit(
    *,
    requester,
    kind: str,
    connector,
    justification: str,
    params: dict,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    index: IndexRules | None = None,
    emergency: bool = False,
    emergency_reason: str = "",
) -> Ticket:
    """File a ticket after checking it against the stored inventory,
    zones and policy. Raises InvalidInput with field errors; stores nothing
    then. A ticket that fits its policy's standard change is approved at
    once; an `emergency` (break_glass holders only, with a reason) runs at
    once and is reviewed afterwards."""
    if kind == TicketKind.CONFIG_CHANGE:
        raise InvalidInput(
            {"kind": ["Configuration changes are filed as configuration requests (/api/users/, /api/policies/, …)."]}
        )
    if emergency:
        try:
            emergencies.check_filing(requester=requester, kind=kind)
        except PermissionDenied as exc:
            record("ticket.emergency_refused", actor=requester, details={"kind": kind, "reason": str(exc)})
            raise
        emergency_reason = emergencies.clean_reason(emergency_reason)
    elif not permissions.can_file_tickets(requester):
        raise PermissionDenied("Only requesters file tickets.")
    justification = clean_justification(justification)
    now = timezone.now()
    # Any offset Python accepts, stored as UTC (PostgreSQL stops at ±15:59).
    not_before = not_before.astimezone(UTC) if not_before else None
    not_after = not_after.astimezone(UTC) if not_after else None
    check_window(not_before, not_after, now)
    index = index or StoredIndex.for_connector(connector)
    checked = check_submission(kind=kind, connector=connector, params=params, index=index)
    if emergency:
        emergencies.check_filing(requester=requester, kind=kind, checked=checked)
        verdict = None
    else:
        # An emergency goes through a freeze (with a notice when it runs); others are refused here.
        check_not_frozen(connector=connector, zone=checked.zone.label, not_before=not_before, not_after=not_after)
        verdict = standard.verdict(kind=kind, checked=checked, index=index)
    try:
        with transaction.atomic():
            return ticket_file(
                requester=requester,
                kind=kind,
                connector=connector,
                justification=justification,
                params=checked.params,
                policy=checked.policy,
                required_approvals=checked.required_approvals,
                zone=checked.zone.label,
                not_before=not_before,
                not_after=not_after,
                standard_verdict=verdict,
                emergency_reason=emergency_reason if emergency else "",
            )
    except IntegrityError as exc:
        # The partial unique index on open vm_create names caught a race.
        raise InvalidInput({"params": {"name": ["An open ticket already creates a VM with this name."]}}) from exc


def _locked_ticket(ticket_id: int) -> Ticket:
    return Ticket.objects.select_for_update().select_related("approver_group").get(pk=ticket_id)


def _check_decider(ticket: Ticket, user) -> None:
    if ticket.requester_id == user.pk:
        raise PermissionDenied("You cannot decide on a ticket you requested.")
    if not permissions.can_decide(user, ticket):
        raise PermissionDenied(f"Only members of {ticket.approver_group.name} decide on {ticket.ref}.")
    conflict = permissions.conflict_of_interest(user, ticket)
    if conflict:
        raise PermissionDenied(conflict)
    if ticket.state != TicketState.PENDING:
        raise StateConflict(f"{ticket.ref} is {ticket.state}; it no longer takes decisions.")
    if ticket.approvals.filter(approver=user).exists():
        raise StateConflict(f"You already decided on {ticket.ref}.")


def _decide(ticket: Ticket, user, decision: str, comment: str, proof: Proof | None = None) -> Approval:
    """Store one decision with its seal (and its passkey proof, if any)."""
    signed = (
        {
            "passkey_credential_id": proof.credential_id,
            "passkey_nonce": proof.nonce,
            "passkey_authenticator_data": proof.authenticator_data,
            "passkey_client_data_json": proof.client_data_json,
            "passkey_signature": proof.signature,
        }
        if proof is not None
        else {}
    )
    approval = Approval.objects.create(
        ticket=ticket, approver=user, decision=decision, comment=comment, content_hash=ticket.content_hash, **signed
    )
    approval.seal = seals.make(**seals.decision_fields(ticket, approval))
    Approval.objects.filter(pk=approval.pk).update(seal=approval.seal)
    return approval


@contextmanager
def _passkey_refusal_kept(ticket_id: int, user):
    """What a refused passkey leaves after the refused transaction rolled
    back: one whose sign count went backwards is flagged, one whose row does
    not bind to the approver is audited as forged."""
    try:
        yield
    except passkey_approvals.PasskeyCloned as exc:
        passkey_approvals.flag_cloned(exc, user=user, ticket_id=ticket_id)
        raise
    except passkey_approvals.PasskeyForged as exc:
        passkey_approvals.forged_audited(exc, user=user, ticket_id=ticket_id)
        raise


def ticket_approve(
    *,
    ticket_id: int,
    approver,
    comment: str = "",
    otp_confirmed: bool = False,
    passkey_assertion: dict | None = None,
    origin: str = "",
) -> Ticket:
    """Record one approval; the approval that reaches the required count moves
    the ticket to approved and queues its execution, exactly once (the row
    lock serialises approvers acting at the same moment). Where the policy
    asks for it, the caller must have confirmed a recent one-time password,
    and must give a passkey assertion (from `origin`) over the ticket's
    statement; a replayed one, one for another ticket or one from a cloned
    authenticator is refused (and audited) before anything else is judged."""
    with (
        _refusal_audited(ticket_id, approver, Decision.APPROVE),
        _passkey_refusal_kept(ticket_id, approver),
        transaction.atomic(),
    ):
        ticket = _locked_ticket(ticket_id)
        proof = None
        if ticket.require_passkey:
            if not passkey_assertion:
                raise PermissionDenied(f"{ticket.ref}'s policy requires approval with your passkey.")
            proof = passkey_approvals.passkey_proof_check(
                ticket=ticket, user=approver, assertion=passkey_assertion, origin=origin
            )
        _check_decider(ticket, approver)
        if ticket.require_otp and not otp_confirmed:
            raise PermissionDenied(
                f"{ticket.ref}'s policy requires a one-time password: confirm a code from your authenticator first."
            )
        _decide(ticket, approver, Decision.APPROVE, comment.strip(), proof)
        given = ticket.approvals.filter(decision=Decision.APPROVE, content_hash=ticket.content_hash).count()
        record(
            "ticket.approval",
            actor=approver,
            ticket=ticket,
            obj=ticket,
            details={
                "comment": comment.strip(),
                "given": given,
                "required": ticket.required_approvals,
                **({"passkey": proof.as_dict()} if proof is not None else {}),
            },
        )
        if given >= ticket.required_approvals:
            transition(ticket, TicketState.APPROVED, actor=approver, queued_at=timezone.now())
            enqueue_execution(ticket.pk)
            enqueue_notification(ticket.pk, "approved")
    return ticket


def ticket_reject(*, ticket_id: int, approver, comment: str) -> Ticket:
    """Any single rejection ends the ticket; it needs a comment."""
    comment = (comment or "").strip()
    if not comment:
        raise InvalidInput({"comment": ["Say why you reject this ticket."]})
    with _refusal_audited(ticket_id, approver, Decision.REJECT), transaction.atomic():
        ticket = _locked_ticket(ticket_id)
        _check_decider(ticket, approver)
        _decide(ticket, approver, Decision.REJECT, comment)
        transition(ticket, TicketState.REJECTED, actor=approver, details={"comment": comment})
        enqueue_notification(ticket.pk, "rejected")
    return ticket


def ticket_cancel(*, ticket_id: int, user) -> Ticket:
    """The requester withdraws a ticket that has not started."""
    with transaction.atomic():
        ticket = _locked_ticket(ticket_id)
        if not permissions.can_cancel(user, ticket):
            raise PermissionDenied("Only the requester cancels a ticket.")
        if ticket.state not in (TicketState.PENDING, TicketState.APPROVED):
            raise StateConflict(f"{ticket.ref} is {ticket.state}; only pending or approved tickets are cancelled.")
        transition(ticket, TicketState.CANCELLED, actor=user)
    return ticket


def access_revoke(*, ticket_id: int, user) -> Ticket:
    """Ask for active access to end now. The worker removes the permission and
    the ticket ends revoked."""
    with transaction.atomic():
        ticket = _locked_ticket(ticket_id)
        if ticket.kind != TicketKind.ADMIN_ACCESS:
            raise StateConflict(f"{ticket.ref} is not an access ticket.")
        if not permissions.can_revoke(user, ticket):
            raise PermissionDenied("Only approvers or the requester revoke access.")
        if ticket.state != TicketState.SUCCEEDED:
            raise StateConflict(f"{ticket.ref} is {ticket.state}; only active access is revoked.")
        record("ticket.revoke_requested", actor=user, ticket=ticket, obj=ticket)
        now = timezone.now()
        if ticket.access_expires_at is None or ticket.access_expires_at > now:
            Ticket.objects.filter(pk=ticket.pk).update(access_expires_at=now)
            ticket.access_expires_at = now
        enqueue_revocation(ticket.pk)
    return ticket

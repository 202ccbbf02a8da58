"""Carrying out approved tickets on the hypervisor: claim, re-check, act,
record. Only the worker runs this; it alone decrypts connector credentials."""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals import permissions, seals
from approvals.choices import Decision, TicketKind, TicketState
from approvals.dispatch import enqueue_execution, enqueue_notification
from approvals.errors import InvalidInput, InventoryUnavailable, StateConflict, describe_errors
from approvals.inventory import InventoryIndex, forget_inventory
from approvals.models import Ticket
from approvals.services.connectors import connector_identity_refused, identity_mismatch_in
from approvals.services.tickets import ticket_content_hash
from approvals.services.transitions import transition
from approvals.kinds import KINDS
from approvals.validation import DERIVED_PARAMS, check_submission
from audit.models import Finding, FindingKind
from audit.writer import record
from connectors.base import ConnectorError, IdentityMismatch, OperationResult, TransientConnectorError
from connectors.registry import connector_for

logger = logging.getLogger(__name__)

# What the worker was doing, stored before each step so that the sweeper can
# tell, after a crash, whether the hypervisor may have been called.
PHASE_CHECKING = "re-checking"
PHASE_CALLING = "calling the hypervisor"
PHASE_DONE = "done"


def backend_for(ticket: Ticket):
    return connector_for(ticket.connector.kind, ticket.connector.connection_config())


def _lease_until():
    return timezone.now() + timedelta(seconds=settings.EXECUTION_LEASE_SECONDS)


def live_index(ticket: Ticket) -> InventoryIndex:
    """The connector's inventory read now; TransientConnectorError when it cannot be."""
    try:
        return InventoryIndex.for_connector(ticket.connector, refresh=True)
    except InventoryUnavailable as exc:
        raise TransientConnectorError(str(exc)) from exc


def approvals_problem(ticket: Ticket) -> str | None:
    """Why the ticket's approvals no longer carry it, in words, or None: its
    content changed, it carries a rejection, or too few approvals are still
    valid (approver active, still in the group, not the requester, no
    conflict of interest). Records whose seals do not verify count for
    nothing: the ticket fails, with a finding and an audit entry."""
    decisions = list(ticket.approvals.select_related("approver"))
    unverified = seals.records_problem(ticket, decisions)
    if unverified:
        _records_refused(ticket, unverified)
        return f"Approval records do not verify: {unverified}."
    if ticket_content_hash(ticket) != ticket.content_hash:
        return "The ticket's content no longer matches what was approved."
    if any(a.decision == Decision.REJECT for a in decisions):
        return "The ticket carries a rejection."
    approvers = {
        a.approver_id
        for a in decisions
        if a.decision == Decision.APPROVE
        and a.content_hash == ticket.content_hash
        and a.approver_id != ticket.requester_id
        and a.approver.is_active
        and a.approver.groups.filter(pk=ticket.approver_group_id).exists()
        and permissions.conflict_of_interest(a.approver, ticket) is None
    }
    if len(approvers) < ticket.required_approvals:
        return (
            f"Only {len(approvers)} of {ticket.required_approvals} approvals are still valid "
            "(an approver left the approver group, was deactivated or has a conflict of interest)."
        )
    return None


def identity_problem(ticket: Ticket, index: InventoryIndex) -> str | None:
    """Whether every object the ticket bound is still there and the same one:
    a VM by its instance UUID, everything else by its id."""
    for _field, ref in _bound_objects(ticket):
        live = index.get(ref["id"])
        if live is None:
            return f"The {ref['type']} {ref['name']} ({ref['id']}, {ref['path']}) is gone; needs a new ticket."
        if ref.get("instance_uuid") and getattr(live, "instance_uuid", "") != ref["instance_uuid"]:
            return (
                f"The VM {ref['id']} is no longer the one approved (instance UUID {ref['instance_uuid']}); "
                "needs a new ticket."
            )
    return None


def renamed_objects(ticket: Ticket, index: InventoryIndex) -> dict:
    """{field: {"from": name approved, "to": name now}} for bound objects
    renamed since; a rename does not change what the ticket acts on."""
    renames = {}
    for field, ref in _bound_objects(ticket):
        live = index.get(ref["id"])
        if live is not None and live.name != ref["name"]:
            renames[field] = {"id": ref["id"], "from": ref["name"], "to": live.name}
    return renames


def _bound_objects(ticket: Ticket):
    for field, value in (ticket.params.get("objects") or {}).items():
        refs = value if isinstance(value, list) else [value]
        for i, ref in enumerate(refs):
            if isinstance(ref, dict) and "from" in ref:  # a network_map pair
                yield f"{field}[{i}].from", ref["from"]
                yield f"{field}[{i}].to", ref["to"]
            elif isinstance(ref, dict):
                yield (field if len(refs) == 1 and not isinstance(value, list) else f"{field}[{i}]"), ref


def _records_refused(ticket: Ticket, words: str) -> None:
    """Seals that do not verify: someone wrote these records without the
    key. One open finding per ticket, and an audit entry."""
    now = timezone.now()
    ref = f"ticket:{ticket.pk}:records"
    details = {"ticket": ticket.ref, "problem": words}
    with transaction.atomic():
        record("ticket.records_unverified", actor_name="worker", ticket=ticket, obj=ticket, details=details)
        known = Finding.objects.filter(kind=FindingKind.RECORDS_UNVERIFIED, object_ref=ref, acknowledged_at=None)
        if known.update(last_seen=now):
            return
        finding = Finding.objects.create(
            connector=ticket.connector,
            kind=FindingKind.RECORDS_UNVERIFIED,
            object_ref=ref,
            observed=details,
            expected={"every submission and decision": "sealed with SEAL_KEY"},
            first_seen=now,
            last_seen=now,
        )
        record(
            "finding.raised",
            actor_name="worker",
            ticket=ticket,
            obj=finding,
            details={"kind": finding.kind, "object_ref": ref, "observed": details},
        )


def recheck(ticket: Ticket, index: InventoryIndex) -> str | None:
    """Why the ticket must not run now, in words, or None, judged against the
    live inventory in `index`: approvals, window, identities, every
    submission rule, and the zone, policy, approver group and one-time
    password requirement it was approved under."""
    problem = approvals_problem(ticket)
    if problem:
        return problem
    if ticket.not_after and timezone.now() >= ticket.not_after:
        return "The change window closed before the work could start."
    problem = identity_problem(ticket, index)
    if problem:
        return problem
    params = {k: v for k, v in ticket.params.items() if k not in DERIVED_PARAMS}
    try:
        checked = check_submission(
            kind=ticket.kind, connector=ticket.connector, params=params, index=index, recheck=True
        )
    except InvalidInput as exc:  # the world changed since approval
        return "Re-check against the live inventory failed: " + describe_errors(exc.errors)
    if checked.required_approvals > ticket.required_approvals:
        return (
            f"The zone rules now require {checked.required_approvals} approvals; "
            f"the ticket has {ticket.required_approvals}."
        )
    changed = []
    if checked.zone.label != (ticket.zone or "untrusted"):
        changed.append(f"zone {ticket.zone or 'untrusted'} → {checked.zone.label}")
    if ticket.policy_id is not None and (
        checked.policy.pk != ticket.policy_id or checked.policy.digest() != ticket.policy_digest
    ):
        changed.append("the policy")
    if checked.policy.approver_group_id != ticket.approver_group_id:
        changed.append("the approver group")
    if checked.policy.require_otp != ticket.require_otp:
        changed.append("the one-time password requirement")
    if changed:
        return f"Changed since approval: {', '.join(changed)}; needs a new ticket."
    return None


def operation_done(ticket: Ticket, backend, index: InventoryIndex | None = None) -> bool:
    """Whether the hypervisor already shows the ticket's effect, judged by
    identity (each kind says how; `index`: a live inventory already read)."""
    return KINDS[ticket.kind].done(ticket, backend, index)


def perform(ticket: Ticket, backend, on_task) -> OperationResult:
    return KINDS[ticket.kind].perform(ticket, backend, on_task)


def _succeed(ticket: Ticket, result: OperationResult | None, *, actor_name: str) -> None:
    now = timezone.now()
    fields = {
        "finished_at": now,
        "progress": PHASE_DONE,
        "lease_owner": "",
        "lease_expires_at": None,
        "result": {
            "summary": result.result if result else "confirmed on the hypervisor",
            "already_done": result.already_done if result else True,
            "object_id": result.object_id if result else None,
        },
    }
    if result and result.task_id:
        fields["hypervisor_task_id"] = result.task_id
    if ticket.kind == TicketKind.ADMIN_ACCESS:
        fields["access_expires_at"] = now + timedelta(
            seconds=ticket.params["duration_minutes"] * settings.ACCESS_MINUTE_SECONDS
        )
    with transaction.atomic():
        transition(
            ticket,
            TicketState.SUCCEEDED,
            expect=TicketState.RUNNING,
            actor_name=actor_name,
            details={"result": fields["result"], "hypervisor_task_id": fields.get("hypervisor_task_id", "")},
            **fields,
        )
        enqueue_notification(ticket.pk, "succeeded")
    # The hypervisor changed: the next submission must not be checked against
    # the inventory as it was before.
    if ticket.connector_id is not None:
        forget_inventory(ticket.connector_id)


def _fail(ticket: Ticket, reason: str, *, actor_name: str) -> None:
    with transaction.atomic():
        transition(
            ticket,
            TicketState.FAILED,
            expect=TicketState.RUNNING,
            actor_name=actor_name,
            details={"error": reason},
            error=reason,
            finished_at=timezone.now(),
            lease_owner="",
            lease_expires_at=None,
        )
        enqueue_notification(ticket.pk, "failed")


def _still_ours(ticket: Ticket, worker: str, **fields) -> bool:
    """Update fields on a ticket this worker still holds; False when the lease
    was taken back (then the worker must stop without acting)."""
    return bool(
        Ticket.objects.filter(pk=ticket.pk, state=TicketState.RUNNING, lease_owner=worker).update(
            updated_at=timezone.now(), **fields
        )
    )


def ticket_execute(*, ticket_id: int, worker: str) -> str:
    """Run an approved ticket once. A duplicate delivery, or a second worker,
    finds nothing to claim and returns without acting."""
    ticket = Ticket.objects.select_related("connector", "approver_group").get(pk=ticket_id)
    if ticket.state != TicketState.APPROVED:
        return f"nothing to do: {ticket.state}"
    now = timezone.now()
    if ticket.not_after and now >= ticket.not_after:
        try:
            transition(ticket, TicketState.EXPIRED, actor_name=worker, details={"reason": "change window closed"})
        except StateConflict:
            pass
        return "expired"
    if ticket.not_before and now < ticket.not_before:
        # The sweeper queues it again once the window opens; no worker waits.
        return "waiting for the change window"
    try:
        transition(
            ticket,
            TicketState.RUNNING,
            actor_name=worker,
            details={"worker": worker, "attempt": ticket.attempts + 1},
            lease_owner=worker,
            lease_expires_at=_lease_until(),
            started_at=now,
            progress=PHASE_CHECKING,
            attempts=ticket.attempts + 1,
            error="",
        )
    except StateConflict:
        return "claimed elsewhere"
    if ticket.kind == TicketKind.CONFIG_CHANGE:
        return _apply_configuration(ticket, worker)

    def on_task(task_id: str) -> None:
        _still_ours(ticket, worker, hypervisor_task_id=task_id)
        record("hypervisor.task_started", actor_name=worker, ticket=ticket, obj=ticket, details={"task_id": task_id})

    tries = settings.EXECUTION_MAX_ATTEMPTS
    for attempt in range(1, tries + 1):
        try:
            backend = backend_for(ticket)
            index = live_index(ticket)
            if operation_done(ticket, backend, index):
                _succeed(ticket, None, actor_name=worker)
                return "already done"
            problem = recheck(ticket, index)
            if problem:
                _fail(ticket, problem, actor_name=worker)
                return "re-check failed"
            renames = renamed_objects(ticket, index)
            if renames and attempt == 1:
                record("ticket.objects_renamed", actor_name=worker, ticket=ticket, obj=ticket, details=renames)
            if not _still_ours(ticket, worker, progress=PHASE_CALLING, lease_expires_at=_lease_until()):
                return "lease lost"
            result = perform(ticket, backend, on_task)
        except (IdentityMismatch, TransientConnectorError) as exc:
            # The live inventory read wraps connector errors: look behind it.
            mismatch = identity_mismatch_in(exc)
            if mismatch is not None:
                connector_identity_refused(connector=ticket.connector, error=mismatch, actor_name=worker)
                _fail(ticket, f"Refused to connect to the hypervisor: {mismatch}", actor_name=worker)
                return "failed"
            record(
                "hypervisor.retry",
                actor_name=worker,
                ticket=ticket,
                obj=ticket,
                details={"attempt": attempt, "of": tries, "error": str(exc)},
            )
            if attempt == tries:
                _fail(ticket, f"The hypervisor could not be reached after {tries} tries: {exc}", actor_name=worker)
                return "failed"
            if not _still_ours(ticket, worker, progress=PHASE_CHECKING, lease_expires_at=_lease_until()):
                return "lease lost"
            time.sleep(settings.EXECUTION_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
            continue
        except ConnectorError as exc:
            _fail(ticket, f"The hypervisor refused: {exc}", actor_name=worker)
            return "failed"
        record(
            "hypervisor.operation",
            actor_name=worker,
            ticket=ticket,
            obj=ticket,
            details={"task_id": result.task_id, "result": result.result, "already_done": result.already_done},
        )
        _succeed(ticket, result, actor_name=worker)
        return "succeeded"
    return "failed"


def _apply_configuration(ticket: Ticket, worker: str) -> str:
    """A configuration request: re-check its approvals and its target, then
    apply it and succeed in one transaction, so it is either wholly applied
    or not at all."""
    from approvals.services.config_requests import config_apply, config_problem

    problem = approvals_problem(ticket) or config_problem(ticket)
    if problem:
        _fail(ticket, problem, actor_name=worker)
        return "re-check failed"
    try:
        with transaction.atomic():
            summary = config_apply(ticket, actor_name=worker)
            _succeed(ticket, OperationResult(task_id=None, result=summary), actor_name=worker)
    except InvalidInput as exc:
        _fail(ticket, "The change could not be applied: " + describe_errors(exc.errors), actor_name=worker)
        return "failed"
    except (ValidationError, IntegrityError) as exc:
        words = "; ".join(getattr(exc, "messages", None) or [str(exc)])
        _fail(ticket, f"The change could not be applied: {words}", actor_name=worker)
        return "failed"
    except ConnectorError as exc:
        _fail(ticket, f"The hypervisor connection was refused: {exc}", actor_name=worker)
        return "failed"
    return "succeeded"


def reconcile_expired_lease(ticket: Ticket, *, actor_name: str = "sweeper") -> str:
    """A running ticket whose worker stopped renewing its lease: find out from
    the hypervisor what happened. Done -> succeeded; the worker provably never
    called the hypervisor -> queued again; otherwise failed, needing an
    operator. Never a blind re-run."""
    if ticket.kind == TicketKind.CONFIG_CHANGE:
        # Applied and succeeded in one transaction: a worker that died left nothing half done.
        return _queue_again(ticket, actor_name=actor_name, reason="worker stopped before applying; queued again")
    try:
        backend = backend_for(ticket)
        if operation_done(ticket, backend):
            _succeed(ticket, None, actor_name=actor_name)
            return "succeeded"
        if ticket.hypervisor_task_id:
            state, error = backend.task_state(ticket.hypervisor_task_id)
            if state in ("queued", "running"):
                Ticket.objects.filter(pk=ticket.pk, state=TicketState.RUNNING).update(lease_expires_at=_lease_until())
                return "still running on the hypervisor"
            if state == "error":
                _fail(ticket, f"The hypervisor task {ticket.hypervisor_task_id} failed: {error}", actor_name=actor_name)
                return "failed"
    except IdentityMismatch as exc:
        connector_identity_refused(connector=ticket.connector, error=exc, actor_name=actor_name)
        _fail(
            ticket,
            f"Needs an operator: the outcome cannot be checked, the connector's endpoint is not the pinned "
            f"hypervisor: {exc}",
            actor_name=actor_name,
        )
        return "failed"
    except TransientConnectorError:
        return "hypervisor unreachable; will look again"
    except ConnectorError:
        pass
    if ticket.progress == PHASE_CHECKING:
        return _queue_again(
            ticket, actor_name=actor_name, reason="worker stopped before calling the hypervisor; queued again"
        )
    _fail(
        ticket,
        "Needs an operator: the worker stopped while calling the hypervisor and the outcome cannot be "
        "confirmed; the change is not there now. Check the hypervisor, then file a new ticket if needed.",
        actor_name=actor_name,
    )
    return "failed"


def _queue_again(ticket: Ticket, *, actor_name: str, reason: str) -> str:
    with transaction.atomic():
        transition(
            ticket,
            TicketState.APPROVED,
            expect=TicketState.RUNNING,
            actor_name=actor_name,
            details={"reason": reason},
            lease_owner="",
            lease_expires_at=None,
            queued_at=timezone.now(),
        )
        enqueue_execution(ticket.pk)
    return "queued again"


def access_expire(*, ticket_id: int, actor_name: str) -> str:
    """Remove a granted permission whose time is up (or was revoked) and end
    the ticket revoked."""
    ticket = Ticket.objects.select_related("connector").get(pk=ticket_id)
    if ticket.kind != TicketKind.ADMIN_ACCESS or ticket.state != TicketState.SUCCEEDED:
        return f"nothing to do: {ticket.state}"
    if ticket.access_expires_at and ticket.access_expires_at > timezone.now():
        return "not yet"
    params = ticket.params
    try:
        result = backend_for(ticket).remove_permission(principal=params["principal"], entity_id=params["entity"])
    except ConnectorError as exc:
        if isinstance(exc, IdentityMismatch):
            connector_identity_refused(connector=ticket.connector, error=exc, actor_name=actor_name)
        record(
            "hypervisor.revoke_failed", actor_name=actor_name, ticket=ticket, obj=ticket, details={"error": str(exc)}
        )
        return "will retry"  # the sweeper tries again on its next run
    record(
        "hypervisor.operation",
        actor_name=actor_name,
        ticket=ticket,
        obj=ticket,
        details={"operation": "remove_permission", "task_id": result.task_id, "result": result.result},
    )
    try:
        transition(ticket, TicketState.REVOKED, actor_name=actor_name, details={"result": result.result})
    except StateConflict:
        return "already revoked"
    enqueue_notification(ticket.pk, "revoked")
    return "revoked"

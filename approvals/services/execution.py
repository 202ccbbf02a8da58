"""Carrying out approved tickets on the hypervisor: claim, re-check, act,
record. Only the worker runs this; it alone decrypts connector credentials."""

import logging
import threading
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.utils import timezone

from approvals import permissions, seals
from approvals.choices import Decision, TicketKind, TicketState
from approvals.dispatch import enqueue_execution, enqueue_notification
from approvals.errors import InvalidInput, StateConflict, describe_errors
from approvals.inventory import InventoryIndex, store_after_change
from approvals.kinds import KINDS
from approvals.models import Ticket, Zone
from approvals.services import emergencies, memberships, passkey_approvals, standard_changes
from approvals.services.connectors import connector_identity_refused, identity_mismatch_in
from approvals.services.history import history_problem
from approvals.services.holds import claim_lock, conflict_gate, freeze_gate
from approvals.services.tickets import ticket_content_hash
from approvals.services.transitions import transition
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

LEASE_LOST = "lease lost"
# Seconds between two looks at a hypervisor task whose answer was lost.
TASK_POLL_SECONDS = 1.0


def backend_for(ticket: Ticket):
    return connector_for(ticket.connector.kind, ticket.connector.connection_config())


def _lease_until():
    return timezone.now() + timedelta(seconds=settings.EXECUTION_LEASE_SECONDS)


def _longest_run() -> float:
    """Seconds one execution may hold its lease at most: the broker's
    visibility timeout, after which the message is handed out again anyway."""
    return float(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600))


def _renew_lease(ticket_id: int, owner: str) -> bool:
    """Extend the lease of a ticket `owner` still holds: a compare-and-set on
    (pk, running, owner). False when the ticket left running or the lease
    was taken back."""
    return bool(
        Ticket.objects.filter(pk=ticket_id, state=TicketState.RUNNING, lease_owner=owner).update(
            lease_expires_at=_lease_until()
        )
    )


class LeaseHeartbeat:
    """Renews a worker's lease every EXECUTION_LEASE_RENEW_SECONDS from a
    thread of its own, for as long as the ticket executes.

    A thread rather than a callback from the task-wait loop: the worker also
    blocks inside single SOAP calls (a slow RelocateVM_Task is answered only
    when vCenter has queued it, a read can take up to the request timeout),
    in the inventory read and in the retry pauses, and the lease must hold
    through all of them. A worker that dies takes the thread with it, so the
    lease runs out within EXECUTION_LEASE_SECONDS of the crash.

    The thread stops when told to, when the ticket is no longer running under
    this owner (then `lost` is set), or after the longest run a delivery may
    take. It renews nothing else and writes no audit entry."""

    def __init__(self, ticket_id: int, owner: str):
        self.ticket_id = ticket_id
        self.owner = owner
        self.lost = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{ticket_id}", daemon=True)

    def __enter__(self) -> "LeaseHeartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        """Renew no more; returns once a renewal under way has ended."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        until = time.monotonic() + _longest_run()
        try:
            while not self._stopped.wait(settings.EXECUTION_LEASE_RENEW_SECONDS):
                if time.monotonic() > until:
                    logger.warning(
                        "ticket %s ran past %ss; its lease is no longer renewed", self.ticket_id, _longest_run()
                    )
                    return
                try:
                    renewed = _renew_lease(self.ticket_id, self.owner)
                except DatabaseError:
                    # Try again at the next beat; if the database stays away the
                    # lease runs out and the sweeper settles the ticket.
                    logger.warning("lease of ticket %s not renewed", self.ticket_id, exc_info=True)
                    connections.close_all()
                    continue
                if not renewed:
                    self.lost.set()
                    return
        finally:
            connections.close_all()  # this thread's own connections only


def _holds(ticket: Ticket, owner: str) -> bool:
    """Inside a transaction: whether `owner` still holds the running ticket,
    the row locked until the transaction ends."""
    return (
        Ticket.objects.select_for_update()
        .filter(pk=ticket.pk, state=TicketState.RUNNING, lease_owner=owner)
        .values_list("pk", flat=True)
        .first()
        is not None
    )


def live_index(ticket: Ticket, backend) -> InventoryIndex:
    """The ticket's own objects read now from the hypervisor, by id (with
    their ancestors, and for a container everything beneath it), indexed
    with the connector's zones: the cost follows the ticket, not the estate.
    Nothing is taken from the portal's cached or stored inventory."""
    wanted = {ref["id"]: ref["type"] for _field, ref in _bound_objects(ticket) if ref.get("id") and ref.get("type")}
    # The role list (privileges and all, most of such a read) only for a
    # ticket that names a role, whose re-check looks the role up.
    inventory = backend.read_objects(wanted, roles="role" in ticket.params)
    return InventoryIndex(inventory, list(Zone.objects.filter(connector=ticket.connector)))


def approvals_problem(ticket: Ticket) -> str | None:
    """Why the ticket's approvals no longer carry it, in words, or None: its
    content changed, it carries a rejection, or too few approvals are still
    valid (approver active, still in the group, not the requester, no
    conflict of interest). Records whose seals do not verify count for
    nothing: the ticket fails, with a finding and an audit entry. Where the
    ticket requires passkeys, an approval counts only with its approver's
    passkey signature over the ticket's statement."""
    decisions = list(ticket.approvals.select_related("approver"))
    unverified = seals.records_problem(ticket, decisions)
    if unverified:
        _records_refused(ticket, unverified)
        return f"Approval records do not verify: {unverified}."
    replayed = history_problem(ticket)
    if replayed:
        _records_refused(ticket, replayed)
        return f"The ticket's history does not verify: {replayed}."
    forged = memberships.forged_roles_problem(ticket, decisions)
    if forged:  # a role the database shows and no audit entry gave
        _records_refused(ticket, f"role membership not in the audit log: {forged}")
        return f"Role memberships do not verify: {forged}."
    if ticket_content_hash(ticket) != ticket.content_hash:
        return "The ticket's content no longer matches what was approved."
    if any(a.decision == Decision.REJECT for a in decisions):
        return "The ticket carries a rejection."
    if ticket.is_emergency:
        # Sealed as an emergency (the seal above covers flag and reason):
        # it runs without approvals, only as that.
        return emergencies.execution_problem(ticket)
    if ticket.is_standard:
        # Approved by its policy: only by the policy an approved
        # configuration request applied.
        unapplied = standard_changes.applied_problem(ticket)
        if unapplied:
            _records_refused(ticket, f"standard change refused: {unapplied}")
            return f"Refused as a standard change: {unapplied}."
        return None
    unproved = []
    if ticket.require_passkey:
        # Each approval counts only if its approver's registered, active
        # passkey signed the ticket's statement as it is now.
        for a in [a for a in decisions if a.decision == Decision.APPROVE]:
            problem = passkey_approvals.approval_proof_problem(ticket, a)
            if problem:
                unproved.append(f"{a.approver.get_username()}'s approval {problem}")
                decisions.remove(a)
    # Who of the approvers is in the approver group now: one look for all.
    in_group = set(
        get_user_model()
        .groups.through.objects.filter(
            group_id=ticket.approver_group_id, user_id__in=[a.approver_id for a in decisions]
        )
        .values_list("user_id", flat=True)
    )
    approvers = {
        a.approver_id
        for a in decisions
        if a.decision == Decision.APPROVE
        and a.content_hash == ticket.content_hash
        and a.approver_id != ticket.requester_id
        and a.approver.is_active
        and a.approver_id in in_group
        and permissions.conflict_of_interest(a.approver, ticket) is None
    }
    if len(approvers) < ticket.required_approvals:
        if unproved:
            return (
                f"Only {len(approvers)} of {ticket.required_approvals} approvals are proved by passkey: "
                + "; ".join(unproved)
                + "."
            )
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
    if ticket.is_standard:
        return standard_changes.fit_problem(ticket, checked, index)
    return None


def operation_done(ticket: Ticket, backend, index: InventoryIndex | None = None) -> bool:
    """Whether the hypervisor already shows the ticket's effect, judged by
    identity (each kind says how; `index`: a live inventory already read)."""
    return KINDS[ticket.kind].done(ticket, backend, index)


def perform(ticket: Ticket, backend, on_task) -> OperationResult:
    return KINDS[ticket.kind].perform(ticket, backend, on_task)


def _succeed(
    ticket: Ticket,
    result: OperationResult | None,
    *,
    actor_name: str,
    owner: str | None = None,
    operation: bool = False,
) -> bool:
    """Record success. With `owner`, only while it still holds the lease
    (False, and nothing but the operation written, when the lease was
    taken). With `operation`, `result` is what this worker's call did: its
    audit entry is written in the same commit, and stays even when the
    lease was taken meanwhile."""
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
        # The ticket's row before the chain head, in the order every
        # transition takes them.
        held = owner is None or _holds(ticket, owner)
        if operation and result is not None:
            record(
                "hypervisor.operation",
                actor_name=actor_name,
                ticket=ticket,
                obj=ticket,
                details={
                    "task_id": result.task_id,
                    "result": result.result,
                    "already_done": result.already_done,
                    **dict(result.details),
                },
            )
        if not held:
            return False
        transition(
            ticket,
            TicketState.SUCCEEDED,
            expect=TicketState.RUNNING,
            actor_name=actor_name,
            details={"result": fields["result"], "hypervisor_task_id": fields.get("hypervisor_task_id", "")},
            **fields,
        )
        enqueue_notification(ticket.pk, "succeeded")
    # The VMs it bound or made changed: the stored inventory shows them at
    # once, not only once the sync reports them.
    if ticket.connector_id is not None and ticket.kind in KINDS:
        wanted = {
            ref["id"]: "vm" for _field, ref in _bound_objects(ticket) if ref.get("type") == "vm" and ref.get("id")
        }
        if ticket.kind == TicketKind.VM_CREATE and result and result.object_id:
            wanted[result.object_id] = "vm"
        if wanted:
            store_after_change(
                connector=ticket.connector,
                backend=backend_for(ticket),
                objects=wanted,
                read=result.read_back if result else None,
            )
    return True


def _fail(ticket: Ticket, reason: str, *, actor_name: str, owner: str | None = None) -> bool:
    """Record failure in words. With `owner`, only while it still holds the
    lease (False, and nothing written, when the lease was taken)."""
    with transaction.atomic():
        if owner is not None and not _holds(ticket, owner):
            return False
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
    return True


def _still_ours(ticket: Ticket, worker: str, **fields) -> bool:
    """Update fields on a ticket this worker still holds, in one
    compare-and-set on (pk, running, worker); False when the lease was taken
    back (then the worker must stop without acting)."""
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
    with transaction.atomic():
        # Of two tickets on the same object, the second sees the first running.
        claim_lock(ticket)
        # `emergency`: the break-glass flag, where tickets carry one.
        held = freeze_gate(ticket, emergency=ticket.is_emergency, actor_name=worker) or conflict_gate(
            ticket, actor_name=worker
        )
        if held:
            return held
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
    with LeaseHeartbeat(ticket.pk, worker) as heartbeat:
        return _carry_out(ticket, worker, heartbeat)


def _carry_out(ticket: Ticket, worker: str, heartbeat: LeaseHeartbeat) -> str:
    """Re-check and act, for a ticket this worker has claimed. Errors before
    the hypervisor is called are retried with backoff; once PHASE_CALLING is
    recorded the operation is never called again (see _settle_after_call)."""

    def on_task(task_id: str) -> None:
        # Stored before the wait, for whoever holds the lease when the answer
        # is lost: the task's state is the proof of what happened. One commit.
        with transaction.atomic():
            Ticket.objects.filter(pk=ticket.pk, state=TicketState.RUNNING).update(
                hypervisor_task_id=task_id, updated_at=timezone.now()
            )
            record(
                "hypervisor.task_started", actor_name=worker, ticket=ticket, obj=ticket, details={"task_id": task_id}
            )

    def settled(written: bool, outcome: str) -> str:
        return outcome if written else LEASE_LOST

    tries = settings.EXECUTION_MAX_ATTEMPTS
    for attempt in range(1, tries + 1):
        called = False
        try:
            backend = backend_for(ticket)
            index = live_index(ticket, backend)
            if operation_done(ticket, backend, index):
                return settled(_succeed(ticket, None, actor_name=worker, owner=worker), "already done")
            problem = recheck(ticket, index)
            if problem:
                return settled(_fail(ticket, problem, actor_name=worker, owner=worker), "re-check failed")
            renames = renamed_objects(ticket, index)
            if renames and attempt == 1:
                record("ticket.objects_renamed", actor_name=worker, ticket=ticket, obj=ticket, details=renames)
            # The lease is checked and renewed in this one compare-and-set,
            # and the call follows it directly: a worker whose lease was
            # taken back stops here, without acting.
            if not _still_ours(ticket, worker, progress=PHASE_CALLING, lease_expires_at=_lease_until()):
                return LEASE_LOST
            called = True
            result = perform(ticket, backend, on_task)
        except (IdentityMismatch, TransientConnectorError) as exc:
            # The live inventory read wraps connector errors: look behind it.
            mismatch = identity_mismatch_in(exc)
            if mismatch is not None:
                # Found at login, before anything is sent to the endpoint.
                connector_identity_refused(connector=ticket.connector, error=mismatch, actor_name=worker)
                return settled(
                    _fail(ticket, f"Refused to connect to the hypervisor: {mismatch}", actor_name=worker, owner=worker),
                    "failed",
                )
            if called:
                return _settle_after_call(ticket, worker, exc, heartbeat)
            record(
                "hypervisor.retry",
                actor_name=worker,
                ticket=ticket,
                obj=ticket,
                details={"attempt": attempt, "of": tries, "error": str(exc)},
            )
            if attempt == tries:
                return settled(
                    _fail(
                        ticket,
                        f"The hypervisor could not be reached after {tries} tries: {exc}",
                        actor_name=worker,
                        owner=worker,
                    ),
                    "failed",
                )
            if not _still_ours(ticket, worker, progress=PHASE_CHECKING, lease_expires_at=_lease_until()):
                return LEASE_LOST
            time.sleep(settings.EXECUTION_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
            continue
        except ConnectorError as exc:
            return settled(_fail(ticket, f"The hypervisor refused: {exc}", actor_name=worker, owner=worker), "failed")
        return settled(_succeed(ticket, result, actor_name=worker, owner=worker, operation=True), "succeeded")
    return "failed"


def _settle_after_call(ticket: Ticket, worker: str, error: ConnectorError, heartbeat: LeaseHeartbeat) -> str:
    """The hypervisor was called and no answer came back (a dropped
    connection, a session that expired mid-call): the change may have been
    made. The operation is not called again; the outcome is settled from
    proof. A recorded task decides first (waited for while it is queued or
    running); without one, the inventory decides by identity; when neither
    can, the ticket fails, needing an operator. A hypervisor that cannot be
    read is left to the sweeper: the lease is given up and it looks again at
    every sweep."""
    record("hypervisor.answer_lost", actor_name=worker, ticket=ticket, obj=ticket, details={"error": str(error)})
    tries = settings.EXECUTION_MAX_ATTEMPTS
    for attempt in range(1, tries + 1):
        if heartbeat.lost.is_set():
            return LEASE_LOST
        try:
            outcome = _outcome_from_proof(ticket, backend_for(ticket), error=error, worker=worker, heartbeat=heartbeat)
        except TransientConnectorError as exc:
            logger.warning("%s: the outcome cannot be checked yet (%s/%s): %s", ticket.ref, attempt, tries, exc)
            time.sleep(settings.EXECUTION_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
            continue
        except ConnectorError as exc:
            if isinstance(exc, IdentityMismatch):
                connector_identity_refused(connector=ticket.connector, error=exc, actor_name=worker)
            written = _fail(
                ticket,
                f"Needs an operator: the hypervisor was called and its answer was lost ({error}); the outcome "
                f"cannot be checked: {exc}. It was not called again. Check the hypervisor, then file a new ticket "
                "if needed.",
                actor_name=worker,
                owner=worker,
            )
            return "failed" if written else LEASE_LOST
        return outcome
    heartbeat.stop()
    Ticket.objects.filter(pk=ticket.pk, state=TicketState.RUNNING, lease_owner=worker).update(
        lease_expires_at=timezone.now()
    )
    return "in doubt; left to the sweeper"


def _outcome_from_proof(ticket: Ticket, backend, *, error: ConnectorError, worker: str, heartbeat) -> str:
    """Settle from the recorded task (waited for while it runs), then from the
    inventory by identity; TransientConnectorError when the hypervisor cannot
    be read."""
    task_id = Ticket.objects.filter(pk=ticket.pk).values_list("hypervisor_task_id", flat=True).first() or ""
    if task_id:
        deadline = time.monotonic() + _longest_run()
        state, message = backend.task_state(task_id)
        while state in ("queued", "running") and time.monotonic() < deadline:
            if heartbeat.lost.is_set():
                return LEASE_LOST
            time.sleep(TASK_POLL_SECONDS)
            state, message = backend.task_state(task_id)
        if state == "success" and operation_done(ticket, backend):
            done = OperationResult(task_id=task_id, result=f"hypervisor task {task_id} succeeded (its answer was lost)")
            record(
                "hypervisor.operation",
                actor_name=worker,
                ticket=ticket,
                obj=ticket,
                details={"task_id": task_id, "result": done.result, "already_done": False},
            )
            return "succeeded" if _succeed(ticket, done, actor_name=worker, owner=worker) else LEASE_LOST
        if state == "error":
            written = _fail(ticket, f"The hypervisor task {task_id} failed: {message}", actor_name=worker, owner=worker)
            return "failed" if written else LEASE_LOST
    if operation_done(ticket, backend):
        return "succeeded" if _succeed(ticket, None, actor_name=worker, owner=worker) else LEASE_LOST
    task = f"its task {task_id} reports {state}" if task_id else "no hypervisor task was recorded"
    written = _fail(
        ticket,
        f"Needs an operator: the hypervisor was called and its answer was lost ({error}); {task} but the change "
        "is not there as approved now. It was not called again. Check the hypervisor, then file a new ticket if needed.",
        actor_name=worker,
        owner=worker,
    )
    return "failed" if written else LEASE_LOST


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
    """A running ticket whose worker stopped renewing its lease: take the
    lease (a compare-and-set on the expired lease, so a worker that renewed
    in the meantime keeps it, and one that did not finds it gone and stops),
    then find out from the hypervisor what happened. Done -> succeeded; the
    worker provably never called the hypervisor -> queued again; a recorded
    task still running -> looked at again when this lease runs out; a task
    that failed -> failed with its error; otherwise failed, needing an
    operator. Never a blind re-run."""
    owner = f"{actor_name}:{uuid.uuid4().hex[:12]}"
    now = timezone.now()
    with transaction.atomic():
        taken = Ticket.objects.filter(
            pk=ticket.pk, state=TicketState.RUNNING, lease_owner=ticket.lease_owner, lease_expires_at__lte=now
        ).update(lease_owner=owner, lease_expires_at=_lease_until(), updated_at=now)
        if not taken:
            return "lease renewed or settled meanwhile"
        if not ticket.lease_owner.startswith(f"{actor_name}:"):
            record(
                "ticket.lease_taken",
                actor_name=actor_name,
                ticket=ticket,
                obj=ticket,
                details={"from": ticket.lease_owner, "progress": ticket.progress},
            )
    ticket.refresh_from_db(fields=["lease_owner", "lease_expires_at", "progress", "hypervisor_task_id"])
    if ticket.kind == TicketKind.CONFIG_CHANGE:
        # Applied and succeeded in one transaction: a worker that died left nothing half done.
        return _queue_again(
            ticket, actor_name=actor_name, reason="worker stopped before applying; queued again", owner=owner
        )
    try:
        backend = backend_for(ticket)
        if operation_done(ticket, backend):
            return "succeeded" if _succeed(ticket, None, actor_name=actor_name, owner=owner) else LEASE_LOST
        if ticket.hypervisor_task_id:
            state, error = backend.task_state(ticket.hypervisor_task_id)
            if state in ("queued", "running"):
                return "still running on the hypervisor"  # this lease runs out, the next sweep looks again
            if state == "error":
                reason = f"The hypervisor task {ticket.hypervisor_task_id} failed: {error}"
                return "failed" if _fail(ticket, reason, actor_name=actor_name, owner=owner) else LEASE_LOST
    except IdentityMismatch as exc:
        connector_identity_refused(connector=ticket.connector, error=exc, actor_name=actor_name)
        _fail(
            ticket,
            f"Needs an operator: the outcome cannot be checked, the connector's endpoint is not the pinned "
            f"hypervisor: {exc}",
            actor_name=actor_name,
            owner=owner,
        )
        return "failed"
    except TransientConnectorError:
        # Give the lease up at once: the next sweep looks again.
        Ticket.objects.filter(pk=ticket.pk, state=TicketState.RUNNING, lease_owner=owner).update(
            lease_expires_at=timezone.now()
        )
        return "hypervisor unreachable; will look again"
    except ConnectorError:
        pass
    if ticket.progress == PHASE_CHECKING:
        return _queue_again(
            ticket,
            actor_name=actor_name,
            reason="worker stopped before calling the hypervisor; queued again",
            owner=owner,
        )
    _fail(
        ticket,
        "Needs an operator: the worker stopped while calling the hypervisor and the outcome cannot be "
        "confirmed; the change is not there now. Check the hypervisor, then file a new ticket if needed.",
        actor_name=actor_name,
        owner=owner,
    )
    return "failed"


def _queue_again(ticket: Ticket, *, actor_name: str, reason: str, owner: str | None = None) -> str:
    with transaction.atomic():
        if owner is not None and not _holds(ticket, owner):
            return LEASE_LOST
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

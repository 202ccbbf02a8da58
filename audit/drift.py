"""Drift detection: what a hypervisor holds that no ticket explains.

A connector's baseline is what its hypervisor held when it was registered.
Beyond that, tickets explain what they did: each kind says which changes it
accounts for (approvals.kinds: Kind.explains), here asked about VMs (their
creation, then their latest move) and permissions. Tickets still running
explain their effect too: the hypervisor may already show it before the
ticket records success. This full reconciliation is the safety net; the
inventory sync raises findings from updates as they arrive (audit.live). Each difference becomes one
Finding, kept open until an approver acknowledges it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals.choices import TicketState
from approvals.kinds import KINDS
from approvals.kinds.admin_access import ENDED, access_grace  # noqa: F401 - access_grace: re-exported
from approvals.kinds.base import Change
from approvals.models import Ticket
from audit.models import DriftBaseline, Finding, FindingKind
from audit.writer import record
from connectors.base import ConnectorError, IdentityMismatch, Inventory, Permission
from connectors.models import Connector
from connectors.registry import connector_for

logger = logging.getLogger(__name__)

ACTOR_NAME = "drift"
# Tickets whose effect may be on the hypervisor now.
EXPLAINING = (TicketState.SUCCEEDED, TicketState.RUNNING)

# The part of an observation an acknowledgement covers: once acknowledged,
# the same drift seen again is not raised again; a different one is.
ACK_COVERS = {
    FindingKind.VM_UNEXPLAINED: (),
    FindingKind.VM_MOVED: ("host",),
    FindingKind.PERMISSION_UNEXPLAINED: ("role",),
    FindingKind.ACCESS_AFTER_END: ("role", "ticket"),
    FindingKind.VM_REMOVED: (),
    FindingKind.VM_CHANGED: ("what", "name"),
    FindingKind.OBJECT_CHANGED: ("what", "name"),
    FindingKind.PERMISSION_REMOVED: ("role",),
    FindingKind.PORTAL_ACCOUNT: ("what", "id"),
}


@dataclass(frozen=True)
class Drift:
    kind: str
    object_ref: str
    observed: dict
    expected: dict
    ticket: Ticket | None = field(default=None, compare=False)


@dataclass(frozen=True)
class DriftReport:
    connector: str
    raised: tuple[Finding, ...] = ()
    present: int = 0  # differences seen in this run, new or already known
    baseline_taken: bool = False
    error: str = ""


def read_hypervisor(connector: Connector) -> tuple[Inventory, tuple[Permission, ...]]:
    backend = connector_for(connector.kind, connector.connection_config())
    return backend.inventory(), backend.permissions()


def vm_key(vm) -> str:
    return (vm.instance_uuid or vm.id).lower()


def _permission_key(principal: str, is_group: bool, role: str, entity_id: str) -> tuple:
    return principal.casefold(), bool(is_group), role, entity_id


def baseline_take(*, connector: Connector, actor=None, actor_name: str = ACTOR_NAME) -> DriftBaseline:
    """Record what the hypervisor holds now as the connector's baseline.
    Raises ConnectorError when it cannot be read, IntegrityError when the
    connector has a baseline already (a baseline is never re-taken: that
    would explain away drift)."""
    inventory, permissions = read_hypervisor(connector)
    now = timezone.now()
    with transaction.atomic():
        baseline = DriftBaseline.objects.create(
            connector=connector,
            taken_at=now,
            vms=[{"uuid": vm_key(vm), "id": vm.id, "name": vm.name, "host": vm.host_id} for vm in inventory.vms],
            permissions=[
                {
                    "principal": p.principal,
                    "is_group": p.is_group,
                    "role": p.role,
                    "entity": p.entity_name,
                    "entity_id": p.entity_id,
                }
                for p in permissions
            ],
        )
        Connector.objects.filter(pk=connector.pk).update(baseline_taken_at=now)
        connector.baseline_taken_at = now
        record(
            "drift.baseline_taken",
            actor=actor,
            actor_name=actor_name,
            obj=connector,
            details={"connector": connector.name, "vms": len(baseline.vms), "permissions": len(baseline.permissions)},
        )
    return baseline


def compare(
    *,
    inventory: Inventory,
    permissions: tuple[Permission, ...],
    baseline: DriftBaseline,
    tickets: list[Ticket],
    now: datetime,
) -> list[Drift]:
    """Every difference between the hypervisor and what the baseline and the
    tickets explain."""
    return _vm_drift(inventory, baseline, tickets) + _permission_drift(permissions, baseline, tickets, now)


def _strings(value) -> set[str]:
    """Every string inside a ticket's parameters."""
    if isinstance(value, str):
        return {value.lower()}
    if isinstance(value, dict):
        return set().union(*map(_strings, value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*map(_strings, value)) if value else set()
    return set()


def _explains(ticket: Ticket, change: Change) -> bool:
    kind = KINDS.get(ticket.kind)
    return kind is not None and kind.explains(ticket, change)


def _moved_to(vm, host) -> Change:
    return Change(
        object_type="vm",
        object_id=vm.id,
        what="moved",
        instance_uuid=vm.instance_uuid,
        after={"host": host.id, "cluster": host.cluster_id},
    )


def _vm_drift(inventory: Inventory, baseline: DriftBaseline, tickets: list[Ticket]) -> list[Drift]:
    """VMs no ticket created, and VMs on a host neither their creation nor
    their latest move puts them on; every kind says what it explains."""
    explaining = [t for t in tickets if t.state in EXPLAINING]
    # A ticket names a VM by id, instance UUID or (creating it) its operation uuid.
    mentions = {t.pk: _strings(t.params) | {str(t.operation_uuid).lower()} for t in tickets}
    # Moves by time, running ones last: they add their hosts rather than replace them.
    explaining.sort(key=lambda t: (t.state == TicketState.RUNNING, t.finished_at or t.started_at or t.created_at))
    host_names = {host.id: host.name for host in inventory.hosts}
    in_baseline = {vm["uuid"]: vm for vm in baseline.vms}

    drifts = []
    for vm in inventory.vms:
        key = vm_key(vm)
        mine = [t for t in explaining if vm.id.lower() in mentions[t.pk] or key in mentions[t.pk]]
        seen = {
            "name": vm.name,
            "id": vm.id,
            "host": vm.host_id,
            "host_name": host_names.get(vm.host_id),
            "instance_uuid": vm.instance_uuid,
        }
        explained_by: Ticket | None = None
        created = Change(object_type="vm", object_id=vm.id, what="created", instance_uuid=vm.instance_uuid)
        if key in in_baseline:
            hosts, since = {in_baseline[key]["host"]}, baseline.taken_at
        elif (creator := next((t for t in mine if _explains(t, created)), None)) is not None:
            explained_by = creator
            hosts = {h.id for h in inventory.hosts if _explains(creator, _moved_to(vm, h))}
            since = creator.started_at or creator.created_at
        else:
            failed = next((t for t in tickets if t.state not in EXPLAINING and str(t.operation_uuid) == key), None)
            observed = {**seen, **({"ticket": failed.ref, "ticket_state": failed.state} if failed else {})}
            drifts.append(
                Drift(
                    FindingKind.VM_UNEXPLAINED,
                    f"vm:{key}",
                    observed,
                    {"explained_by": "a succeeded vm_create ticket or the registration baseline"},
                    failed,
                )
            )
            continue
        for ticket in mine:
            if ticket is explained_by or (ticket.finished_at and ticket.finished_at < since):
                continue
            targets = {h.id for h in inventory.hosts if _explains(ticket, _moved_to(vm, h))}
            if not targets:
                continue
            hosts = hosts | targets if ticket.state == TicketState.RUNNING else targets
            explained_by = ticket
        if vm.host_id not in hosts:
            drifts.append(
                Drift(
                    FindingKind.VM_MOVED,
                    f"vm:{key}",
                    {"name": vm.name, "id": vm.id, "host": vm.host_id, "host_name": host_names.get(vm.host_id)},
                    {"hosts": sorted(hosts), "according_to": explained_by.ref if explained_by else "baseline"},
                    explained_by,
                )
            )
    return drifts


def permission_ref(entity_id: str, is_group: bool, principal: str) -> str:
    return f"permission:{entity_id}:{'group' if is_group else 'user'}:{principal.casefold()}"


def _permission_drift(
    permissions: tuple[Permission, ...], baseline: DriftBaseline, tickets: list[Ticket], now: datetime
) -> list[Drift]:
    """Permissions no ticket explains; those a ticket granted and whose access
    has ended (the ticket explains their removal) are access after the end."""
    in_baseline = {
        _permission_key(p["principal"], p["is_group"], p["role"], p["entity_id"]) for p in baseline.permissions
    }
    drifts = []
    for permission in permissions:
        key = _permission_key(permission.principal, permission.is_group, permission.role, permission.entity_id)
        if key in in_baseline:
            continue
        present = Change(
            object_type="permission",
            object_id=permission.entity_id,
            what="present",
            principal=permission.principal,
            role=permission.role,
            after={"group": permission.is_group},
        )
        if any(_explains(t, present) for t in tickets):
            continue
        seen = {
            "principal": permission.principal,
            "group": permission.is_group,
            "role": permission.role,
            "entity": permission.entity_name,
            "entity_id": permission.entity_id,
        }
        ref = permission_ref(permission.entity_id, permission.is_group, permission.principal)
        removal = replace(present, what="permission_removed", before={"group": permission.is_group}, after={})
        granted_before = [t for t in tickets if _explains(t, removal)]
        if granted_before:
            ticket = max(granted_before, key=lambda t: t.access_expires_at or t.finished_at or t.updated_at)
            ended_at = ticket.access_expires_at or ticket.finished_at
            drifts.append(
                Drift(
                    FindingKind.ACCESS_AFTER_END,
                    ref,
                    {**seen, "ticket": ticket.ref},
                    {"absent_since": ended_at.isoformat() if ended_at else None, "ticket_state": ticket.state},
                    ticket,
                )
            )
        else:
            drifts.append(
                Drift(
                    FindingKind.PERMISSION_UNEXPLAINED,
                    ref,
                    seen,
                    {"explained_by": "an active admin_access ticket or the registration baseline"},
                )
            )
    return drifts


def _covered(finding: Finding, drift: Drift) -> bool:
    fields = ACK_COVERS[drift.kind]
    return all(finding.observed.get(f) == drift.observed.get(f) for f in fields)


def raise_finding(connector: Connector, drift: Drift, now: datetime) -> Finding | None:
    """The new finding, or None when this drift is already known (open, or
    acknowledged as it is now): then only its last_seen moves."""
    known = (
        Finding.objects.filter(connector=connector, kind=drift.kind, object_ref=drift.object_ref)
        .order_by("-first_seen", "-id")
        .first()
    )
    if known is not None and (known.is_open or _covered(known, drift)):
        Finding.objects.filter(pk=known.pk).update(last_seen=now)
        return None
    try:
        with transaction.atomic():
            finding = Finding.objects.create(
                connector=connector,
                kind=drift.kind,
                object_ref=drift.object_ref,
                observed=drift.observed,
                expected=drift.expected,
                first_seen=now,
                last_seen=now,
            )
            record(
                "finding.raised",
                actor_name=ACTOR_NAME,
                obj=finding,
                ticket=drift.ticket,
                details={
                    "connector": connector.name,
                    "kind": drift.kind,
                    "object_ref": drift.object_ref,
                    "observed": drift.observed,
                    "expected": drift.expected,
                },
            )
    except IntegrityError:  # another run raised it a moment ago
        return None
    return finding


def detect_drift(*, connector: Connector) -> DriftReport:
    """Compare the connector's hypervisor with its baseline and tickets and
    raise a Finding for each new difference. A connector without a baseline
    (registered before drift detection existed) gets one now instead.
    Raises ConnectorError when the hypervisor cannot be read; an endpoint
    that is not the pinned hypervisor is also recorded as a finding."""
    try:
        return _detect_drift(connector)
    except IdentityMismatch as exc:
        # Imported here: the connector services import this module.
        from approvals.services.connectors import connector_identity_refused

        connector_identity_refused(connector=connector, error=exc, actor_name=ACTOR_NAME)
        raise


def _detect_drift(connector: Connector) -> DriftReport:
    if not DriftBaseline.objects.filter(connector=connector).exists():
        try:
            baseline_take(connector=connector)
        except IntegrityError:
            pass  # a concurrent run took it
        return DriftReport(connector=connector.name, baseline_taken=True)
    # The hypervisor first, the tickets after: a ticket finishing in between
    # then explains what the hypervisor showed.
    inventory, permissions = read_hypervisor(connector)
    tickets = list(
        Ticket.objects.filter(connector=connector, state__in=[*EXPLAINING, *ENDED]).only(
            "id",
            "kind",
            "state",
            "params",
            "operation_uuid",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
            "access_expires_at",
        )
    )
    now = timezone.now()
    with transaction.atomic():
        # One run per connector at a time; a second waits and then finds the
        # first one's findings.
        baseline = DriftBaseline.objects.select_for_update().get(connector=connector)
        drifts = compare(inventory=inventory, permissions=permissions, baseline=baseline, tickets=tickets, now=now)
        raised = [finding for drift in drifts if (finding := raise_finding(connector, drift, now)) is not None]
    return DriftReport(connector=connector.name, raised=tuple(raised), present=len(drifts))


def detect_drift_everywhere() -> list[DriftReport]:
    """detect_drift for every connector; one that cannot be read is reported
    and the others still checked."""
    reports = []
    for connector in Connector.objects.order_by("name"):
        try:
            reports.append(detect_drift(connector=connector))
        except ConnectorError as exc:
            logger.warning("drift detection skipped %s: %s", connector.name, exc)
            reports.append(DriftReport(connector=connector.name, error=str(exc)))
    return reports

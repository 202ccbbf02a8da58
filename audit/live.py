"""Drift as it happens: the changes the inventory sync sees (from one
inventory to the next, from one permission read to the next) that no running
or recently finished ticket explains become findings at once, with the user
and time of the hypervisor's event where it recorded one.

Each kind says what it explains (Kind.explains); an unexplained change made
by the portal's own service account is a finding of its own kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from approvals.choices import TicketState
from approvals.inventory.index import KIND_WORDS
from approvals.kinds import KINDS
from approvals.kinds.base import Change
from approvals.models import Ticket
from audit.drift import Drift, permission_ref, raise_finding
from audit.models import Finding, FindingKind
from connectors.base import Inventory, Permission
from connectors.feed import Event
from connectors.inventory_store import objects_of, row_of
from connectors.models import Connector

# The events that say who made each kind of change.
EVENT_TYPES = {
    "created": ("VmCreatedEvent", "VmClonedEvent", "VmDeployedEvent", "VmRegisteredEvent", "VmDiscoveredEvent"),
    "removed": ("VmRemovedEvent",),
    "moved": ("VmRelocatedEvent", "VmMigratedEvent", "DrsVmMigratedEvent", "VmEmigratingEvent"),
    "renamed": ("VmRenamedEvent",),
    "hardware": ("VmReconfiguredEvent",),
    "power": ("VmPoweredOnEvent", "VmPoweredOffEvent", "VmSuspendedEvent", "VmResettingEvent"),
    "permission_added": ("PermissionAddedEvent",),
    "permission_removed": ("PermissionRemovedEvent",),
    "permission_changed": ("PermissionUpdatedEvent",),
}
PERMISSION_EVENTS = frozenset(EVENT_TYPES["permission_added"] + EVENT_TYPES["permission_removed"])
PERMISSION_EVENTS |= frozenset(EVENT_TYPES["permission_changed"])
WORDS = {
    "created": "created",
    "removed": "removed",
    "moved": "moved",
    "renamed": "renamed",
    "hardware": "reconfigured",
    "power": "powered",
    "permission_added": "granted",
    "permission_removed": "taken away",
    "permission_changed": "changed",
}
VM_TYPES = ("vm", "template")


# -- what changed ------------------------------------------------------------


def _vm_view(vm, hosts: dict) -> dict:
    host = hosts.get(vm.host_id)
    return {
        "name": vm.name,
        "host": vm.host_id,
        "host_name": host.name if host else None,
        "cluster": host.cluster_id if host else None,
        "datastores": list(vm.datastore_ids),
        "networks": [n.network_id for n in vm.nics],
        "folder": vm.parent_id,
        "resource_pool": vm.resource_pool_id,
        "power_state": vm.power_state,
        "cards": [[n.key, n.label] for n in vm.nics],
        "template": vm.is_template,
        "path": vm.path,
    }


def _view(obj, hosts: dict) -> dict:
    if hasattr(obj, "power_state"):
        return _vm_view(obj, hosts)
    view = {k: v for k, v in vars(obj).items() if k not in ("id", "path")}
    return {**view, "path": obj.path}


def _type(obj, root_id: str) -> str:
    return row_of(obj, root_folder_id=root_id)["type"]


def inventory_changes(before: Inventory, after: Inventory) -> list[Change]:
    """What became of each object from one inventory to the next: created,
    removed, renamed, moved (host, datastores, folder, networks, parent),
    power, hardware. A path that changed only because an ancestor was
    renamed or moved is not a change of its own."""
    old = {o.id: o for o in objects_of(before)}
    new = {o.id: o for o in objects_of(after)}
    hosts_before, hosts_after = {h.id: h for h in before.hosts}, {h.id: h for h in after.hosts}
    changes = []
    for moid in old.keys() | new.keys():
        a, b = old.get(moid), new.get(moid)
        if a == b:
            continue
        obj = b or a
        kind = _type(obj, after.root_folder_id or before.root_folder_id)
        uuid = getattr(obj, "instance_uuid", "")
        was = _view(a, hosts_before) if a is not None else {}
        now = _view(b, hosts_after) if b is not None else {}
        if a is None or b is None:
            whats = ["created" if a is None else "removed"]
        else:
            whats = _whats(kind, was, now)
        changes += [
            Change(object_type=kind, object_id=moid, what=what, instance_uuid=uuid, before=was, after=now)
            for what in whats
        ]
    return sorted(changes, key=lambda c: (c.object_type, c.object_id, c.what))


def _whats(kind: str, was: dict, now: dict) -> list[str]:
    differs = {k for k in was.keys() | now.keys() if was.get(k) != now.get(k)} - {"path", "host_name"}
    whats = []
    if "name" in differs:
        whats.append("renamed")
    if kind in VM_TYPES:
        if differs & {"host", "cluster", "datastores", "networks", "folder", "resource_pool"}:
            whats.append("moved")
        if "power_state" in differs:
            whats.append("power")
        if differs & {"cards", "template"}:
            whats.append("hardware")
    elif differs - {"name"}:
        whats.append("moved")
    return whats


def permission_rows(permissions: Iterable[Permission]) -> list[dict]:
    """Permissions as the sync state keeps them."""
    return [
        {
            "principal": p.principal,
            "group": p.is_group,
            "role": p.role,
            "entity_id": p.entity_id,
            "entity": p.entity_name,
            "propagate": p.propagate,
        }
        for p in permissions
    ]


def permission_changes(before: Sequence[dict], after: Sequence[dict]) -> list[Change]:
    """Permissions added, taken away or given another role."""

    def keyed(rows):
        return {(r["entity_id"], r["group"], r["principal"].casefold()): r for r in rows}

    old, new = keyed(before), keyed(after)
    changes = []
    for key in old.keys() | new.keys():
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        what = "permission_added" if a is None else "permission_removed" if b is None else "permission_changed"
        row = b or a
        changes.append(
            Change(
                object_type="permission",
                object_id=row["entity_id"],
                what=what,
                before=a or {},
                after=b or {},
                principal=row["principal"],
                role=row["role"],
            )
        )
    return sorted(changes, key=lambda c: (c.object_id, c.principal, c.what))


# -- who did it ------------------------------------------------------------


def attribute(change: Change, events: Sequence[Event]) -> Event | None:
    """The newest event about the change's object that reports this kind of
    change (for permissions: the same principal)."""
    wanted = EVENT_TYPES.get(change.what, ())
    for event in sorted(events, key=lambda e: e.key, reverse=True):
        if event.type not in wanted or event.object_id != change.object_id:
            continue
        if change.object_type == "permission" and event.principal.casefold() != change.principal.casefold():
            continue
        return event
    return None


def same_account(user: str, username: str) -> bool:
    """Whether an event's user is the connector's account, in either of
    vCenter's spellings (user@domain, DOMAIN\\user)."""

    def forms(name: str) -> set[str]:
        name = name.casefold()
        if "\\" in name:
            domain, _, user = name.partition("\\")
            return {name, f"{user}@{domain}", user}
        user, _, domain = name.partition("@")
        return {name, f"{domain}\\{user}" if domain else name, user}

    return bool(user) and bool(forms(user) & forms(username))


# -- findings ------------------------------------------------------------


def explaining_tickets(connector: Connector, now: datetime) -> list[Ticket]:
    """The tickets that may account for a change seen now: running ones, and
    those that moved on lately (a change arrives within seconds)."""
    recent = now - timedelta(seconds=settings.SYNC_EXPLAIN_SECONDS)
    return list(
        Ticket.objects.filter(connector=connector).filter(Q(state=TicketState.RUNNING) | Q(updated_at__gte=recent))
    )


def finding_kind(change: Change, by_portal: bool) -> str:
    if by_portal:
        return FindingKind.PORTAL_ACCOUNT
    if change.object_type == "permission":
        return (
            FindingKind.PERMISSION_REMOVED
            if change.what == "permission_removed"
            else FindingKind.PERMISSION_UNEXPLAINED
        )
    if change.object_type in VM_TYPES:
        return {
            "created": FindingKind.VM_UNEXPLAINED,
            "moved": FindingKind.VM_MOVED,
            "removed": FindingKind.VM_REMOVED,
        }.get(change.what, FindingKind.VM_CHANGED)
    return FindingKind.OBJECT_CHANGED


def object_ref(change: Change) -> str:
    if change.object_type == "permission":
        row = change.after or change.before
        return permission_ref(change.object_id, bool(row.get("group")), change.principal)
    if change.object_type in VM_TYPES:
        return f"vm:{(change.instance_uuid or change.object_id).lower()}"
    return f"{change.object_type}:{change.object_id}"


def words(change: Change, event: Event | None) -> str:
    """The change in one line: "VM web-01 moved by administrator@vsphere.local at 12:03:04"."""
    row = change.after or change.before
    if change.object_type == "permission":
        what = f"{change.role} for {change.principal} on {row.get('entity') or change.object_id} {WORDS[change.what]}"
    else:
        what = f"{KIND_WORDS.get(change.object_type, change.object_type)} {row.get('name', change.object_id)}"
        what += f" {WORDS.get(change.what, change.what)}"
    if event is not None and event.user:
        local = timezone.localtime(event.created) if timezone.is_aware(event.created) else event.created
        what += f" by {event.user} at {local:%H:%M:%S}"
    return what


def raise_for_changes(
    *, connector: Connector, changes: Sequence[Change], events: Sequence[Event] = (), now: datetime | None = None
) -> list[Finding]:
    """A finding for each change no ticket explains (deduplicated by object
    and kind with what is already open or acknowledged as it is)."""
    if not changes:
        return []
    now = now or timezone.now()
    tickets = explaining_tickets(connector, now)
    raised = []
    for change in changes:
        event = attribute(change, events)
        if event is not None and event.user:
            change = Change(**{**vars(change), "user": event.user})  # noqa: PLW2901 - the attributed change
        if any(t.kind in KINDS and KINDS[t.kind].explains(t, change) for t in tickets):
            continue
        by_portal = same_account(change.user, connector.username)
        observed = {
            "what": change.what,
            "type": change.object_type,
            "id": change.object_id,
            "name": (change.after or change.before).get("name", ""),
            "words": words(change, event),
            "by": change.user,
            "at": event.created.isoformat() if event is not None else None,
            "event": event.type if event is not None else None,
            "before": dict(change.before),
            "after": dict(change.after),
        }
        if change.object_type in VM_TYPES:
            observed |= {
                "instance_uuid": change.instance_uuid,
                "host": (change.after or change.before).get("host"),
                "host_name": (change.after or change.before).get("host_name"),
            }
        if change.object_type == "permission":
            observed |= {"principal": change.principal, "role": change.role}
        expected = {"explained_by": "a running or just finished ticket"}
        if by_portal:
            expected["account"] = "the portal's own service account acts only for tickets"
        ref = object_ref(change)
        # The portal's account: one finding per thing it did, not per object.
        drift = Drift(finding_kind(change, by_portal), f"{ref}:{change.what}" if by_portal else ref, observed, expected)
        finding = raise_finding(connector, drift, now)
        if finding is not None:
            raised.append(finding)
    return raised

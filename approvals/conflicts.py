"""Conflicting tickets: two open tickets on the same connector that act on
the same object, by identity (a VM or template by its instance UUID,
anything else by its managed-object id). Placement objects (target hosts,
datastores, networks) are shared by design and do not conflict; the object
a ticket changes does: its VMs and templates, and the entity admin_access
grants on. Both pages and the API show the other ticket; the worker starts
neither while the other runs."""

from __future__ import annotations

from approvals.choices import TicketKind, TicketState
from approvals.models import Ticket

OPEN_STATES = (TicketState.PENDING, TicketState.APPROVED, TicketState.RUNNING)
CHANGED_TYPES = ("vm", "template")
CHANGED_FIELDS = ("entity",)


def _refs(value):
    for ref in value if isinstance(value, list) else [value]:
        if isinstance(ref, dict) and "from" in ref:
            continue  # a network_map pair: placement
        if isinstance(ref, dict):
            yield ref


def object_keys(ticket: Ticket) -> set[str]:
    """The identities of the objects the ticket changes."""
    keys = set()
    for field, value in (ticket.params.get("objects") or {}).items():
        for ref in _refs(value):
            if ref.get("type") in CHANGED_TYPES or field in CHANGED_FIELDS:
                keys.add(f"uuid:{ref['instance_uuid']}" if ref.get("instance_uuid") else f"id:{ref.get('id')}")
    return keys


def conflicting(ticket: Ticket, *, states=OPEN_STATES) -> list[Ticket]:
    """The other tickets in `states` on the same connector that change one
    of the ticket's objects, oldest first."""
    if ticket.kind == TicketKind.CONFIG_CHANGE or ticket.connector_id is None:
        return []
    mine = object_keys(ticket)
    if not mine:
        return []
    others = (
        Ticket.objects.filter(connector_id=ticket.connector_id, state__in=states)
        .exclude(pk=ticket.pk)
        .only("id", "kind", "state", "params", "connector_id")
        .order_by("id")
    )
    return [other for other in others if object_keys(other) & mine]


def running_conflict(ticket: Ticket) -> Ticket | None:
    """A running ticket that changes one of this ticket's objects."""
    found = conflicting(ticket, states=(TicketState.RUNNING,))
    return found[0] if found else None

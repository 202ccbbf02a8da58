"""Filing tickets and moving them along for the page tests, through the
services (no worker runs here)."""

from datetime import timedelta

from django.utils import timezone

from approvals import services
from approvals.choices import TicketState
from approvals.inventory import StoredIndex
from approvals.kinds.admin_access import ENTITY_KINDS
from approvals.models import Ticket

# Through the services, objects may be named; the forms post ids (see posted).
MIGRATE_WITHIN_DEV = {"vm": "dev-app-01", "target_host": "dev-esx-02"}
# By name here; posted() gives what a browser sends.
CREATE_FORM = {
    "name": "web-page-01",
    "template": "tpl-debian12",
    "placement": "host:prod-esx-01",
    "datastore": "ds-prod",
    "network": "pg-prod",
    "cpus": "2",
    "memory_mb": "2048",
    "justification": "New web node for the shop",
}
# The kinds of object each picker of the ticket forms searches.
PICKER_KINDS = {
    "datastore": ("datastore",),
    "network": ("network",),
    "vm": ("vm",),
    "target_host": ("host",),
    "target_datastore": ("datastore",),
    "target_network": ("network",),
    "add_network": ("network",),
    "entity": ENTITY_KINDS,
}


def object_id(connector, kinds: tuple[str, ...], name: str) -> str:
    """The managed-object id of the one object of `kinds` called `name`."""
    return StoredIndex.for_connector(connector).resolve(kinds, name)[1].id


def posted(connector, form: dict) -> dict:
    """A ticket form's fields as the browser posts them: each object chosen
    by its name here is sent as the picker writes it, its inventory path
    ("placement": "host:<name>" or "cluster:<name>" here); the template, a
    select, as its managed-object id."""
    index = StoredIndex.for_connector(connector)
    data = dict(form)
    for field, kinds in PICKER_KINDS.items():
        if data.get(field):
            data[field] = index.resolve(kinds, data[field])[1].path
    if data.get("template"):
        data["template"] = index.resolve(("template",), data["template"])[1].id
    if data.get("placement"):
        kind, _, name = data["placement"].partition(":")
        data["placement"] = index.resolve((kind,), name)[1].path
    return data


def submit(requester, connector, kind, params, justification="Needed for the release") -> Ticket:
    return services.ticket_submit(
        requester=requester, kind=kind, connector=connector, justification=justification, params=params
    )


def make_succeeded(ticket: Ticket, *approvers) -> Ticket:
    """Approve, then play the worker's two transitions, as ticket_execute would."""
    for approver in approvers:
        services.ticket_approve(ticket_id=ticket.pk, approver=approver)
    ticket.refresh_from_db()
    services.transition(ticket, TicketState.RUNNING, actor_name="worker", lease_owner="worker")
    fields = {"finished_at": timezone.now(), "result": {"summary": "done"}}
    if ticket.kind == "admin_access":
        fields["access_expires_at"] = timezone.now() + timedelta(minutes=30)
    return services.transition(ticket, TicketState.SUCCEEDED, actor_name="worker", **fields)

"""Configuration requests: every change to who may act and to the rules is
a ticket of kind config_change. It takes effect only when a different
portal admin approved it, and then the worker applies it — through the same
gate as every ticket (transition, content hash, compare-and-set, audit in
the same transaction)."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import transaction

from approvals import permissions
from approvals.choices import Role, TicketKind
from approvals.config import TARGETS
from approvals.config.base import CREATE, refuse_self
from approvals.errors import InvalidInput, describe_errors
from approvals.models import Policy, Ticket
from approvals.services.tickets import clean_justification, ticket_file
from audit.writer import record

DEFAULT_APPROVALS = 1


def config_policy() -> Policy:
    """The policy for configuration changes; without one, portal admins
    approve with one approval (never fewer)."""
    policy = Policy.objects.select_related("approver_group").filter(kind=TicketKind.CONFIG_CHANGE).first()
    if policy is not None:
        return policy
    group, _ = Group.objects.get_or_create(name=Role.PORTAL_ADMIN)
    return Policy(kind=TicketKind.CONFIG_CHANGE, approver_group=group, required_approvals=DEFAULT_APPROVALS)


def _target(name: str):
    if name not in TARGETS:
        raise InvalidInput({"target": [f"Unknown target {name!r}; one of {', '.join(TARGETS)}."]})
    return TARGETS[name]


def _subject_user(target, instance):
    return instance if target.name == "user" else None


def config_request_file(
    *,
    requester,
    target: str,
    action: str,
    object_id=None,
    changes: dict | None = None,
    justification: str,
) -> Ticket:
    """File a request to create, change or delete one configuration object.
    Checks every rule now (InvalidInput, PermissionDenied; nothing stored
    then); the worker checks them again before applying."""
    if not permissions.can_manage_configuration(requester):
        raise PermissionDenied("Only portal admins file configuration requests.")
    justification = clean_justification(justification)
    config = _target(target)
    if not isinstance(changes, dict):
        raise InvalidInput({"changes": ["Must be an object."]})
    instance = None if action == CREATE else config.get(object_id)
    try:
        refuse_self(requester, _subject_user(config, instance))
    except PermissionDenied as exc:
        record(
            "config.request_refused",
            actor=requester,
            obj=instance,
            details={"target": config.name, "action": action, "reason": str(exc)},
        )
        raise
    before = config.snapshot(instance) if instance is not None else {}
    after = config.after(action=action, instance=instance, before=before, changes=changes, requester=requester)
    if action != "delete" and after == before:
        raise InvalidInput({"changes": ["Nothing would change."]})
    params = {
        "target": config.name,
        "action": action,
        "object_id": instance.pk if instance is not None else None,
        "label": config.label(after or before),
        "before": before,
        "after": after,
    }
    policy = config_policy()
    with transaction.atomic():
        return ticket_file(
            requester=requester,
            kind=TicketKind.CONFIG_CHANGE,
            connector=None,
            justification=justification,
            params=params,
            policy=policy,
            required_approvals=policy.required_approvals,
        )


def config_problem(ticket: Ticket) -> str | None:
    """Why an approved request must not be applied now, in words: its target
    changed since it was filed, or the rules no longer hold."""
    params = ticket.params
    config = _target(params["target"])
    instance = None
    if params["action"] != CREATE:
        try:
            instance = config.get(params["object_id"])
        except InvalidInput:
            return f"The {config.title} {params['label']} no longer exists; file a new request."
        if config.snapshot(instance) != params["before"]:
            return (
                f"The {config.title} {params['label']} changed since this request was filed "
                "(another request landed first); file a new request against what it is now."
            )
    try:
        if params["action"] == "delete":
            config.check_delete(instance)
        elif params["action"] in ("create", "update"):
            config.rules(
                action=params["action"],
                instance=instance,
                before=params["before"],
                after=params["after"],
                requester=ticket.requester,
            )
    except InvalidInput as exc:
        return "The change no longer meets the rules: " + describe_errors(exc.errors)
    return None


def config_apply(ticket: Ticket, *, actor_name: str) -> str:
    """Apply an approved request (inside the caller's transaction) and audit
    it with before and after. Returns what was done, in words."""
    params = ticket.params
    config = _target(params["target"])
    instance = None if params["action"] == CREATE else config.get(params["object_id"])
    applied = config.apply(action=params["action"], instance=instance, after=params["after"], actor_name=actor_name)
    before, after = config.display(params["before"]), config.display(params["after"])
    record(
        f"config.{config.name}.{params['action']}",
        actor_name=actor_name,
        ticket=ticket,
        obj=applied if applied is not None else instance,
        # A deleted object has lost its pk; the entry still names it.
        object_id=str(params["object_id"]) if params["object_id"] is not None else "",
        details={
            "request": ticket.ref,
            "requested_by": ticket.requester.get_username(),
            "label": params["label"],
            "before": before,
            "after": after,
            "changes": config.changed(before, after),
            **config.applied(applied),
        },
    )
    return f"{params['action']} {config.title} {params['label']}"


def config_display(ticket: Ticket) -> dict:
    """A request's before and after as approvers see it (no secrets), with
    the fields that move."""
    params = ticket.params
    config = _target(params["target"])
    before, after = config.display(params["before"]), config.display(params["after"])
    fields = sorted(set(before) | set(after))
    return {
        "target": config.title,
        "action": params["action"],
        "label": params["label"],
        "rows": [
            {"field": f, "before": before.get(f), "after": after.get(f), "moves": before.get(f) != after.get(f)}
            for f in fields
        ],
    }


def public_params(ticket: Ticket) -> dict:
    """The ticket's parameters as people and the API see them: a sealed
    password in a configuration request shows as such, never its bytes."""
    if ticket.kind != TicketKind.CONFIG_CHANGE:
        return ticket.params
    params = ticket.params
    config = _target(params["target"])
    return {**params, "before": config.display(params["before"]), "after": config.display(params["after"])}

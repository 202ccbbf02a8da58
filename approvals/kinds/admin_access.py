"""admin_access: a hypervisor role for a principal on one object, for a
limited time; taken back when the time is up or on revocation."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from approvals.choices import TicketKind, TicketState
from approvals.inventory import IndexRules
from approvals.kinds.base import Checked, Kind, TicketForm, object_name, params_error, policy_for
from approvals.kinds.picker import ObjectPickerField, describe_reach
from approvals.models import Policy
from approvals.params import PRINCIPAL_PATTERN, ObjectField
from connectors.base import OperationResult

# What a permission may be granted on, and which of those are top-level
# (allowed only where the policy names them).
ENTITY_KINDS = ("vm", "host", "cluster", "folder", "resource_pool", "datacenter", "root")
TOP_LEVEL_KINDS = ("datacenter", "root")


class AdminAccessParams(serializers.Serializer):
    principal = serializers.RegexField(
        PRINCIPAL_PATTERN,
        max_length=120,
        error_messages={"invalid": "A user or group like 'DOMAIN\\\\name' or 'name@domain'."},
    )
    role = serializers.CharField(max_length=80)
    entity = ObjectField()
    duration_minutes = serializers.IntegerField(min_value=1)


class AdminAccessForm(TicketForm):
    kind = TicketKind.ADMIN_ACCESS

    principal = forms.CharField(
        max_length=120, help_text="The user or group to receive the role, like DOMAIN\\name or name@domain."
    )
    role = forms.ChoiceField(help_text="Only roles the policy grants are accepted.")
    entity = ObjectPickerField(
        kinds=ENTITY_KINDS,
        describe=describe_reach,
        help_text="The VM, host, cluster, resource pool or folder the role applies to; a container counts as the "
        "most trusted zone beneath it.",
    )
    duration_minutes = forms.IntegerField(min_value=1, initial=60, label="Duration (minutes)")

    def fill_choices(self):
        index = self.index
        # Only roles some access policy grants (the policy of the chosen
        # object's zone has the last word at submission).
        granted = set().union(
            *Policy.objects.filter(kind=TicketKind.ADMIN_ACCESS).values_list("grantable_roles", flat=True)
        )
        roles = sorted(set(index.roles) & granted)
        self.fields["role"].choices = [("", "Choose…")] + [(name, name) for name in roles]

    def params(self):
        data = self.cleaned_data
        return {
            "principal": data["principal"],
            "role": data["role"],
            "entity": data["entity"],
            "duration_minutes": data["duration_minutes"],
        }


def check(connector, index: IndexRules, params: dict, recheck: bool) -> Checked:
    errors: dict[str, list[str]] = {}
    found = index.resolve_field(errors, "entity", ENTITY_KINDS, params["entity"])
    if params["role"] not in index.roles:
        errors["role"] = [f"Role {params['role']!r} not found."]
    if errors:
        raise params_error(errors)
    kind, entity = found
    zone = index.entity_zone(kind, entity)
    policy = policy_for(TicketKind.ADMIN_ACCESS, connector, zone)
    if kind in TOP_LEVEL_KINDS and entity.id not in (policy.top_level_entities or []):
        errors["entity"] = [
            f"{entity.name} ({entity.id}) is the {'root folder' if kind == 'root' else 'datacenter'}: access there "
            "reaches everything beneath it, and the policy does not name it."
        ]
    if params["role"] not in (policy.grantable_roles or []):
        allowed = ", ".join(policy.grantable_roles or []) or "none"
        errors["role"] = [f"The policy does not grant {params['role']!r}; it grants: {allowed}."]
    if params["duration_minutes"] > policy.max_duration_minutes:
        errors["duration_minutes"] = [f"At most {policy.max_duration_minutes} minutes by policy."]
    if errors:
        raise params_error(errors)
    params["entity"] = entity.id
    params["entity_type"] = kind
    params["objects"] = {"entity": index.ref(kind, entity)}
    return Checked(params, policy, zone, policy.required_approvals)


def perform(ticket, backend, on_task) -> OperationResult:
    params = ticket.params
    return backend.add_permission(
        principal=params["principal"], role=params["role"], entity_id=params["entity"], on_task=on_task
    )


def done(ticket, backend, index=None) -> bool:
    """The principal holds the role on the entity (by id)."""
    params = ticket.params
    return any(
        p.principal == params["principal"] and p.role == params["role"] for p in backend.permissions(params["entity"])
    )


def access_grace() -> timedelta:
    """How long expired access may linger: the sweeper removes it on its next
    run, and the worker needs a moment."""
    return timedelta(seconds=2 * settings.SWEEP_INTERVAL_SECONDS + 60)


# Ended: the permission the ticket granted must be gone.
ENDED = (TicketState.REVOKED, TicketState.FAILED, TicketState.EXPIRED)


def grants(ticket, change) -> bool:
    """Whether the change is about the permission this ticket grants: the
    principal (a user, never a group) on the entity, by id."""
    params = ticket.params or {}
    return (
        change.object_type == "permission"
        and not change.after.get("group", change.before.get("group", False))
        and change.principal.casefold() == str(params.get("principal", "")).casefold()
        and change.object_id == params.get("entity")
    )


def explains(ticket, change) -> bool:
    """The principal holding the ticket's role on the entity while the ticket
    runs or its time runs (with the sweeper's grace); and the permission
    going away once the access ended."""
    if not grants(ticket, change):
        return False
    expires = ticket.access_expires_at
    if change.what == "permission_removed":
        ran_out = ticket.state == TicketState.SUCCEEDED and expires is not None and expires <= timezone.now()
        return ticket.state in ENDED or ran_out
    if change.what not in ("permission_added", "permission_changed", "present"):
        return False
    if change.role != (ticket.params or {}).get("role"):
        return False
    if ticket.state == TicketState.RUNNING:
        return True
    return ticket.state == TicketState.SUCCEEDED and (expires is None or expires + access_grace() > timezone.now())


def summary(ticket) -> str:
    p, o = ticket.params or {}, (ticket.params or {}).get("objects") or {}
    return (
        f"{p.get('role')} for {p.get('principal')} on {object_name(o, 'entity', p.get('entity'))}, "
        f"{p.get('duration_minutes')} min"
    )


class StandardScope(serializers.Serializer):
    """One role, for a short time, optionally only on objects of one zone."""

    role = serializers.CharField(max_length=80)
    max_minutes = serializers.IntegerField(min_value=1, max_value=24 * 60)
    zone = serializers.CharField(max_length=64, required=False)


def standard_misfits(checked: Checked, index: IndexRules, scope: dict) -> list[str]:
    params, misfits = checked.params, []
    if params["role"] != scope["role"]:
        misfits.append(f"it asks for {params['role']}, not {scope['role']}")
    if params["duration_minutes"] > scope["max_minutes"]:
        misfits.append(f"{params['duration_minutes']} minutes is longer than {scope['max_minutes']}")
    if scope.get("zone") and checked.zone.name != scope["zone"]:
        misfits.append(f"its object is in zone {checked.zone.label}, not {scope['zone']}")
    return misfits


KIND = Kind(
    name=TicketKind.ADMIN_ACCESS,
    params=AdminAccessParams,
    form=AdminAccessForm,
    check=check,
    perform=perform,
    done=done,
    summary=summary,
    operations=("add_permission", "remove_permission", "permissions"),
    revocable=True,
    explains=explains,
    standard_scope=StandardScope,
    standard_misfits=standard_misfits,
)

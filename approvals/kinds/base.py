"""What every ticket kind shares: the Kind record the registry holds, the
checked result of a submission, the policy look-up, and the form base with
its helpers. One module per kind (vm_create.py, …) holds everything about
that kind."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from django import forms
from django.db.models import F, Q
from rest_framework import serializers

from approvals.errors import InvalidInput
from approvals.inventory import IndexRules, ZoneLabel
from approvals.inventory.rules import Unresolved
from approvals.kinds.picker import ObjectPickerField
from approvals.models import Policy


@dataclass(frozen=True)
class Kind:
    """Everything about one kind of ticket. Every caller goes through the
    registry (approvals.kinds.KINDS): an unknown kind is a KeyError there,
    never a fall-through to another kind's operation."""

    name: str
    params: type[serializers.Serializer]  # the shape of its parameters
    form: type[TicketForm]  # the page's form
    check: Callable  # (connector, index, params, recheck) -> Checked: the submission rules
    perform: Callable  # (ticket, backend, on_task) -> OperationResult: what the worker does
    done: Callable  # (ticket, backend, index) -> bool: whether the hypervisor shows it done, by identity
    summary: Callable  # (ticket) -> str: one line in words
    operations: tuple[str, ...]  # the connector operations it needs
    revocable: bool = False  # whether its effect is taken back later (access)
    # (ticket, Change) -> bool: whether this ticket (running or succeeded)
    # accounts for a change the hypervisor reports; drift asks every kind.
    explains: Callable = lambda ticket, change: False
    # Standard changes (approvals/standard.py): the shape of the scope a
    # policy may declare for this kind (None: no standard changes of it), and
    # (checked, index, scope) -> list[str], why a checked ticket falls outside it.
    standard_scope: type[serializers.Serializer] | None = None
    standard_misfits: Callable | None = None


@dataclass(frozen=True)
class Change:
    """One change the hypervisor reports, as drift detection sees it: which
    object, what became of it, and (from vCenter's events) who did it."""

    object_type: str  # "vm", "template", "host", … (index.KIND_WORDS keys), or "permission"
    object_id: str  # managed object id; for a permission, the entity's
    # "created", "removed", "renamed", "moved" (host, datastores, folder or
    # networks), "power", "hardware" (cpus, memory, cards), "snapshot",
    # "permission_added", "permission_removed", "permission_changed"
    what: str
    instance_uuid: str = ""  # VMs and templates
    before: Mapping = field(default_factory=dict)  # the properties before, as synced
    after: Mapping = field(default_factory=dict)  # and after
    principal: str = ""  # permissions: who, and with which role
    role: str = ""
    user: str = ""  # the vCenter user an event names, "" when none does


@dataclass(frozen=True)
class Checked:
    params: dict
    policy: Policy
    zone: ZoneLabel
    required_approvals: int


DEFAULT_CROSS_ZONE_APPROVALS = 2


def object_name(objects: dict, field: str, fallback="?") -> str:
    """The name an object of the ticket had when it was filed."""
    ref = objects.get(field)
    return ref.get("name", fallback) if isinstance(ref, dict) else str(fallback)


def params_error(errors: dict) -> InvalidInput:
    return InvalidInput({"params": errors})


def policy_for(kind: str, connector, zone: ZoneLabel) -> Policy:
    """The zone's own policy for this kind if there is one, else the default."""
    # One query: the zone's own (zone set) before the default (zone null).
    default = Q(zone__isnull=True)
    wanted = default | Q(zone__connector=connector, zone__name=zone.name) if zone.name else default
    policy = (
        Policy.objects.select_related("approver_group", "zone")
        .filter(wanted, kind=kind)
        .order_by(F("zone").asc(nulls_last=True), "pk")
        .first()
    )
    if policy is None:
        raise InvalidInput({"kind": [f"No approval policy is configured for {kind}; ask a portal admin."]})
    return policy


def zone_words(what: str, obj, zone: ZoneLabel, want: ZoneLabel) -> str:
    return f"{what} {obj.name} ({obj.id}) is in zone {zone.label}, but the placement is in zone {want.label}."


DATETIME_INPUT = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


def choices(objects, label=lambda obj: obj.name, blank="Choose…", value=lambda obj: obj.id):
    """Choices by managed-object id (what the ticket binds), sorted by name."""
    return [("", blank)] + [(value(obj), label(obj)) for obj in sorted(objects, key=lambda o: (o.name, o.id))]


class TicketForm(forms.Form):
    """What every kind shares; subclasses add the kind's parameters."""

    kind: str = ""
    # Service error keys under "params" that belong to another form field.
    param_field_aliases: dict[str, str] = {}

    justification = forms.CharField(
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why this change is needed; approvers read it.",
    )
    not_before = forms.DateTimeField(
        required=False, widget=DATETIME_INPUT, label="Not before", help_text="Optional start of the change window."
    )
    not_after = forms.DateTimeField(
        required=False, widget=DATETIME_INPUT, label="Not after", help_text="Optional end of the change window."
    )

    def __init__(
        self, *args, index: IndexRules, catalogue: set[str], emergency: bool = False, connector=None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.index = index
        self.catalogue = catalogue
        self.fill_choices()
        if connector is not None:  # the pickers search this connector's inventory
            for name, form_field in self.fields.items():
                if isinstance(form_field, ObjectPickerField):
                    form_field.bind(connector_id=connector.pk, ticket_kind=self.kind, field_name=name)
        if emergency:  # break_glass holders only
            self.fields["emergency"] = forms.BooleanField(
                required=False,
                label="Emergency (break-glass)",
                help_text="Runs at once without approvals; every approver and auditor is told, and it must be "
                "reviewed afterwards.",
            )
            self.fields["emergency_reason"] = forms.CharField(
                required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 2}), label="Emergency reason"
            )
        # Parameters first, then the justification and the window.
        self.order_fields(
            [
                name
                for name in self.fields
                if name not in ("justification", "not_before", "not_after", "emergency", "emergency_reason")
            ]
        )

    def fill_choices(self) -> None:
        """Set the choices of the kind's select fields (the few that are
        short lists: catalogue templates, roles) from the inventory."""

    def picked(self, name: str):
        """The object a picker field names, as the services will resolve it;
        None when it names none (the submission says why)."""
        value = self.cleaned_data.get(name)
        if not value:
            return None
        try:
            return self.index.resolve(self.fields[name].kinds, value)[1]
        except Unresolved:
            return None

    def params(self) -> dict:
        raise NotImplementedError

    def submission(self) -> dict:
        """Keyword arguments for services.ticket_submit (without requester and connector)."""
        data = self.cleaned_data
        return {
            "kind": self.kind,
            "justification": data["justification"],
            "params": self.params(),
            "not_before": data.get("not_before"),
            "not_after": data.get("not_after"),
            "emergency": bool(data.get("emergency")),
            "emergency_reason": data.get("emergency_reason") or "",
        }

    def add_service_errors(self, errors: dict) -> None:
        """Put a service's InvalidInput errors next to the fields they name."""
        for key, value in errors.items():
            if key == "params" and isinstance(value, dict):
                for param, messages in value.items():
                    field = self.param_field_aliases.get(param, param)
                    known = field in self.fields
                    self.add_error(field if known else None, _words(param, messages, known))
            elif key in self.fields:
                self.add_error(key, list(map(str, value)))
            else:
                self.add_error(None, _words(key, value, False))


def _words(name: str, messages, known: bool) -> list[str]:
    messages = [str(m) for m in messages] if isinstance(messages, list | tuple) else [str(messages)]
    return messages if known else [f"{name.replace('_', ' ')}: {m}" for m in messages]


def where(obj) -> str:
    """An object as the forms show it: its name, and its path where that says more."""
    return f"{obj.name} — {obj.path}" if obj.path and obj.path != obj.name else obj.name

"""The portal's forms. They shape input and fill choices from the
connector's inventory; every rule stays in the services, whose field errors
the forms show next to the fields."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import django_filters
from django import forms
from django.utils import timezone

from approvals.api.views import TicketFilter
from approvals.choices import TicketKind, TicketState
from approvals.inventory import InventoryIndex
from approvals.models import Policy
from audit.filters import AuditEntryFilter
from connectors.models import Connector

DATETIME_INPUT = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


def _choices(objects, label=lambda obj: obj.name, blank="Choose…", value=lambda obj: obj.id):
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

    def __init__(self, *args, index: InventoryIndex, catalogue: set[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.index = index
        self.catalogue = catalogue
        self.fill_choices()
        # Parameters first, then the justification and the window.
        self.order_fields([name for name in self.fields if name not in ("justification", "not_before", "not_after")])

    def fill_choices(self) -> None:
        """Set the choices of the kind's select fields from the inventory."""

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


def _where(obj) -> str:
    """An object as the forms show it: its name, and its path where that says more."""
    return f"{obj.name} — {obj.path}" if obj.path and obj.path != obj.name else obj.name


class VmCreateForm(TicketForm):
    kind = TicketKind.VM_CREATE
    param_field_aliases = {"cluster": "placement", "host": "placement", "networks": "network"}

    name = forms.CharField(max_length=80, label="VM name")
    template = forms.ChoiceField(help_text="Only templates from the approved catalogue.")
    placement = forms.ChoiceField(help_text="A cluster or a standalone host; its zone decides storage and network.")
    datastore = forms.ChoiceField(help_text="Must be in the placement's zone.")
    network = forms.ChoiceField(
        help_text="Every network card of the template is connected to it; in the placement's zone."
    )
    cpus = forms.IntegerField(min_value=1, initial=2, label="CPUs")
    memory_mb = forms.IntegerField(min_value=128, initial=2048, label="Memory (MB)")

    def fill_choices(self):
        inv, index = self.index.inventory, self.index
        templates = [vm for vm in index.objects("template") if vm.name in self.catalogue]
        self.fields["template"].choices = _choices(
            templates, lambda t: f"{_where(t)} ({len(t.nics)} network card(s))", value=lambda t: t.id
        )
        clusters = [(f"cluster:{c.id}", f"{_where(c)} (zone {index.cluster_zone(c.id).label})") for c in inv.clusters]
        hosts = [
            (f"host:{h.id}", f"{_where(h)} (zone {index.host_zone(h.id).label})")
            for h in sorted(inv.hosts, key=lambda h: h.name)
        ]
        self.fields["placement"].choices = [
            ("", "Choose…"),
            ("Clusters", sorted(clusters, key=lambda c: c[1])),
            ("Hosts", hosts),
        ]
        self.fields["datastore"].choices = _choices(
            inv.datastores, lambda d: f"{_where(d)} (zone {index.datastore_zone(d.id).label})", value=lambda d: d.id
        )
        self.fields["network"].choices = _choices(
            inv.networks, lambda n: f"{_where(n)} (zone {index.network_zone(n.id).label})", value=lambda n: n.id
        )

    def params(self):
        data = self.cleaned_data
        placement_kind, _, placement = data["placement"].partition(":")
        return {
            "name": data["name"],
            "template": data["template"],
            placement_kind: placement,
            "datastore": data["datastore"],
            "networks": [data["network"]],
            "cpus": data["cpus"],
            "memory_mb": data["memory_mb"],
        }


class VmMigrateForm(TicketForm):
    kind = TicketKind.VM_MIGRATE
    param_field_aliases = {"network_map": "target_network"}

    vm = forms.ChoiceField(label="VM")
    target_host = forms.ChoiceField(
        label="Target host", help_text="Moving into another zone needs a policy that allows it."
    )
    target_datastore = forms.ChoiceField(
        required=False, label="Target datastore", help_text="Needed when the VM's disks are outside the target zone."
    )
    target_network = forms.ChoiceField(
        required=False,
        label="Network after the move",
        help_text="Every network card moves to it; needed when the cards' networks are outside the target zone.",
    )

    def fill_choices(self):
        inv, index = self.index.inventory, self.index
        hosts = {h.id: h.name for h in inv.hosts}
        self.fields["vm"].choices = _choices(
            index.objects("vm"),
            lambda vm: f"{_where(vm)} (on {hosts.get(vm.host_id, 'no host')}, zone {index.vm_zone(vm).label})",
            value=lambda vm: vm.id,
        )
        self.fields["target_host"].choices = _choices(
            inv.hosts, lambda h: f"{_where(h)} (zone {index.host_zone(h.id).label})", value=lambda h: h.id
        )
        self.fields["target_datastore"].choices = _choices(
            inv.datastores,
            lambda d: f"{_where(d)} (zone {index.datastore_zone(d.id).label})",
            value=lambda d: d.id,
            blank="Keep the current datastore",
        )
        self.fields["target_network"].choices = _choices(
            inv.networks,
            lambda n: f"{_where(n)} (zone {index.network_zone(n.id).label})",
            value=lambda n: n.id,
            blank="Keep the current networks",
        )

    def params(self):
        data = self.cleaned_data
        params = {"vm": data["vm"], "target_host": data["target_host"]}
        if data.get("target_datastore"):
            params["target_datastore"] = data["target_datastore"]
        vm = self.index.get(data["vm"], ("vm",))
        if data.get("target_network") and vm is not None:
            params["network_map"] = {
                nic.network_id: data["target_network"]
                for nic in vm.nics
                if nic.network_id and nic.network_id != data["target_network"]
            }
        return params


class AdminAccessForm(TicketForm):
    kind = TicketKind.ADMIN_ACCESS

    principal = forms.CharField(
        max_length=120, help_text="The user or group to receive the role, like DOMAIN\\name or name@domain."
    )
    role = forms.ChoiceField(help_text="Only roles the policy grants are accepted.")
    entity = forms.ChoiceField(
        help_text="The VM, host, cluster, resource pool or folder the role applies to; a container counts as the "
        "most trusted zone beneath it."
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

        def group(title, kind):
            ordered = sorted(index.objects(kind), key=lambda o: o.path)
            return (title, [(o.id, f"{_where(o)} (zone {index.entity_zone(kind, o).label})") for o in ordered])

        self.fields["entity"].choices = [
            ("", "Choose…"),
            group("VMs", "vm"),
            group("Hosts", "host"),
            group("Clusters", "cluster"),
            group("Resource pools", "resource_pool"),
            group("Folders", "folder"),
        ]

    def params(self):
        data = self.cleaned_data
        return {
            "principal": data["principal"],
            "role": data["role"],
            "entity": data["entity"],
            "duration_minutes": data["duration_minutes"],
        }


FORMS_BY_KIND: dict[str, type[TicketForm]] = {
    TicketKind.VM_CREATE: VmCreateForm,
    TicketKind.VM_MIGRATE: VmMigrateForm,
    TicketKind.ADMIN_ACCESS: AdminAccessForm,
}


class DecisionForm(forms.Form):
    comment = forms.CharField(max_length=4000, required=False, widget=forms.Textarea(attrs={"rows": 2}))


class RejectForm(forms.Form):
    # Not required here: the service insists on a comment and its words show.
    comment = forms.CharField(
        max_length=4000, required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Why reject?"
    )


class TicketListFilter(TicketFilter):
    """The API's ticket filters, with date pickers for the page."""

    state = django_filters.ChoiceFilter(choices=TicketState.choices, empty_label="Any state")
    kind = django_filters.ChoiceFilter(choices=TicketKind.choices, empty_label="Any kind")
    # Filled per form with (id, name) pairs, read once: a model choice field
    # would read whole rows (encrypted password included) through a
    # server-side cursor, again for every pass over its choices.
    connector = django_filters.ChoiceFilter(choices=(), empty_label="Any connector")
    created_after = django_filters.DateFilter(
        method="filed_from", label="Filed from", widget=forms.DateInput(attrs={"type": "date"})
    )
    created_before = django_filters.DateFilter(
        method="filed_until", label="Filed until", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["connector"].extra["choices"] = list(Connector.objects.order_by("name").values_list("pk", "name"))

    # Whole days in the portal's time zone, as ranges the created_at index serves.
    def filed_from(self, queryset, name, value):
        return queryset.filter(created_at__gte=_day_start(value))

    def filed_until(self, queryset, name, value):
        return queryset.filter(created_at__lt=_day_start(value + timedelta(days=1)))

    class Meta(TicketFilter.Meta):
        pass


class AuditLogFilter(AuditEntryFilter):
    """The API's audit filters, with short labels and time pickers for the page."""

    LABELS = {
        "actor": "Actor",
        "action": "Action",
        "ticket": "Ticket",
        "object_type": "Object type",
        "object_id": "Object id",
        "since": "From",
        "until": "Before",
    }
    HELP = {
        "action": "e.g. ticket.approval; end with * for a prefix",
        "ticket": "CHG-000042 or 42",
        "object_type": "e.g. approvals.ticket",
    }

    @property
    def form(self):
        if not hasattr(self, "_form"):
            form = super().form
            for name, field in form.fields.items():
                field.label = self.LABELS.get(name, field.label)
                field.help_text = self.HELP.get(name, "")
            for name in ("since", "until"):
                form.fields[name].widget = forms.DateTimeInput(attrs={"type": "datetime-local"})
        return self._form


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))

"""vm_create: clone a vetted template into a new VM on a placement, datastore
and a network for every card, all in one zone."""

from __future__ import annotations

import re

from django import forms
from rest_framework import serializers

from approvals.choices import TicketKind, TicketState
from approvals.guest_passwords import GuestPasswordKeyMissing, guest_password_discard, guest_password_issue
from approvals.images import fingerprint_problem, vetting_problem
from approvals.inventory import IndexRules, looks_like_moid
from approvals.inventory.rules import Unresolved
from approvals.kinds.base import (
    Checked,
    Kind,
    TicketForm,
    choices,
    object_name,
    params_error,
    policy_for,
    where,
    zone_words,
)
from approvals.kinds.picker import ObjectPickerField
from approvals.models import CatalogueTemplate, Ticket
from approvals.params import VM_NAME_PATTERN, ObjectField
from connectors.base import WINDOWS, GuestCustomization, OperationRejected, OperationResult, customization_family
from connectors.registry import connector_for

# Tickets that may still create a VM (their name is taken).
OPEN_STATES = ("pending", "approved", "running")


class VmCreateParams(serializers.Serializer):
    name = serializers.RegexField(
        VM_NAME_PATTERN, max_length=80, error_messages={"invalid": "Use letters, digits, '.', '_' or '-' (max 80)."}
    )
    template = ObjectField()
    cluster = ObjectField(required=False, allow_blank=True)
    host = ObjectField(required=False, allow_blank=True)
    datastore = ObjectField()
    # One network per network card of the template, in its order, or one for every card.
    networks = serializers.ListField(child=ObjectField(), min_length=1, max_length=10, required=False)
    network = ObjectField(required=False, allow_blank=True, help_text="One network for every card (or use networks).")
    cpus = serializers.IntegerField(min_value=1, max_value=256)
    memory_mb = serializers.IntegerField(min_value=128, max_value=4 * 1024 * 1024)

    def validate(self, attrs):
        if bool(attrs.get("cluster")) == bool(attrs.get("host")):
            raise serializers.ValidationError({"host": ["Give either a cluster or a host, not both."]})
        if attrs.get("network") and attrs.get("networks"):
            raise serializers.ValidationError({"networks": ["Give networks or network, not both."]})
        if attrs.get("network"):
            attrs["networks"] = [attrs.pop("network")]
        attrs.pop("network", None)
        return attrs


class VmCreateForm(TicketForm):
    kind = TicketKind.VM_CREATE
    param_field_aliases = {"cluster": "placement", "host": "placement", "networks": "network"}

    name = forms.CharField(max_length=80, label="VM name")
    template = forms.ChoiceField(help_text="Only templates from the approved catalogue.")
    placement = ObjectPickerField(
        kinds=("cluster", "host"), help_text="A cluster or a standalone host; its zone decides storage and network."
    )
    datastore = ObjectPickerField(kinds=("datastore",), help_text="Must be in the placement's zone.")
    network = ObjectPickerField(
        kinds=("network",), help_text="Every network card of the template is connected to it; in the placement's zone."
    )
    cpus = forms.IntegerField(min_value=1, initial=2, label="CPUs")
    memory_mb = forms.IntegerField(min_value=128, initial=2048, label="Memory (MB)")

    def fill_choices(self):
        templates = [vm for vm in self.index.objects("template") if vm.name in self.catalogue]
        self.fields["template"].choices = choices(
            templates, lambda t: f"{where(t)} ({len(t.nics)} network card(s))", value=lambda t: t.id
        )

    def clean_placement(self):
        """Which kind of placement was picked: the submission takes a cluster
        or a host under its own name."""
        value = self.cleaned_data["placement"]
        try:
            kind, obj = self.index.resolve(self.fields["placement"].kinds, value)
        except Unresolved as exc:
            raise forms.ValidationError(str(exc)) from exc
        return f"{kind}:{obj.id}"

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


def check(connector, index: IndexRules, params: dict, recheck: bool) -> Checked:
    errors: dict[str, list[str]] = {}
    objects: dict = {}
    name = params["name"]
    if looks_like_moid(name):
        errors["name"] = [f"{name!r} has the form of a managed-object id; choose another name."]
    elif index.named("vm", name) or index.named("template", name):
        errors["name"] = [f"A VM named {name!r} already exists."]
    elif (
        not recheck
        and Ticket.objects.filter(
            connector=connector, kind=TicketKind.VM_CREATE, state__in=OPEN_STATES, params__name=name
        ).exists()
    ):
        errors["name"] = [f"An open ticket already creates a VM named {name!r}."]
    template = None
    found = index.resolve_field(errors, "template", ("template",), params["template"])
    if found:
        template = found[1]
        vetted = CatalogueTemplate.objects.filter(connector=connector, name=template.name).first()
        if vetted is None or (vetted.template_id and vetted.template_id != template.id):
            errors["template"] = [f"{template.name} ({template.path}) is not in the approved template catalogue."]
        elif problem := vetting_problem(vetted) or (recheck and _changed_since_vetting(connector, vetted)):
            errors["template"] = [problem]
        else:
            params["template"], objects["template"] = template.id, index.ref("template", template)
    zone = None
    field = "host" if params.get("host") else "cluster"
    found = index.resolve_field(errors, field, (field,), params[field])
    if found:
        params[field], objects[field] = found[1].id, index.ref(*found)
        zone = index.placement_zone(*found)
    found = index.resolve_field(errors, "datastore", ("datastore",), params["datastore"])
    if found:
        datastore = found[1]
        params["datastore"], objects["datastore"] = datastore.id, index.ref(*found)
        if zone is not None and index.datastore_zone(datastore.id) != zone:
            errors["datastore"] = [zone_words("Datastore", datastore, index.datastore_zone(datastore.id), zone)]
    networks = []
    for value in params.get("networks") or []:
        found = index.resolve_field(errors, "networks", ("network",), value)
        if found:
            networks.append(found[1])
    cards = len(template.nics) if template is not None else None
    if cards is not None and not errors.get("networks"):
        if cards == 0 and networks:
            errors["networks"] = [f"{template.name} has no network card; give no networks."]
        elif cards and not networks:
            errors["networks"] = [
                f"{template.name} has {cards} network card(s): give a network for each, or one for all."
            ]
        elif cards and len(networks) not in (1, cards):
            errors["networks"] = [
                f"{template.name} has {cards} network cards; give {cards} networks (one per card, in order) or one for all."
            ]
        else:
            networks = networks * cards if len(networks) == 1 else networks
            for nic, network in zip(template.nics, networks, strict=True):
                if zone is not None and index.network_zone(network.id) != zone:
                    errors.setdefault("networks", []).append(
                        f"{nic.label}: " + zone_words("network", network, index.network_zone(network.id), zone)
                    )
    params.pop("network", None)
    params["networks"] = [n.id for n in networks]
    objects["networks"] = [index.ref("network", n) for n in networks]
    if errors:
        raise params_error(errors)
    policy = policy_for(TicketKind.VM_CREATE, connector, zone)
    if params["cpus"] > policy.max_cpus:
        errors["cpus"] = [f"At most {policy.max_cpus} CPUs by policy."]
    if params["memory_mb"] > policy.max_memory_mb:
        errors["memory_mb"] = [f"At most {policy.max_memory_mb} MB by policy."]
    if errors:
        raise params_error(errors)
    params["objects"] = objects
    return Checked(params, policy, zone, policy.required_approvals)


class StandardScope(serializers.Serializer):
    """One catalogue template, in one zone, up to a size."""

    zone = serializers.CharField(max_length=64)
    template = serializers.CharField(max_length=80, help_text="A catalogue template, by name.")
    max_cpus = serializers.IntegerField(min_value=1, max_value=256)
    max_memory_mb = serializers.IntegerField(min_value=128, max_value=4 * 1024 * 1024)


def standard_misfits(checked: Checked, index: IndexRules, scope: dict) -> list[str]:
    params, misfits = checked.params, []
    template = object_name(params.get("objects") or {}, "template", params.get("template"))
    if template != scope["template"]:
        misfits.append(f"it clones {template}, not {scope['template']}")
    if checked.zone is None or checked.zone.name != scope["zone"]:
        misfits.append(f"it places the VM in zone {checked.zone.label if checked.zone else '?'}, not {scope['zone']}")
    if params["cpus"] > scope["max_cpus"]:
        misfits.append(f"{params['cpus']} CPUs is more than {scope['max_cpus']}")
    if params["memory_mb"] > scope["max_memory_mb"]:
        misfits.append(f"{params['memory_mb']} MB of memory is more than {scope['max_memory_mb']} MB")
    return misfits


def _changed_since_vetting(connector, vetted) -> str | None:
    """The worker's re-check reads the template live (only the worker can):
    changed since vetting -> refused, with a finding."""
    image = connector_for(connector.kind, connector.connection_config()).read_template(vetted.template_id)
    return fingerprint_problem(vetted, image, actor_name="worker")


def hostname_for(name: str, family: str) -> str:
    """The guest host name for a VM name: letters, digits and '-', at most 63
    characters (15 for a Windows computer name)."""
    cleaned = re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-") or "vm"
    return cleaned[: 15 if family == WINDOWS else 63].rstrip("-")


def perform(ticket, backend, on_task) -> OperationResult:
    """Clone with a guest customization: the new VM's host name and a fresh
    administrator password, kept sealed for one reveal to the requester."""
    params = ticket.params
    entry = CatalogueTemplate.objects.get(connector=ticket.connector, template_id=params["template"])
    family = customization_family(entry.fingerprint.get("guest_id", ""))
    if family is None:  # the re-check refuses such templates; never clone one without a password
        raise OperationRejected(f"{entry.name} cannot be customized; nothing was cloned")
    try:
        password = guest_password_issue(ticket=ticket, actor_name="worker")
    except GuestPasswordKeyMissing as exc:
        raise OperationRejected(f"{exc}; nothing was cloned") from exc
    result = backend.clone_vm(
        template_id=params["template"],
        name=params["name"],
        datastore_id=params["datastore"],
        networks=tuple(params["networks"]),
        cpus=params["cpus"],
        memory_mb=params["memory_mb"],
        instance_uuid=str(ticket.operation_uuid),
        host_id=params.get("host"),
        cluster_id=params.get("cluster"),
        customization=GuestCustomization(
            family=family, hostname=hostname_for(params["name"], family), password=password
        ),
        on_task=on_task,
    )
    if result.already_done:
        guest_password_discard(ticket=ticket, actor_name="worker", reason="the VM already existed; it was not applied")
    return result


def done(ticket, backend, index=None) -> bool:
    """The VM this ticket creates carries the ticket's operation uuid."""
    return backend.find_vm_by_uuid(str(ticket.operation_uuid)) is not None


def explains(ticket, change) -> bool:
    """The VM carrying the ticket's operation uuid: while the ticket runs,
    whatever the clone does to it; once succeeded, its creation and its
    placement on the ticket's host or cluster."""
    if change.object_type != "vm" or change.instance_uuid.lower() != str(ticket.operation_uuid).lower():
        return False
    if ticket.state == TicketState.RUNNING:
        return True
    if ticket.state != TicketState.SUCCEEDED:
        return False
    if change.what == "created":
        return True
    if change.what == "moved":
        params, after = ticket.params or {}, change.after
        host = after.get("host")
        return bool(host) and (
            host == params.get("host") or (bool(params.get("cluster")) and after.get("cluster") == params["cluster"])
        )
    return False


def summary(ticket) -> str:
    p, o = ticket.params or {}, (ticket.params or {}).get("objects") or {}
    where_to = object_name(o, "host", None) or object_name(o, "cluster")
    return (
        f"{p.get('name')} from {object_name(o, 'template', p.get('template'))} on {where_to}, "
        f"{p.get('cpus')} CPU / {p.get('memory_mb')} MB"
    )


KIND = Kind(
    name=TicketKind.VM_CREATE,
    params=VmCreateParams,
    form=VmCreateForm,
    check=check,
    perform=perform,
    done=done,
    summary=summary,
    operations=("clone_vm", "find_vm_by_uuid", "read_template"),
    explains=explains,
    standard_scope=StandardScope,
    standard_misfits=standard_misfits,
)

"""What the kinds that act on one existing VM share (decommission,
reconfigure, power, snapshot): resolving the VM a ticket names (never a
template), finding it again by its instance UUID, and telling whether a
hypervisor change is about it."""

from __future__ import annotations

from approvals.inventory import IndexRules
from approvals.kinds.picker import ObjectPickerField
from approvals.models import CatalogueTemplate, Ticket


def resolve_vm(errors: dict, index: IndexRules, connector, value, *, doing: str, field: str = "vm"):
    """The VM `value` names, or None with the refusal in errors[field].
    A template is refused in words (`doing`: what the ticket would do),
    and said to be in the catalogue when it is."""
    found = index.resolve_field(errors, field, ("vm", "template"), value)
    if found is None:
        return None
    kind, vm = found
    if kind == "template":
        vetted = CatalogueTemplate.objects.filter(connector=connector, template_id=vm.id).exists()
        where_from = " of the approved catalogue" if vetted else ""
        errors.setdefault(field, []).append(
            f"{vm.name} ({vm.id}) is a template{where_from}, not a VM; templates are not {doing} by ticket."
        )
        return None
    return vm


def vm_ref(ticket) -> dict:
    ref = ((ticket.params or {}).get("objects") or {}).get("vm")
    return ref if isinstance(ref, dict) else {}


def bound_uuid(ticket) -> str:
    """The instance UUID of the VM the ticket was approved for."""
    return vm_ref(ticket).get("instance_uuid") or ""


def live_vm(ticket, backend, index: IndexRules | None = None):
    """The ticket's VM as the hypervisor shows it now, found by its instance
    UUID (at the id it was approved at), or None when it is gone."""
    uuid, vm_id = bound_uuid(ticket), ticket.params.get("vm")
    if index is not None:
        vm = index.get(vm_id, ("vm",))
        return vm if vm is not None and vm.instance_uuid == uuid else None
    vm = backend.find_vm_by_uuid(uuid) if uuid else None
    return vm if vm is not None and vm.id == vm_id else None


def recorded_task_succeeded(ticket, backend) -> bool:
    """Whether the hypervisor task this ticket recorded ended in success. For
    operations whose effect leaves no state of its own to look at (a reset,
    a revert to the snapshot the VM is on)."""
    task_id = Ticket.objects.filter(pk=ticket.pk).values_list("hypervisor_task_id", flat=True).first()
    return bool(task_id) and backend.task_state(task_id)[0] == "success"


def about_its_vm(ticket, change) -> bool:
    """Whether a hypervisor change concerns the VM the ticket bound: by
    instance UUID where both have one, else by managed-object id."""
    ref = vm_ref(ticket)
    if change.object_type != "vm" or not ref:
        return False
    if change.instance_uuid and ref.get("instance_uuid"):
        return change.instance_uuid.lower() == ref["instance_uuid"].lower()
    return change.object_id == ref.get("id")


def vm_field(**kwargs) -> ObjectPickerField:
    """The VM a ticket acts on, picked by search (templates are never offered)."""
    return ObjectPickerField(kinds=("vm",), label="VM", **kwargs)

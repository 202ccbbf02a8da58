"""vm_decommission: shut a VM down (its guest first, then hard after
GUEST_SHUTDOWN_TIMEOUT_SECONDS) and destroy it with its disks. The ticket
keeps the VM's configuration as filed (in its parameters, so in the
submission's audit entry) and as it was just before it was destroyed (in the
operation's audit entry). Never a template."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from approvals.choices import TicketKind
from approvals.inventory import IndexRules
from approvals.kinds.base import Checked, Kind, TicketForm, object_name, params_error, policy_for
from approvals.kinds.bound_vm import about_its_vm, bound_uuid, resolve_vm, vm_field
from approvals.params import ObjectField
from connectors.base import OperationResult, vm_configuration


class VmDecommissionParams(serializers.Serializer):
    vm = ObjectField()


class VmDecommissionForm(TicketForm):
    kind = TicketKind.VM_DECOMMISSION

    vm = vm_field(help_text="Shut down (the guest first, then hard) and destroyed with its disks; not undone.")

    def params(self):
        return {"vm": self.cleaned_data["vm"]}


def check(connector, index: IndexRules, params: dict, recheck: bool) -> Checked:
    errors: dict[str, list[str]] = {}
    vm = resolve_vm(errors, index, connector, params["vm"], doing="decommissioned")
    if errors:
        raise params_error(errors)
    zone = index.vm_zone(vm)
    policy = policy_for(TicketKind.VM_DECOMMISSION, connector, zone)
    params["vm"] = vm.id
    params["configuration"] = vm_configuration(vm)
    params["objects"] = {"vm": index.ref("vm", vm)}
    host = index.get(vm.host_id, ("host",))
    if host is not None:
        params["objects"]["host"] = index.ref("host", host)
    return Checked(params, policy, zone, policy.required_approvals)


def perform(ticket, backend, on_task) -> OperationResult:
    return backend.destroy_vm(
        vm_id=ticket.params["vm"],
        instance_uuid=bound_uuid(ticket),
        shutdown_timeout_seconds=settings.GUEST_SHUTDOWN_TIMEOUT_SECONDS,
        on_task=on_task,
    )


def done(ticket, backend, index=None) -> bool:
    """No VM carries the approved VM's instance UUID any more."""
    uuid = bound_uuid(ticket)
    if not uuid:
        return False
    if index is not None:
        return not index.has_instance_uuid(uuid)
    return backend.find_vm_by_uuid(uuid) is None


def explains(ticket, change) -> bool:
    """Its VM powered off, then removed."""
    return change.what in ("power", "removed") and about_its_vm(ticket, change)


def summary(ticket) -> str:
    p, o = ticket.params or {}, (ticket.params or {}).get("objects") or {}
    config = p.get("configuration") or {}
    return (
        f"Destroy {object_name(o, 'vm', p.get('vm'))} on {object_name(o, 'host')}, "
        f"{config.get('cpus', '?')} CPU / {config.get('memory_mb', '?')} MB, {len(config.get('disks') or [])} disk(s)"
    )


KIND = Kind(
    name=TicketKind.VM_DECOMMISSION,
    params=VmDecommissionParams,
    form=VmDecommissionForm,
    check=check,
    perform=perform,
    done=done,
    summary=summary,
    operations=("destroy_vm", "find_vm_by_uuid"),
    explains=explains,
)

"""vm_reconfigure: a VM's CPUs and memory, and adding or removing one network
card (on a network of the VM's zone), within the policy's limits. What the
VM cannot take while it runs (no hot-add, fewer CPUs without hot-remove,
less memory) needs it off: refused while it is on, at submission and again
by the worker, and the ticket says so."""

from __future__ import annotations

from django import forms
from rest_framework import serializers

from approvals.choices import TicketKind
from approvals.inventory import IndexRules
from approvals.kinds.base import Checked, Kind, TicketForm, object_name, params_error, policy_for
from approvals.kinds.bound_vm import about_its_vm, bound_uuid, live_vm, resolve_vm, vm_field
from approvals.kinds.picker import ObjectPickerField
from approvals.params import ObjectField
from connectors.base import OperationResult


class VmReconfigureParams(serializers.Serializer):
    vm = ObjectField()
    cpus = serializers.IntegerField(min_value=1, max_value=256, required=False)
    memory_mb = serializers.IntegerField(min_value=128, max_value=4 * 1024 * 1024, required=False)
    add_network = ObjectField(required=False, allow_blank=True, help_text="A network for one new card.")
    remove_nic = serializers.CharField(
        max_length=80, required=False, allow_blank=True, help_text="The card to remove: its label or device key."
    )

    def validate(self, attrs):
        if not any(attrs.get(f) not in (None, "") for f in ("cpus", "memory_mb", "add_network", "remove_nic")):
            raise serializers.ValidationError({"cpus": ["Give CPUs, memory, a network to add or a card to remove."]})
        return attrs


class VmReconfigureForm(TicketForm):
    kind = TicketKind.VM_RECONFIGURE

    vm = vm_field()
    cpus = forms.IntegerField(min_value=1, required=False, label="CPUs", help_text="Empty: unchanged.")
    memory_mb = forms.IntegerField(min_value=128, required=False, label="Memory (MB)", help_text="Empty: unchanged.")
    add_network = ObjectPickerField(
        kinds=("network",), required=False, label="Add a card on", help_text="A network of the VM's zone."
    )
    remove_nic = forms.CharField(
        max_length=80, required=False, label="Remove the card", help_text="Its label, e.g. Network adapter 2."
    )

    def params(self):
        data = self.cleaned_data
        params = {"vm": data["vm"]}
        for field in ("cpus", "memory_mb", "add_network", "remove_nic"):
            if data.get(field) not in (None, ""):
                params[field] = data[field]
        return params


def _needs_off(vm, cpus: int | None, memory_mb: int | None) -> dict[str, str]:
    """{field: why} for each change the VM cannot take while it runs."""
    reasons = {}
    if cpus is not None and cpus > vm.cpus and not vm.cpu_hot_add:
        reasons["cpus"] = "does not allow CPU hot-add"
    elif cpus is not None and cpus < vm.cpus and not vm.cpu_hot_remove:
        reasons["cpus"] = "does not allow CPU hot-remove"
    if memory_mb is not None and memory_mb > vm.memory_mb and not vm.memory_hot_add:
        reasons["memory_mb"] = "does not allow memory hot-add"
    elif memory_mb is not None and memory_mb < vm.memory_mb:
        reasons["memory_mb"] = "cannot give memory back while it runs"
    return reasons


def check(connector, index: IndexRules, params: dict, recheck: bool) -> Checked:
    errors: dict[str, list[str]] = {}
    objects: dict = {}
    vm = resolve_vm(errors, index, connector, params["vm"], doing="reconfigured")
    if vm is None:
        raise params_error(errors)
    zone = index.vm_zone(vm)
    objects["vm"] = index.ref("vm", vm)
    network = None
    if params.get("add_network"):
        found = index.resolve_field(errors, "add_network", ("network",), params["add_network"])
        if found:
            network = found[1]
            if index.network_zone(network.id) != zone:
                errors["add_network"] = [
                    f"Network {network.name} ({network.id}) is in zone {index.network_zone(network.id).label}, "
                    f"but {vm.name} is in zone {zone.label}."
                ]
    removed = None
    if params.get("remove_nic"):
        wanted = str(params["remove_nic"]).strip()
        removed = next((n for n in vm.nics if wanted in (n.label, str(n.key))), None)
        if removed is None:
            cards = ", ".join(n.label for n in vm.nics) or "none"
            errors["remove_nic"] = [f"{vm.name} has no card {wanted!r}; its cards: {cards}."]
    if errors:
        raise params_error(errors)
    cpus, memory_mb = params.get("cpus"), params.get("memory_mb")
    changes = (cpus is not None and cpus != vm.cpus) or (memory_mb is not None and memory_mb != vm.memory_mb)
    if not recheck and not (changes or network or removed):
        raise params_error({"cpus": [f"{vm.name} already has {vm.cpus} CPUs and {vm.memory_mb} MB."]})
    policy = policy_for(TicketKind.VM_RECONFIGURE, connector, zone)
    if cpus is not None and cpus > policy.max_cpus:
        errors["cpus"] = [f"At most {policy.max_cpus} CPUs by policy."]
    if memory_mb is not None and memory_mb > policy.max_memory_mb:
        errors["memory_mb"] = [f"At most {policy.max_memory_mb} MB by policy."]
    cards_after = len(vm.nics) + (1 if network else 0) - (1 if removed else 0)
    if network and cards_after > policy.max_nics:
        errors["add_network"] = [
            f"{vm.name} would have {cards_after} network cards; at most {policy.max_nics} by policy."
        ]
    needs_off = _needs_off(vm, cpus, memory_mb)
    if needs_off and vm.power_state != "poweredOff":
        for field, why in needs_off.items():
            errors.setdefault(field, []).append(
                f"{vm.name} is {vm.power_state} and {why}: this change needs the VM off; power it off first."
            )
    if errors:
        raise params_error(errors)
    params["vm"] = vm.id
    if network is not None:
        params["add_network"] = network.id
        objects["add_network"] = index.ref("network", network)
    if removed is not None:
        params["remove_nic"] = str(removed.key)
        params["removed_nic_label"] = removed.label
    params["needs_power_off"] = bool(needs_off)
    params["before"] = {"cpus": vm.cpus, "memory_mb": vm.memory_mb, "nic_keys": [n.key for n in vm.nics]}
    params["objects"] = objects
    return Checked(params, policy, zone, policy.required_approvals)


class StandardScope(serializers.Serializer):
    """CPUs and memory up to a size, for VMs of one zone; a network card
    added or removed is never standard (it changes what the VM reaches)."""

    zone = serializers.CharField(max_length=64)
    max_cpus = serializers.IntegerField(min_value=1, max_value=256)
    max_memory_mb = serializers.IntegerField(min_value=128, max_value=4 * 1024 * 1024)


def standard_misfits(checked: Checked, index: IndexRules, scope: dict) -> list[str]:
    params, misfits = checked.params, []
    if checked.zone.name != scope["zone"]:
        misfits.append(f"its VM is in zone {checked.zone.label}, not {scope['zone']}")
    if params.get("cpus") is not None and params["cpus"] > scope["max_cpus"]:
        misfits.append(f"{params['cpus']} CPUs is more than {scope['max_cpus']}")
    if params.get("memory_mb") is not None and params["memory_mb"] > scope["max_memory_mb"]:
        misfits.append(f"{params['memory_mb']} MB of memory is more than {scope['max_memory_mb']} MB")
    if params.get("add_network") or params.get("remove_nic"):
        misfits.append("it adds or removes a network card; only CPUs and memory are standard")
    return misfits


def perform(ticket, backend, on_task) -> OperationResult:
    p = ticket.params
    return backend.reconfigure_vm(
        vm_id=p["vm"],
        instance_uuid=bound_uuid(ticket),
        cpus=p.get("cpus"),
        memory_mb=p.get("memory_mb"),
        add_network_id=p.get("add_network"),
        remove_nic_key=int(p["remove_nic"]) if p.get("remove_nic") else None,
        on_task=on_task,
    )


def done(ticket, backend, index=None) -> bool:
    """The approved VM (by instance UUID) has the CPUs and memory asked for, a
    card it did not have when the ticket was filed on the network added, and
    no card with the removed card's key."""
    p = ticket.params
    vm = live_vm(ticket, backend, index)
    if vm is None:
        return False
    known = set((p.get("before") or {}).get("nic_keys") or [])
    keys = {n.key for n in vm.nics}
    return (
        (p.get("cpus") is None or vm.cpus == p["cpus"])
        and (p.get("memory_mb") is None or vm.memory_mb == p["memory_mb"])
        and (not p.get("add_network") or any(n.network_id == p["add_network"] and n.key not in known for n in vm.nics))
        and (not p.get("remove_nic") or int(p["remove_nic"]) not in keys)
    )


def explains(ticket, change) -> bool:
    return change.what == "hardware" and about_its_vm(ticket, change)


def summary(ticket) -> str:
    p, o = ticket.params or {}, (ticket.params or {}).get("objects") or {}
    before = p.get("before") or {}
    parts = []
    if p.get("cpus") is not None:
        parts.append(f"{before.get('cpus', '?')} → {p['cpus']} CPUs")
    if p.get("memory_mb") is not None:
        parts.append(f"{before.get('memory_mb', '?')} → {p['memory_mb']} MB")
    if p.get("add_network"):
        parts.append(f"a new card on {object_name(o, 'add_network', p['add_network'])}")
    if p.get("remove_nic"):
        parts.append(f"without {p.get('removed_nic_label') or 'card ' + str(p['remove_nic'])}")
    line = f"{object_name(o, 'vm', p.get('vm'))}: {', '.join(parts) or 'no change'}"
    return line + (" (the VM must be off)" if p.get("needs_power_off") else "")


KIND = Kind(
    name=TicketKind.VM_RECONFIGURE,
    params=VmReconfigureParams,
    form=VmReconfigureForm,
    check=check,
    perform=perform,
    done=done,
    summary=summary,
    operations=("reconfigure_vm", "find_vm_by_uuid"),
    explains=explains,
    standard_scope=StandardScope,
    standard_misfits=standard_misfits,
)

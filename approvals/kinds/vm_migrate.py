"""vm_migrate: move a VM to another host (and datastore), with every network
card mapped, disks and cards ending in the target zone."""

from __future__ import annotations

from rest_framework import serializers

from approvals.choices import TicketKind, TicketState
from approvals.inventory import IndexRules
from approvals.kinds.base import (
    DEFAULT_CROSS_ZONE_APPROVALS,
    Checked,
    Kind,
    TicketForm,
    object_name,
    params_error,
    policy_for,
)
from approvals.kinds.bound_vm import vm_field
from approvals.kinds.picker import ObjectPickerField
from approvals.params import ObjectField
from connectors.base import OperationResult


class VmMigrateParams(serializers.Serializer):
    vm = ObjectField()
    target_host = ObjectField()
    target_datastore = ObjectField(required=False, allow_blank=True)
    # {a network the VM's cards are on now: the network they move to}
    network_map = serializers.DictField(child=ObjectField(), required=False, allow_empty=True)


class VmMigrateForm(TicketForm):
    kind = TicketKind.VM_MIGRATE
    param_field_aliases = {"network_map": "target_network"}

    vm = vm_field()
    target_host = ObjectPickerField(
        kinds=("host",), label="Target host", help_text="Moving into another zone needs a policy that allows it."
    )
    target_datastore = ObjectPickerField(
        kinds=("datastore",),
        required=False,
        label="Target datastore",
        help_text="Needed when the VM's disks are outside the target zone; empty keeps the current one.",
    )
    target_network = ObjectPickerField(
        kinds=("network",),
        required=False,
        label="Network after the move",
        help_text="Every network card moves to it; needed when the cards' networks are outside the target zone.",
    )

    def params(self):
        data = self.cleaned_data
        params = {"vm": data["vm"], "target_host": data["target_host"]}
        if data.get("target_datastore"):
            params["target_datastore"] = data["target_datastore"]
        vm, network = self.picked("vm"), self.picked("target_network")
        if network is not None and vm is not None:
            params["network_map"] = {
                nic.network_id: network.id for nic in vm.nics if nic.network_id and nic.network_id != network.id
            }
        elif data.get("target_network") and vm is not None:
            params["network_map"] = {nic.network_id: data["target_network"] for nic in vm.nics if nic.network_id}
        return params


def _cards_after(vm, network_map: dict[str, str]) -> list[tuple]:
    """(card, network id after the move) for each of the VM's cards."""
    return [(nic, network_map.get(nic.network_id, nic.network_id)) for nic in vm.nics]


def check(connector, index: IndexRules, params: dict, recheck: bool) -> Checked:
    errors: dict[str, list[str]] = {}
    objects: dict = {}
    vm = host = datastore = None
    found = index.resolve_field(errors, "vm", ("vm",), params["vm"])
    if found:
        vm = found[1]
        objects["vm"] = index.ref(*found)
    found = index.resolve_field(errors, "target_host", ("host",), params["target_host"])
    if found:
        host = found[1]
        objects["target_host"] = index.ref(*found)
    if params.get("target_datastore"):
        found = index.resolve_field(errors, "target_datastore", ("datastore",), params["target_datastore"])
        if found:
            datastore = found[1]
            objects["target_datastore"] = index.ref(*found)
    network_map: dict[str, str] = {}
    mapped = []
    for current, new in (params.get("network_map") or {}).items():
        old = index.resolve_field(errors, "network_map", ("network",), current)
        to = index.resolve_field(errors, "network_map", ("network",), new)
        if old and to:
            if vm is not None and old[1].id not in {nic.network_id for nic in vm.nics}:
                errors.setdefault("network_map", []).append(f"{vm.name} has no card on {old[1].name} ({old[1].id}).")
            network_map[old[1].id] = to[1].id
            mapped.append({"from": index.ref(*old), "to": index.ref(*to)})
    if errors:
        raise params_error(errors)
    params["vm"], params["target_host"] = vm.id, host.id
    if datastore is not None:
        params["target_datastore"] = datastore.id
    if network_map:
        params["network_map"] = network_map
        objects["network_map"] = mapped
    else:
        params.pop("network_map", None)
    source, target = index.vm_zone(vm), index.host_zone(host.id)
    moves_storage = datastore is not None and datastore.id not in vm.datastore_ids
    if not recheck and vm.host_id == host.id and not moves_storage and not network_map:
        raise params_error({"target_host": [f"{vm.name} is already on {host.name}."]})
    policy = policy_for(TicketKind.VM_MIGRATE, connector, target)
    required = policy.required_approvals
    if source != target:
        if target.trust_level < source.trust_level:
            raise params_error(
                {
                    "target_host": [
                        f"Migration from zone {source.label} into the less trusted zone {target.label} is never allowed."
                    ]
                }
            )
        route = next(
            (
                pair
                for pair in policy.allowed_zone_pairs
                if pair.get("source") == source.name and pair.get("target") == target.name
            ),
            None,
        )
        if route is None:
            raise params_error(
                {"target_host": [f"No policy allows migration from zone {source.label} to zone {target.label}."]}
            )
        required = max(required, int(route.get("required_approvals") or DEFAULT_CROSS_ZONE_APPROVALS))
    # Storage and every card must end up in the target zone.
    disks = [datastore.id] if datastore is not None else list(vm.datastore_ids)
    for datastore_id in disks:
        zone = index.datastore_zone(datastore_id)
        if zone != target:
            ds = index.get(datastore_id)
            name = ds.name if ds is not None else datastore_id
            errors.setdefault("target_datastore", []).append(
                f"Datastore {name} ({datastore_id}) is in zone {zone.label}; the VM's disks must be in zone "
                f"{target.label} after the move{'' if datastore else ' (give a target_datastore there)'}."
            )
    for nic, network_id in _cards_after(vm, network_map):
        zone = index.network_zone(network_id)
        if zone != target:
            net = index.get(network_id)
            name = net.name if net is not None else network_id
            errors.setdefault("network_map", []).append(
                f"{nic.label} would be on {name} ({network_id}), zone {zone.label}; map it to a network of zone "
                f"{target.label}."
            )
    if errors:
        raise params_error(errors)
    params["source_host"] = vm.host_id or ""
    source_host = index.get(vm.host_id, ("host",))
    if source_host is not None:
        objects["source_host"] = index.ref("host", source_host)
    params["objects"] = objects
    return Checked(params, policy, target, required)


class StandardScope(serializers.Serializer):
    """A move within one zone (host, datastore and networks all stay in it)."""

    zone = serializers.CharField(max_length=64, help_text="Moves within this zone are standard.")


def standard_misfits(checked: Checked, index: IndexRules, scope: dict) -> list[str]:
    vm = index.get(checked.params["vm"], ("vm",))
    source = index.vm_zone(vm) if vm is not None else None
    misfits = []
    if source is None or source != checked.zone:
        misfits.append(
            f"it moves the VM from zone {source.label if source else 'unknown'} to zone {checked.zone.label}; "
            "only moves within one zone are standard"
        )
    if checked.zone.name != scope["zone"]:
        misfits.append(f"its target is in zone {checked.zone.label}, not {scope['zone']}")
    return misfits


def perform(ticket, backend, on_task) -> OperationResult:
    params = ticket.params
    return backend.relocate_vm(
        vm_id=params["vm"],
        host_id=params["target_host"],
        datastore_id=params.get("target_datastore"),
        network_map=params.get("network_map") or None,
        on_task=on_task,
    )


def done(ticket, backend, index=None) -> bool:
    """The approved VM (by id and instance UUID) is on the target host and
    datastore, with no card left on a network the map moves."""
    params = ticket.params
    vm = index.get(params["vm"], ("vm",)) if index is not None else backend.read_vm(params["vm"])
    approved = (params.get("objects") or {}).get("vm", {}).get("instance_uuid")
    if vm is None or (approved and vm.instance_uuid != approved):
        return False
    network_map = params.get("network_map") or {}
    return (
        vm.host_id == params["target_host"]
        and (not params.get("target_datastore") or params["target_datastore"] in vm.datastore_ids)
        and not any(nic.network_id in network_map for nic in vm.nics)
    )


def explains(ticket, change) -> bool:
    """A move of the approved VM (by id, and instance UUID where bound) onto
    the target host; while the ticket runs the VM may still be on its source."""
    params = ticket.params or {}
    if change.object_type != "vm" or change.what != "moved" or change.object_id != params.get("vm"):
        return False
    approved = (params.get("objects") or {}).get("vm", {}).get("instance_uuid")
    if approved and change.instance_uuid and change.instance_uuid.lower() != approved.lower():
        return False
    host = change.after.get("host")
    if ticket.state == TicketState.RUNNING:
        return host in (params.get("target_host"), params.get("source_host"))
    return ticket.state == TicketState.SUCCEEDED and host == params.get("target_host")


def summary(ticket) -> str:
    p, o = ticket.params or {}, (ticket.params or {}).get("objects") or {}
    line = f"{object_name(o, 'vm', p.get('vm'))}: {object_name(o, 'source_host')} → {object_name(o, 'target_host', p.get('target_host'))}"
    if o.get("target_datastore"):
        line += f" ({object_name(o, 'target_datastore')})"
    return line + (", networks remapped" if p.get("network_map") else "")


KIND = Kind(
    name=TicketKind.VM_MIGRATE,
    params=VmMigrateParams,
    form=VmMigrateForm,
    check=check,
    perform=perform,
    done=done,
    summary=summary,
    operations=("relocate_vm", "read_vm"),
    explains=explains,
    standard_scope=StandardScope,
    standard_misfits=standard_misfits,
)

"""vm_snapshot: take a snapshot of a VM (with or without its memory), revert
it to a named snapshot, or delete one. A revert changes the VM as much as a
reconfigure does, so it is approved under the zone's vm_reconfigure policy;
taking and deleting under vm_snapshot's."""

from __future__ import annotations

from django import forms
from rest_framework import serializers

from approvals.choices import TicketKind
from approvals.inventory import IndexRules
from approvals.kinds.base import Checked, Kind, TicketForm, object_name, params_error, policy_for
from approvals.kinds.bound_vm import about_its_vm, bound_uuid, live_vm, recorded_task_succeeded, resolve_vm, vm_field
from approvals.kinds.scope_fields import ZoneNames, outside_zones
from approvals.params import ObjectField
from connectors.base import OperationResult

ACTIONS = {"create": "Take a snapshot", "revert": "Revert to a snapshot", "delete": "Delete a snapshot"}


class VmSnapshotParams(serializers.Serializer):
    vm = ObjectField()
    action = serializers.ChoiceField(choices=list(ACTIONS))
    # create: the new snapshot's name; revert, delete: an existing one's name or id.
    snapshot = serializers.CharField(max_length=80)
    memory = serializers.BooleanField(required=False, default=False, help_text="create only: keep the VM's memory.")


class VmSnapshotForm(TicketForm):
    kind = TicketKind.VM_SNAPSHOT

    vm = vm_field()
    action = forms.ChoiceField(choices=[("", "Choose…"), *ACTIONS.items()])
    snapshot = forms.CharField(
        max_length=80,
        label="Snapshot",
        help_text="The new snapshot's name, or the name of the one to revert to or delete.",
    )
    memory = forms.BooleanField(required=False, label="With the VM's memory (new snapshots of a VM that is on)")

    def params(self):
        data = self.cleaned_data
        return {"vm": data["vm"], "action": data["action"], "snapshot": data["snapshot"], "memory": data["memory"]}


def _existing(vm, wanted: str, errors: dict):
    """The VM's snapshot with this id, or the one snapshot of this name."""
    by_id = [s for s in vm.snapshots if s.id == wanted]
    named = by_id or [s for s in vm.snapshots if s.name == wanted]
    if len(named) == 1:
        return named[0]
    if named:
        listed = "; ".join(f"{s.id} (taken {s.created})" for s in named)
        errors["snapshot"] = [f"{vm.name} has {len(named)} snapshots named {wanted!r}: {listed}. Name one by its id."]
    else:
        have = ", ".join(repr(s.name) for s in vm.snapshots) or "none"
        errors["snapshot"] = [f"{vm.name} has no snapshot named {wanted!r}; it has: {have}."]
    return None


def check(connector, index: IndexRules, params: dict, recheck: bool) -> Checked:
    errors: dict[str, list[str]] = {}
    vm = resolve_vm(errors, index, connector, params["vm"], doing="snapshotted")
    if vm is None:
        raise params_error(errors)
    action, wanted = params["action"], params["snapshot"].strip()
    if action == "create":
        if any(s.name == wanted for s in vm.snapshots):
            errors["snapshot"] = [f"{vm.name} already has a snapshot named {wanted!r}; choose another name."]
        if params.get("memory") and vm.power_state != "poweredOn":
            errors["memory"] = [f"{vm.name} is {vm.power_state}: there is no memory to keep."]
        params["snapshot"] = wanted
    else:
        params.pop("memory", None)
        found = _existing(vm, wanted, errors)
        if found is not None:
            params["snapshot"], params["snapshot_name"] = found.id, found.name
    if errors:
        raise params_error(errors)
    zone = index.vm_zone(vm)
    kind = TicketKind.VM_RECONFIGURE if action == "revert" else TicketKind.VM_SNAPSHOT
    policy = policy_for(kind, connector, zone)
    params["vm"] = vm.id
    params["objects"] = {"vm": index.ref("vm", vm)}
    return Checked(params, policy, zone, policy.required_approvals)


class StandardScope(serializers.Serializer):
    """Taking a snapshot of a VM in some zones; never a revert (approved
    under vm_reconfigure's policy) or a delete, which lose state."""

    zones = ZoneNames(help_text="VMs in these zones.")
    memory = serializers.BooleanField(
        required=False, default=False, help_text="Whether a snapshot with the VM's memory is standard too."
    )


def standard_misfits(checked: Checked, index: IndexRules, scope: dict) -> list[str]:
    params, misfits = checked.params, []
    if params["action"] != "create":
        misfits.append(f"only taking a snapshot is standard, not a {params['action']}")
    elif params.get("memory") and not scope.get("memory"):
        misfits.append("it keeps the VM's memory; only snapshots without memory are standard")
    return misfits + outside_zones("its VM", checked.zone, scope["zones"])


def description(ticket) -> str:
    """What the new snapshot says about itself; the operation UUID makes it
    this ticket's, to be recognised again after a crash."""
    return f"Taken for {ticket.ref} (TwoKey operation {ticket.operation_uuid})"


def perform(ticket, backend, on_task) -> OperationResult:
    p = ticket.params
    identity = {"vm_id": p["vm"], "instance_uuid": bound_uuid(ticket), "on_task": on_task}
    if p["action"] == "create":
        return backend.create_snapshot(
            name=p["snapshot"], description=description(ticket), memory=bool(p.get("memory")), **identity
        )
    if p["action"] == "revert":
        return backend.revert_snapshot(snapshot_id=p["snapshot"], **identity)
    return backend.remove_snapshot(snapshot_id=p["snapshot"], **identity)


def done(ticket, backend, index=None) -> bool:
    """create: the approved VM (by instance UUID) has a snapshot carrying this
    ticket's operation UUID; delete: it no longer has the snapshot (by id);
    revert: the task this ticket recorded succeeded and the VM is on that
    snapshot."""
    p = ticket.params
    vm = live_vm(ticket, backend, index)
    if vm is None:
        return False
    if p["action"] == "create":
        return any(str(ticket.operation_uuid) in s.description for s in vm.snapshots)
    if p["action"] == "delete":
        return all(s.id != p["snapshot"] for s in vm.snapshots)
    return vm.current_snapshot_id == p["snapshot"] and recorded_task_succeeded(ticket, backend)


def explains(ticket, change) -> bool:
    """Its VM's snapshots; a revert also puts back the hardware and power
    state the snapshot held."""
    whats = ("snapshot", "hardware", "power") if (ticket.params or {}).get("action") == "revert" else ("snapshot",)
    return change.what in whats and about_its_vm(ticket, change)


def summary(ticket) -> str:
    p, o = ticket.params or {}, (ticket.params or {}).get("objects") or {}
    vm = object_name(o, "vm", p.get("vm"))
    name = p.get("snapshot_name") or p.get("snapshot")
    if p.get("action") == "create":
        return f"Snapshot {name!r} of {vm}, {'with' if p.get('memory') else 'without'} memory"
    verb = "Revert" if p.get("action") == "revert" else "Delete snapshot"
    return f"{verb} {vm} to {name!r}" if p.get("action") == "revert" else f"{verb} {name!r} of {vm}"


KIND = Kind(
    name=TicketKind.VM_SNAPSHOT,
    params=VmSnapshotParams,
    form=VmSnapshotForm,
    check=check,
    perform=perform,
    done=done,
    summary=summary,
    operations=("create_snapshot", "revert_snapshot", "remove_snapshot", "find_vm_by_uuid", "task_state"),
    explains=explains,
    standard_scope=StandardScope,
    standard_misfits=standard_misfits,
)

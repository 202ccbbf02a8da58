"""vm_power: power a VM on, have its guest shut down, power it off hard, or
reset it."""

from __future__ import annotations

from django import forms
from django.conf import settings
from rest_framework import serializers

from approvals.choices import TicketKind
from approvals.inventory import IndexRules
from approvals.kinds.base import Checked, Kind, TicketForm, object_name, params_error, policy_for
from approvals.kinds.bound_vm import about_its_vm, bound_uuid, live_vm, recorded_task_succeeded, resolve_vm, vm_field
from approvals.kinds.scope_fields import ZoneNames, outside_zones
from approvals.params import ObjectField
from connectors.base import POWER_ACTIONS, OperationResult

ACTION_WORDS = {
    "on": "Power on",
    "shutdown": "Shut down the guest",
    "off": "Power off (hard)",
    "reset": "Reset (hard)",
}
# The power state each action ends in (a reset ends where it began).
ENDS_IN = {"on": "poweredOn", "shutdown": "poweredOff", "off": "poweredOff"}


class VmPowerParams(serializers.Serializer):
    vm = ObjectField()
    action = serializers.ChoiceField(choices=POWER_ACTIONS)


class VmPowerForm(TicketForm):
    kind = TicketKind.VM_POWER

    vm = vm_field()
    action = forms.ChoiceField(
        choices=[("", "Choose…"), *ACTION_WORDS.items()],
        help_text="A guest shutdown waits for the guest; power off and reset do not ask it.",
    )

    def params(self):
        return {"vm": self.cleaned_data["vm"], "action": self.cleaned_data["action"]}


def check(connector, index: IndexRules, params: dict, recheck: bool) -> Checked:
    errors: dict[str, list[str]] = {}
    vm = resolve_vm(errors, index, connector, params["vm"], doing="powered")
    if errors:
        raise params_error(errors)
    action, state = params["action"], vm.power_state
    if action == "reset" and state != "poweredOn":
        errors["action"] = [f"{vm.name} is {state}; only a VM that is on can be reset."]
    elif not recheck and ENDS_IN.get(action) == state:
        errors["action"] = [f"{vm.name} is already {state}."]
    if errors:
        raise params_error(errors)
    zone = index.vm_zone(vm)
    policy = policy_for(TicketKind.VM_POWER, connector, zone)
    params["vm"] = vm.id
    params["objects"] = {"vm": index.ref("vm", vm)}
    return Checked(params, policy, zone, policy.required_approvals)


class StandardScope(serializers.Serializer):
    """Some power actions, on VMs of some zones (e.g. power on in dev)."""

    actions = serializers.ListField(
        child=serializers.ChoiceField(choices=POWER_ACTIONS),
        min_length=1,
        max_length=len(POWER_ACTIONS),
        help_text="Which of on, shutdown, off, reset are standard.",
    )
    zones = ZoneNames(help_text="VMs in these zones.")

    def validate_actions(self, actions):
        return sorted(set(actions))


def standard_misfits(checked: Checked, index: IndexRules, scope: dict) -> list[str]:
    action, misfits = checked.params["action"], []
    if action not in scope["actions"]:
        allowed = " or ".join(ACTION_WORDS[a].lower() for a in scope["actions"])
        misfits.append(f"it asks to {ACTION_WORDS[action].lower()}; only {allowed} is standard")
    return misfits + outside_zones("its VM", checked.zone, scope["zones"])


def perform(ticket, backend, on_task) -> OperationResult:
    return backend.power_vm(
        vm_id=ticket.params["vm"],
        instance_uuid=bound_uuid(ticket),
        action=ticket.params["action"],
        timeout_seconds=settings.GUEST_SHUTDOWN_TIMEOUT_SECONDS,
        on_task=on_task,
    )


def done(ticket, backend, index=None) -> bool:
    """The approved VM (by instance UUID) is in the state the action ends in;
    for a reset, the task this ticket recorded succeeded."""
    vm = live_vm(ticket, backend, index)
    if vm is None:
        return False
    action = ticket.params["action"]
    if action == "reset":
        return recorded_task_succeeded(ticket, backend)
    return vm.power_state == ENDS_IN[action]


def explains(ticket, change) -> bool:
    return change.what == "power" and about_its_vm(ticket, change)


def summary(ticket) -> str:
    p, o = ticket.params or {}, (ticket.params or {}).get("objects") or {}
    return f"{ACTION_WORDS.get(p.get('action'), p.get('action'))}: {object_name(o, 'vm', p.get('vm'))}"


KIND = Kind(
    name=TicketKind.VM_POWER,
    params=VmPowerParams,
    form=VmPowerForm,
    check=check,
    perform=perform,
    done=done,
    summary=summary,
    operations=("power_vm", "find_vm_by_uuid", "task_state"),
    explains=explains,
    standard_scope=StandardScope,
    standard_misfits=standard_misfits,
)

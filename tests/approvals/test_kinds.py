"""The kinds registry: every kind has every part, every caller goes through
it, and a kind the connector cannot carry out is refused at submission."""

import dataclasses

import pytest
from django import forms
from rest_framework import serializers

from approvals.choices import HYPERVISOR_KINDS
from approvals.kinds import KINDS
from approvals.kinds.base import Kind, TicketForm
from approvals.kinds.picker import ObjectPickerField
from connectors.registry import BACKENDS
from tests.approvals.helpers import VM_CREATE, body

# The selects a ticket form may have: the catalogue's templates, the roles a
# policy grants, and fixed lists of actions.
SHORT_LISTS = {"template", "role", "action"}


def test_every_hypervisor_kind_is_registered_with_every_part():
    assert set(KINDS) == set(HYPERVISOR_KINDS)
    for name, kind in KINDS.items():
        assert kind.name == name
        assert issubclass(kind.params, serializers.Serializer), name
        assert issubclass(kind.form, TicketForm) and issubclass(kind.form, forms.Form), name
        assert kind.form.kind == name, name
        # The form picks the kind's objects by search, never from a select of
        # the estate (selects are for short lists: templates, roles), and
        # builds the kind's parameters.
        fields = kind.form.base_fields
        assert any(isinstance(f, ObjectPickerField) for f in fields.values()), name
        for field_name, field in fields.items():
            if isinstance(field, forms.ChoiceField):
                assert field_name in SHORT_LISTS, f"{name}.{field_name} lists objects in a select"
        assert kind.form.params is not TicketForm.params, name
        for part in ("check", "perform", "done", "summary", "explains"):
            assert callable(getattr(kind, part)), f"{name} has no {part}"
        assert kind.operations, f"{name} names no connector operation"
    assert {f.name for f in dataclasses.fields(Kind)} == {
        "name",
        "params",
        "form",
        "check",
        "perform",
        "done",
        "summary",
        "operations",
        "revocable",
        "explains",
        "standard_scope",
        "standard_misfits",
    }


def test_a_kind_with_a_standard_scope_says_how_a_ticket_misfits_it():
    for name, kind in KINDS.items():
        if kind.standard_scope is not None:
            assert issubclass(kind.standard_scope, serializers.Serializer), name
            assert callable(kind.standard_misfits), name


def test_every_backend_declares_the_operations_it_has():
    for backend in BACKENDS.values():
        for operation in backend.operations:
            assert callable(getattr(backend, operation)), f"{backend.__name__}.{operation}"
        for kind in KINDS.values():
            assert set(kind.operations) <= backend.operations, (backend.__name__, kind.name)


def test_an_unknown_kind_is_a_key_error_not_a_fall_through():
    from approvals.services.execution import perform

    class Ticket:
        kind = "vm_teleport"

    with pytest.raises(KeyError):
        perform(Ticket(), backend=None, on_task=None)


@pytest.mark.django_db
def test_a_kind_the_connector_cannot_do_is_refused_in_words(api, lab, requester, monkeypatch):
    from connectors.vsphere import VSphereConnector

    monkeypatch.setattr(VSphereConnector, "operations", VSphereConnector.operations - {"clone_vm"})
    response = api(requester).post("/api/tickets/", body(lab, "vm_create", VM_CREATE), format="json")
    assert response.status_code == 400
    assert "cannot do vm_create (no clone_vm)" in response.json()["kind"][0]


# Kinds that act on one existing VM, with parameters of each action, and what
# each explains of its VM.
VM_KINDS = {
    "vm_decommission": ({}, {"removed", "power"}),
    "vm_reconfigure": ({"add_network": "pg-dev"}, {"hardware"}),
    "vm_power": ({"action": "off"}, {"power"}),
    "vm_snapshot": ({"action": "create", "snapshot": "s"}, {"snapshot"}),
}
WHATS = ("created", "removed", "renamed", "moved", "power", "hardware", "snapshot", "permission_added")


def test_every_vm_kind_explains_its_own_vms_changes_and_nothing_else():
    from approvals.kinds.base import Change
    from approvals.models import Ticket

    mine = {"type": "vm", "id": "vm-7", "name": "web", "path": "/lab/vm/web", "instance_uuid": "5e81-aa"}
    for name, (params, explained) in VM_KINDS.items():
        kind = KINDS[name]
        assert kind.explains is not dataclasses.fields(Kind)[-1].default, name
        ticket = Ticket(kind=name, params={"vm": "vm-7", **params, "objects": {"vm": mine}})
        for what in WHATS:
            change = Change(object_type="vm", object_id="vm-7", what=what, instance_uuid="5E81-AA")
            assert kind.explains(ticket, change) == (what in explained), (name, what)
            # Another VM at the same id (re-created: another instance UUID), or another id.
            assert not kind.explains(ticket, Change("vm", "vm-7", what, instance_uuid="other-uuid")), (name, what)
            assert not kind.explains(ticket, Change("vm", "vm-8", what)), (name, what)
            assert not kind.explains(ticket, Change("host", "vm-7", what)), (name, what)


def test_a_revert_also_explains_the_hardware_and_power_state_it_puts_back():
    from approvals.kinds.base import Change
    from approvals.models import Ticket

    ref = {"type": "vm", "id": "vm-7", "name": "db", "path": "/db", "instance_uuid": "u-1"}
    revert = Ticket(kind="vm_snapshot", params={"vm": "vm-7", "action": "revert", "objects": {"vm": ref}})
    assert all(
        KINDS["vm_snapshot"].explains(revert, Change("vm", "vm-7", w, instance_uuid="u-1"))
        for w in ("snapshot", "hardware", "power")
    )
    assert not KINDS["vm_snapshot"].explains(revert, Change("vm", "vm-7", "moved", instance_uuid="u-1"))


@pytest.mark.django_db
def test_every_vm_kind_summarises_a_filed_ticket_in_words(api, lab, requester):
    from approvals.models import Ticket
    from tests.approvals.helpers import file_ticket

    for name, (params, _) in VM_KINDS.items():
        vm = "prod-db-01" if name != "vm_reconfigure" else "dev-app-01"
        filed = file_ticket(api(requester), lab, name, {"vm": vm, **params})
        line = KINDS[name].summary(Ticket.objects.get(pk=filed["id"]))
        assert vm in line, (name, line)
    assert (
        KINDS["vm_decommission"]
        .summary(Ticket.objects.get(kind="vm_decommission"))
        .startswith("Destroy prod-db-01 on prod-esx-02, 4 CPU / 8192 MB, 1 disk(s)")
    )

"""The kinds registry: every kind has every part, every caller goes through
it, and a kind the connector cannot carry out is refused at submission."""

import dataclasses

import pytest
from django import forms
from rest_framework import serializers

from approvals.choices import HYPERVISOR_KINDS
from approvals.kinds import KINDS
from approvals.kinds.base import Kind, TicketForm
from connectors.registry import BACKENDS
from tests.approvals.helpers import VM_CREATE, body


def test_every_hypervisor_kind_is_registered_with_every_part():
    assert set(KINDS) == set(HYPERVISOR_KINDS)
    for name, kind in KINDS.items():
        assert kind.name == name
        assert issubclass(kind.params, serializers.Serializer), name
        assert issubclass(kind.form, TicketForm) and issubclass(kind.form, forms.Form), name
        assert kind.form.kind == name, name
        # The form fills its choices from the inventory and builds the kind's parameters.
        assert kind.form.fill_choices is not TicketForm.fill_choices, name
        assert kind.form.params is not TicketForm.params, name
        for part in ("check", "perform", "done", "summary"):
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

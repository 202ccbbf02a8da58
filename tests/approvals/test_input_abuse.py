"""Hostile input gets a clear 400 and stores nothing; payloads in free text are
stored as they were typed (and escaped wherever they are shown)."""

import json

import pytest

from approvals.models import Ticket
from tests.approvals.helpers import VM_CREATE, body, file_ticket

pytestmark = pytest.mark.django_db

PAYLOADS = [
    "'; DROP TABLE approvals_ticket; --",
    "<script>alert('x')</script>",
    '"><img src=x onerror=alert(1)>',
    "Ünïcödé ✓ — 変更 🚀",
    "right-to-left \u202e override",
    "{{ 7*7 }} {% debug %}",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_free_text_is_stored_verbatim_and_returned_as_data(api, lab, requester, approver, payload):
    ticket = file_ticket(api(requester), lab, "vm_create", VM_CREATE, justification=f"Needed: {payload}")
    assert Ticket.objects.get(pk=ticket["id"]).justification == f"Needed: {payload}"
    response = api(approver).post(f"/api/tickets/{ticket['id']}/reject/", {"comment": payload}, format="json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json()["approvals"][0]["comment"] == payload
    assert Ticket.objects.count() == 1


@pytest.mark.parametrize(
    "field,value",
    [
        ("justification", "nul \x00 byte"),
        ("params", {**VM_CREATE, "template": "tpl\x00debian12"}),
        ("params", {**VM_CREATE, "name": "web\nnew"}),
        ("params", {**VM_CREATE, "name": "../../etc/passwd"}),
        ("params", {**VM_CREATE, "cpus": 10**30}),
        ("params", {**VM_CREATE, "cpus": True}),
        ("params", {**VM_CREATE, "memory_mb": -1}),
        ("params", {**VM_CREATE, "network": ["pg-prod"]}),
        ("params", {**VM_CREATE, "datastore": {"$ne": ""}}),
        ("params", [VM_CREATE]),
        ("connector", "1 OR 1=1"),
        ("not_before", "yesterday"),
        ("kind", None),
    ],
)
def test_wrong_types_and_control_characters_are_refused(api, lab, requester, field, value):
    response = api(requester).post("/api/tickets/", {**body(lab, "vm_create", VM_CREATE), field: value}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert Ticket.objects.count() == 0


def test_unknown_params_are_dropped_not_stored(api, lab, requester):
    ticket = file_ticket(api(requester), lab, "vm_create", {**VM_CREATE, "state": "approved", "extra": "x" * 1000})
    stored = Ticket.objects.get(pk=ticket["id"]).params
    # What the ticket binds: the fields asked for (one network for every card
    # becomes the networks list) and the identities of the objects they name.
    assert set(stored) == (set(VM_CREATE) - {"network"}) | {"networks", "objects"}
    assert "state" not in stored and "extra" not in stored


def test_an_oversize_body_is_refused(api, lab, requester):
    huge = {**body(lab, "vm_create", VM_CREATE), "justification": "x" * (3 * 1024 * 1024)}
    response = api(requester).post("/api/tickets/", json.dumps(huge), content_type="application/json")
    assert response.status_code == 400
    assert Ticket.objects.count() == 0


def test_a_long_justification_is_refused_with_its_limit(api, lab, requester):
    response = api(requester).post(
        "/api/tickets/", {**body(lab, "vm_create", VM_CREATE), "justification": "x" * 4001}, format="json"
    )
    assert response.status_code == 400 and "4000" in response.json()["justification"][0]


def test_malformed_json_is_a_400(api, lab, requester):
    response = api(requester).post("/api/tickets/", "{not json", content_type="application/json")
    assert response.status_code == 400 and "JSON parse error" in response.json()["detail"]


def test_another_users_ticket_is_not_found_rather_than_forbidden(api, lab, requester, requester2):
    ticket = file_ticket(api(requester), lab, "vm_create", VM_CREATE)
    for method, path in [("get", ""), ("post", "cancel/"), ("post", "approve/"), ("post", "revoke/")]:
        response = getattr(api(requester2), method)(f"/api/tickets/{ticket['id']}/{path}")
        assert response.status_code == 404
    assert api(requester2).get("/api/tickets/999999/").status_code == 404
    assert api(requester2).get("/api/tickets/abc/").status_code == 404

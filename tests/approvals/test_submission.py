"""Every submission check: a clear field error and nothing stored."""

import pytest

from approvals.models import Ticket
from audit.models import AuditEntry
from tests.approvals.helpers import (
    ADMIN_ACCESS,
    DEV_TO_PROD,
    VM_CREATE,
    body,
    configure,
    file_ticket,
    migrate_within_zone,
    vm_host,
)

pytestmark = pytest.mark.django_db


def refused(client, lab, kind, params, **extra):
    tickets, entries = Ticket.objects.count(), AuditEntry.objects.filter(action="ticket.submitted").count()
    response = client.post("/api/tickets/", body(lab, kind, params, **extra), format="json")
    assert response.status_code == 400, response.content
    assert Ticket.objects.count() == tickets
    assert AuditEntry.objects.filter(action="ticket.submitted").count() == entries
    return response.json()


def test_vm_create_is_filed_pending_with_policy_copied(api, lab, requester):
    ticket = file_ticket(api(requester), lab, "vm_create", VM_CREATE)
    assert ticket["state"] == "pending"
    assert ticket["ref"] == f"CHG-{ticket['id']:06d}"
    assert ticket["required_approvals"] == 1
    assert ticket["zone"] == "prod"
    assert ticket["requester"] == "alice"
    assert [e["action"] for e in ticket["timeline"]] == ["ticket.submitted"]


@pytest.mark.parametrize(
    "change,field,words",
    [
        ({"template": "tpl-unknown"}, "template", "No template named 'tpl-unknown'"),
        ({"template": "prod-web-01"}, "template", "No template named 'prod-web-01'"),  # a VM, not a template
        ({"name": "prod-web-01"}, "name", "already exists"),
        ({"name": "bad name!"}, "name", "letters"),
        ({"host": "nope-esx"}, "host", "No host named 'nope-esx'"),
        ({"datastore": "ds-none"}, "datastore", "No datastore named 'ds-none'"),
        ({"datastore": "ds-dev"}, "datastore", "is in zone dev, but the placement is in zone prod"),
        ({"network": "pg-none"}, "networks", "No network named 'pg-none'"),
        ({"network": "pg-dev"}, "networks", "is in zone dev, but the placement is in zone prod"),
        ({"cpus": 9}, "cpus", "At most 8"),
        ({"memory_mb": 65536}, "memory_mb", "At most 32768"),
        ({"cpus": "two"}, "cpus", "valid integer"),
        ({"cluster": "prod"}, "host", "either a cluster or a host"),
    ],
)
def test_vm_create_refusals(api, lab, requester, change, field, words):
    errors = refused(api(requester), lab, "vm_create", {**VM_CREATE, **change})
    assert words in " ".join(errors["params"][field])


def test_vm_create_on_a_cluster(api, lab, requester):
    params = {k: v for k, v in VM_CREATE.items() if k != "host"} | {
        "cluster": "dev",
        "network": "pg-dev",
        "datastore": "ds-dev",
    }
    assert file_ticket(api(requester), lab, "vm_create", params)["zone"] == "dev"


def test_two_open_tickets_cannot_create_the_same_name(api, lab, requester):
    file_ticket(api(requester), lab, "vm_create", VM_CREATE)
    errors = refused(api(requester), lab, "vm_create", VM_CREATE)
    assert "open ticket" in errors["params"]["name"][0]


def test_migration_within_a_zone_needs_the_default_approvals(api, lab, requester):
    client = api(requester)
    ticket = file_ticket(client, lab, "vm_migrate", migrate_within_zone(client, lab))
    assert ticket["required_approvals"] == 1


def test_migration_into_a_more_trusted_zone_needs_the_pairs_approvals(api, lab, requester):
    ticket = file_ticket(api(requester), lab, "vm_migrate", DEV_TO_PROD)
    assert ticket["required_approvals"] == 2
    assert ticket["zone"] == "prod"


def test_migration_into_a_less_trusted_zone_is_always_refused(api, lab, requester, portal_admin, portal_admin2):
    # Even a policy that lists the pair cannot allow it.
    policy = api(portal_admin).get("/api/policies/?kind=vm_migrate").json()["results"][0]
    pairs = policy["allowed_zone_pairs"] + [{"source": "prod", "target": "dev", "required_approvals": 2}]
    done = configure(
        api(portal_admin), api(portal_admin2), f"/api/policies/{policy['id']}/", {"allowed_zone_pairs": pairs}
    )
    assert done.state == "succeeded", done.error
    errors = refused(api(requester), lab, "vm_migrate", {"vm": "prod-web-01", "target_host": "dev-esx-01"})
    assert "less trusted" in errors["params"]["target_host"][0]


def test_migration_into_another_zone_without_a_policy_is_refused(api, lab, requester):
    errors = refused(api(requester), lab, "vm_migrate", {"vm": "dmz-proxy-01", "target_host": "dev-esx-01"})
    assert "No policy allows" in errors["params"]["target_host"][0]


def test_migration_to_the_current_host_is_refused(api, lab, requester):
    client = api(requester)
    host = vm_host(client, lab, "dev-app-01")
    errors = refused(client, lab, "vm_migrate", {"vm": "dev-app-01", "target_host": host})
    assert "already on" in errors["params"]["target_host"][0]


@pytest.mark.parametrize(
    "change,field",
    [
        ({"vm": "ghost-01"}, "vm"),
        ({"target_host": "ghost-esx"}, "target_host"),
        ({"target_datastore": "ds-x"}, "target_datastore"),
    ],
)
def test_migration_of_unknown_objects_is_refused(api, lab, requester, change, field):
    errors = refused(api(requester), lab, "vm_migrate", {**DEV_TO_PROD, **change})
    assert "No " in errors["params"][field][0] and repr(next(iter(change.values()))) in errors["params"][field][0]


def test_admin_access_needs_two_approvals(api, lab, requester):
    assert file_ticket(api(requester), lab, "admin_access", ADMIN_ACCESS)["required_approvals"] == 2


@pytest.mark.parametrize(
    "change,field,words",
    [
        ({"duration_minutes": 481}, "duration_minutes", "At most 480"),
        ({"duration_minutes": 0}, "duration_minutes", "greater than or equal to 1"),
        ({"role": "God"}, "role", "not found"),
        (
            {"entity": "nowhere"},
            "entity",
            "No VM or host or cluster or folder or resource pool or datacenter or root folder named 'nowhere'",
        ),
        ({"principal": "<script>"}, "principal", "user or group"),
    ],
)
def test_admin_access_refusals(api, lab, requester, change, field, words):
    errors = refused(api(requester), lab, "admin_access", {**ADMIN_ACCESS, **change})
    assert words in errors["params"][field][0]


@pytest.mark.parametrize(
    "extra,field",
    [
        ({"justification": ""}, "justification"),
        ({"justification": "   "}, "justification"),
        ({"kind": "vm_destroy"}, "kind"),
        ({"params": "not an object"}, "params"),
        ({"not_before": "2100-01-02T00:00:00Z", "not_after": "2100-01-01T00:00:00Z"}, "not_after"),
        ({"not_after": "2000-01-01T00:00:00Z"}, "not_after"),
        ({"connector": 999999}, "connector"),
    ],
)
def test_ticket_level_refusals(api, lab, requester, extra, field):
    client = api(requester)
    tickets = Ticket.objects.count()
    response = client.post("/api/tickets/", {**body(lab, "vm_create", VM_CREATE), **extra}, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert Ticket.objects.count() == tickets


def test_state_cannot_be_written(api, lab, requester):
    client = api(requester)
    ticket = file_ticket(client, lab, "vm_create", VM_CREATE, state="succeeded", required_approvals=0)
    assert ticket["state"] == "pending" and ticket["required_approvals"] == 1
    assert client.patch(f"/api/tickets/{ticket['id']}/", {"state": "approved"}, format="json").status_code == 405
    assert client.put(f"/api/tickets/{ticket['id']}/", {"state": "approved"}, format="json").status_code == 405
    assert Ticket.objects.get(pk=ticket["id"]).state == "pending"


def test_only_requesters_file_tickets(api, lab, approver, auditor):
    for user in (approver, auditor):
        response = api(user).post("/api/tickets/", body(lab, "vm_create", VM_CREATE), format="json")
        assert response.status_code == 403
    assert Ticket.objects.count() == 0


def test_a_later_policy_change_does_not_move_filed_tickets(api, lab, requester, portal_admin, portal_admin2):
    ticket = file_ticket(api(requester), lab, "vm_create", VM_CREATE)
    policy = api(portal_admin).get("/api/policies/?kind=vm_create").json()["results"][0]
    done = configure(api(portal_admin), api(portal_admin2), f"/api/policies/{policy['id']}/", {"required_approvals": 3})
    assert done.state == "succeeded", done.error
    assert Ticket.objects.get(pk=ticket["id"]).required_approvals == 1
    later = file_ticket(api(requester), lab, "vm_create", {**VM_CREATE, "name": "web-new-02"})
    assert later["required_approvals"] == 3

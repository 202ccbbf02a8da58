"""Ticket bodies for the vcsim lab (see approvals/lab.py for its zones and
policies)."""

VM_CREATE = {
    "name": "web-new-01",
    "template": "tpl-debian12",
    "host": "prod-esx-01",
    "datastore": "ds-prod",
    "network": "pg-prod",
    "cpus": 2,
    "memory_mb": 2048,
}
ADMIN_ACCESS = {
    "principal": "LAB\\alice",
    "role": "VirtualMachinePowerUser",
    "entity": "prod-web-01",
    "duration_minutes": 30,
}


# A dev → prod move: the disks and every card go into prod as well.
DEV_TO_PROD = {
    "vm": "dev-app-01",
    "target_host": "prod-esx-01",
    "target_datastore": "ds-prod",
    "network_map": {"pg-dev": "pg-prod"},
}


def body(connector, kind, params, **extra):
    return {"kind": kind, "connector": connector.pk, "justification": "CHG for testing", "params": params, **extra}


def file_ticket(client, connector, kind, params, **extra):
    response = client.post("/api/tickets/", body(connector, kind, params, **extra), format="json")
    assert response.status_code == 201, response.content
    return response.json()


def vm_host(client, connector, vm_name):
    """The name of the host the VM runs on, read through the inventory API."""
    inventory = client.get(f"/api/connectors/{connector.pk}/inventory/").json()
    host_id = next(vm["host"] for vm in inventory["vms"] if vm["name"] == vm_name)
    return next(h["name"] for h in inventory["hosts"] if h["id"] == host_id)


def migrate_within_zone(client, connector, vm_name="dev-app-01"):
    """A vm_migrate body moving the VM to the other host of its cluster."""
    host = vm_host(client, connector, vm_name)
    cluster_hosts = {"dev": ["dev-esx-01", "dev-esx-02"], "prod": ["prod-esx-01", "prod-esx-02"]}
    hosts = cluster_hosts[host.split("-")[0]]
    return {"vm": vm_name, "target_host": next(h for h in hosts if h != host)}


def configure(client, approver_client, path: str, changes: dict, *, method: str = "patch"):
    """A configuration change as the portal makes it: one portal admin files
    the request (202), a second approves it, the worker applies it (here in
    the test process, which holds the worker's keys). Returns the request's
    final state."""
    from approvals.models import Ticket
    from approvals.services.execution import ticket_execute

    response = getattr(client, method)(path, {**changes, "justification": "test setup"}, format="json")
    assert response.status_code == 202, response.content
    request_id = response.json()["id"]
    approved = approver_client.post(f"/api/tickets/{request_id}/approve/", {}, format="json")
    assert approved.status_code == 200, approved.content
    ticket_execute(ticket_id=request_id, worker="test-worker")
    return Ticket.objects.get(pk=request_id)


def wait_for(ticket_id, *states, timeout=60):
    """The ticket once it is in one of `states` (a worker process moves it)."""
    import time

    from approvals.models import Ticket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ticket = Ticket.objects.get(pk=ticket_id)
        if ticket.state in states:
            return ticket
        time.sleep(0.2)
    raise AssertionError(f"ticket {ticket_id} is {ticket.state} ({ticket.progress}; {ticket.error}), not {states}")

"""The rules that decide what a ticket explains, on plain data (the vcsim
tests cover the hypervisor side)."""

import uuid
from datetime import timedelta

from django.utils import timezone

from approvals.models import Ticket
from audit.drift import access_grace, compare
from audit.models import DriftBaseline
from connectors.base import Host, Inventory, Permission, VirtualMachine

NOW = timezone.now()
BASELINE = DriftBaseline(taken_at=NOW - timedelta(days=1), vms=[], permissions=[])
# Cluster a (domain-c1) holds host-1 and host-2, cluster b (domain-c2) host-3.
HOSTS = (
    Host("host-1", "esx-a1", "domain-c1", "/dc/host/a/esx-a1", "domain-c1"),
    Host("host-2", "esx-a2", "domain-c1", "/dc/host/a/esx-a2", "domain-c1"),
    Host("host-3", "esx-b1", "domain-c2", "/dc/host/b/esx-b1", "domain-c2"),
)


def ticket(pk, kind, state, params, **fields):
    return Ticket(pk=pk, kind=kind, state=state, params=params, created_at=NOW - timedelta(hours=2), **fields)


def vm(name, host_id, uid=None, vm_id=None):
    return VirtualMachine(
        id=vm_id or f"vm-{name}",
        name=name,
        parent_id="group-v1",
        path=f"/dc/vm/{name}",
        host_id=host_id,
        datastore_ids=(),
        nics=(),
        power_state="poweredOn",
        instance_uuid=uid or str(uuid.uuid4()),
    )


def kinds(drifts):
    return sorted(d.kind for d in drifts)


def test_a_vm_created_on_a_cluster_may_run_on_any_of_its_hosts():
    op = uuid.uuid4()
    create = ticket(
        1,
        "vm_create",
        "succeeded",
        {"name": "n", "cluster": "domain-c1"},
        operation_uuid=op,
        started_at=NOW - timedelta(hours=1),
        finished_at=NOW - timedelta(hours=1),
    )
    inventory = Inventory(hosts=HOSTS, vms=(vm("n", "host-2", str(op)),))
    assert compare(inventory=inventory, permissions=(), baseline=BASELINE, tickets=[create], now=NOW) == []
    inventory = Inventory(hosts=HOSTS, vms=(vm("n", "host-3", str(op)),))
    [moved] = compare(inventory=inventory, permissions=(), baseline=BASELINE, tickets=[create], now=NOW)
    assert moved.kind == "vm_moved"
    assert (moved.observed["host"], moved.observed["host_name"]) == ("host-3", "esx-b1")
    assert moved.expected["hosts"] == ["host-1", "host-2"]


def test_a_running_ticket_explains_what_it_is_doing():
    op = uuid.uuid4()
    running = ticket(1, "vm_create", "running", {"name": "n", "host": "host-1"}, operation_uuid=op)
    grant = ticket(2, "admin_access", "running", {"principal": "LAB\\x", "role": "Admin", "entity": "vm-n"})
    inventory = Inventory(hosts=HOSTS, vms=(vm("n", "host-1", str(op)),))
    permissions = (Permission("lab\\X", "Admin", "vm-n", "n"),)
    drifts = compare(inventory=inventory, permissions=permissions, baseline=BASELINE, tickets=[running, grant], now=NOW)
    assert drifts == []


def test_a_ticket_explains_only_the_objects_it_bound_not_their_namesakes():
    op = uuid.uuid4()
    create = ticket(1, "vm_create", "succeeded", {"name": "n", "host": "host-1"}, operation_uuid=op)
    # Another VM, also named n, moved (by hand) to host-3 and granted access by
    # hand: tickets name vm-n, not the name.
    twin = vm("n", "host-3", vm_id="vm-twin")
    move = ticket(2, "vm_migrate", "succeeded", {"vm": "vm-n", "target_host": "host-3"}, finished_at=NOW)
    grant = ticket(
        3,
        "admin_access",
        "succeeded",
        {"principal": "LAB\\x", "role": "Admin", "entity": "vm-n"},
        access_expires_at=NOW + timedelta(hours=1),
    )
    inventory = Inventory(hosts=HOSTS, vms=(vm("n", "host-3", str(op)), twin))
    twin_permission = Permission("LAB\\x", "Admin", "vm-twin", "n")
    drifts = compare(
        inventory=inventory, permissions=(twin_permission,), baseline=BASELINE, tickets=[create, move, grant], now=NOW
    )
    assert sorted((d.kind, d.object_ref) for d in drifts) == [
        ("permission_unexplained", "permission:vm-twin:user:lab\\x"),
        ("vm_unexplained", f"vm:{twin.instance_uuid}"),
    ]
    unexplained = next(d for d in drifts if d.kind == "permission_unexplained")
    assert (unexplained.observed["entity_id"], unexplained.observed["entity"]) == ("vm-twin", "n")


def test_a_vm_of_a_failed_ticket_names_the_ticket():
    op = uuid.uuid4()
    failed = ticket(7, "vm_create", "failed", {"name": "n", "host": "host-1"}, operation_uuid=op)
    [found] = compare(
        inventory=Inventory(hosts=HOSTS, vms=(vm("n", "host-1", str(op)),)),
        permissions=(),
        baseline=BASELINE,
        tickets=[failed],
        now=NOW,
    )
    assert (found.kind, found.observed["ticket"], found.ticket) == ("vm_unexplained", "CHG-000007", failed)
    assert (found.observed["host"], found.observed["host_name"]) == ("host-1", "esx-a1")


def test_expired_access_is_explained_only_for_the_sweepers_grace():
    # The grace runs on the clock (the kind asks timezone.now()), not the module's now.
    now = timezone.now()
    permission = Permission("LAB\\x", "Admin", "vm-n", "n")
    params = {"principal": "LAB\\x", "role": "Admin", "entity": "vm-n"}
    just_expired = ticket(1, "admin_access", "succeeded", params, access_expires_at=now - timedelta(seconds=5))
    assert (
        compare(inventory=Inventory(), permissions=(permission,), baseline=BASELINE, tickets=[just_expired], now=now)
        == []
    )
    long_expired = ticket(
        1, "admin_access", "succeeded", params, access_expires_at=now - access_grace() - timedelta(seconds=1)
    )
    [found] = compare(
        inventory=Inventory(), permissions=(permission,), baseline=BASELINE, tickets=[long_expired], now=now
    )
    assert (found.kind, found.expected["ticket_state"]) == ("access_after_end", "succeeded")


def test_a_different_role_than_granted_is_not_explained():
    params = {"principal": "LAB\\x", "role": "ReadOnly", "entity": "vm-n"}
    active = ticket(1, "admin_access", "succeeded", params, access_expires_at=NOW + timedelta(hours=1))
    permission = Permission("LAB\\x", "Admin", "vm-n", "n")
    assert kinds(
        compare(inventory=Inventory(), permissions=(permission,), baseline=BASELINE, tickets=[active], now=NOW)
    ) == ["permission_unexplained"]


def test_group_permissions_are_never_explained_by_a_users_ticket():
    params = {"principal": "LAB\\ops", "role": "Admin", "entity": "vm-n"}
    active = ticket(1, "admin_access", "succeeded", params, access_expires_at=NOW + timedelta(hours=1))
    permission = Permission("LAB\\ops", "Admin", "vm-n", "n", is_group=True)
    [found] = compare(inventory=Inventory(), permissions=(permission,), baseline=BASELINE, tickets=[active], now=NOW)
    assert found.object_ref == "permission:vm-n:group:lab\\ops"


def test_a_migration_before_the_vm_existed_does_not_count():
    op = uuid.uuid4()
    create = ticket(
        2,
        "vm_create",
        "succeeded",
        {"name": "n", "host": "host-1"},
        operation_uuid=op,
        started_at=NOW - timedelta(hours=1),
        finished_at=NOW - timedelta(minutes=50),
    )
    # A move of the same id to host-3 that finished before this VM was created
    # (an id a rebuilt hypervisor handed out again) says nothing about this VM.
    old_move = ticket(
        1, "vm_migrate", "succeeded", {"vm": "vm-n", "target_host": "host-3"}, finished_at=NOW - timedelta(hours=3)
    )
    inventory = Inventory(hosts=HOSTS, vms=(vm("n", "host-1", str(op)),))
    assert compare(inventory=inventory, permissions=(), baseline=BASELINE, tickets=[old_move, create], now=NOW) == []

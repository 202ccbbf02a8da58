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
HOSTS = (Host("host-1", "esx-a1", "a"), Host("host-2", "esx-a2", "a"), Host("host-3", "esx-b1", "b"))


def ticket(pk, kind, state, params, **fields):
    return Ticket(pk=pk, kind=kind, state=state, params=params, created_at=NOW - timedelta(hours=2), **fields)


def vm(name, host, uid=None):
    return VirtualMachine(
        id=f"vm-{name}",
        name=name,
        host=host,
        datastores=(),
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
        {"name": "n", "cluster": "a"},
        operation_uuid=op,
        started_at=NOW - timedelta(hours=1),
        finished_at=NOW - timedelta(hours=1),
    )
    inventory = Inventory(hosts=HOSTS, vms=(vm("n", "esx-a2", str(op)),))
    assert compare(inventory=inventory, permissions=(), baseline=BASELINE, tickets=[create], now=NOW) == []
    inventory = Inventory(hosts=HOSTS, vms=(vm("n", "esx-b1", str(op)),))
    assert kinds(compare(inventory=inventory, permissions=(), baseline=BASELINE, tickets=[create], now=NOW)) == [
        "vm_moved"
    ]


def test_a_running_ticket_explains_what_it_is_doing():
    op = uuid.uuid4()
    running = ticket(1, "vm_create", "running", {"name": "n", "host": "esx-a1"}, operation_uuid=op)
    grant = ticket(2, "admin_access", "running", {"principal": "LAB\\x", "role": "Admin", "entity": "n"})
    inventory = Inventory(hosts=HOSTS, vms=(vm("n", "esx-a1", str(op)),))
    permissions = (Permission("lab\\X", "Admin", "n", "vm-n"),)
    drifts = compare(inventory=inventory, permissions=permissions, baseline=BASELINE, tickets=[running, grant], now=NOW)
    assert drifts == []


def test_a_vm_of_a_failed_ticket_names_the_ticket():
    op = uuid.uuid4()
    failed = ticket(7, "vm_create", "failed", {"name": "n", "host": "esx-a1"}, operation_uuid=op)
    [found] = compare(
        inventory=Inventory(hosts=HOSTS, vms=(vm("n", "esx-a1", str(op)),)),
        permissions=(),
        baseline=BASELINE,
        tickets=[failed],
        now=NOW,
    )
    assert (found.kind, found.observed["ticket"], found.ticket) == ("vm_unexplained", "CHG-000007", failed)


def test_expired_access_is_explained_only_for_the_sweepers_grace():
    permission = Permission("LAB\\x", "Admin", "n", "vm-n")
    params = {"principal": "LAB\\x", "role": "Admin", "entity": "n"}
    just_expired = ticket(1, "admin_access", "succeeded", params, access_expires_at=NOW - timedelta(seconds=5))
    assert (
        compare(inventory=Inventory(), permissions=(permission,), baseline=BASELINE, tickets=[just_expired], now=NOW)
        == []
    )
    long_expired = ticket(
        1, "admin_access", "succeeded", params, access_expires_at=NOW - access_grace() - timedelta(seconds=1)
    )
    [found] = compare(
        inventory=Inventory(), permissions=(permission,), baseline=BASELINE, tickets=[long_expired], now=NOW
    )
    assert (found.kind, found.expected["ticket_state"]) == ("access_after_end", "succeeded")


def test_a_different_role_than_granted_is_not_explained():
    params = {"principal": "LAB\\x", "role": "ReadOnly", "entity": "n"}
    active = ticket(1, "admin_access", "succeeded", params, access_expires_at=NOW + timedelta(hours=1))
    permission = Permission("LAB\\x", "Admin", "n", "vm-n")
    assert kinds(
        compare(inventory=Inventory(), permissions=(permission,), baseline=BASELINE, tickets=[active], now=NOW)
    ) == ["permission_unexplained"]


def test_group_permissions_are_never_explained_by_a_users_ticket():
    params = {"principal": "LAB\\ops", "role": "Admin", "entity": "n"}
    active = ticket(1, "admin_access", "succeeded", params, access_expires_at=NOW + timedelta(hours=1))
    permission = Permission("LAB\\ops", "Admin", "n", "vm-n", is_group=True)
    [found] = compare(inventory=Inventory(), permissions=(permission,), baseline=BASELINE, tickets=[active], now=NOW)
    assert found.object_ref == "permission:vm-n:group:lab\\ops"


def test_a_migration_before_the_vm_existed_does_not_count():
    op = uuid.uuid4()
    create = ticket(
        2,
        "vm_create",
        "succeeded",
        {"name": "n", "host": "esx-a1"},
        operation_uuid=op,
        started_at=NOW - timedelta(hours=1),
        finished_at=NOW - timedelta(minutes=50),
    )
    # An older VM of the same name was moved to esx-b1 before this one was created.
    old_move = ticket(
        1, "vm_migrate", "succeeded", {"vm": "n", "target_host": "esx-b1"}, finished_at=NOW - timedelta(hours=3)
    )
    inventory = Inventory(hosts=HOSTS, vms=(vm("n", "esx-a1", str(op)),))
    assert compare(inventory=inventory, permissions=(), baseline=BASELINE, tickets=[old_move, create], now=NOW) == []

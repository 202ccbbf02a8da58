"""Live drift on plain data: what a change is, who made it, and which
tickets explain it (the sync process tests cover the hypervisor side).

vcsim's lab accepts a single account, so a change by someone other than the
connector's account cannot be made there on demand: the event naming another
user is built here as the hypervisor would report it."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group

from approvals.models import Ticket
from audit.live import inventory_changes, permission_changes, raise_for_changes, same_account
from audit.models import AuditEntry, Finding
from connectors.base import Folder, Host, Inventory, Nic, VirtualMachine
from connectors.feed import Event

pytestmark = pytest.mark.django_db

HOSTS = (
    Host("host-1", "esx-1", "domain-c1", "/dc/host/a/esx-1", "domain-c1"),
    Host("host-2", "esx-2", "domain-c1", "/dc/host/a/esx-2", "domain-c1"),
)
FOLDER = Folder("group-v1", "vms", "group-d1", "/dc/vm/vms")
VM = VirtualMachine(
    id="vm-7",
    name="web",
    parent_id="group-v1",
    path="/dc/vm/vms/web",
    host_id="host-1",
    datastore_ids=("datastore-1",),
    nics=(Nic(4000, "Network adapter 1", "network-1"),),
    power_state="poweredOn",
    instance_uuid="5f1d9a34-0000-4000-8000-000000000007",
)
BEFORE = Inventory(root_folder_id="group-d1", folders=(FOLDER,), hosts=HOSTS, vms=(VM,))
MOVED = replace(BEFORE, vms=(replace(VM, host_id="host-2"),))
AT = datetime(2026, 12, 2, 12, 3, 4, tzinfo=UTC)


def event(kind, user, object_id="vm-7", **fields):
    return Event(key=10, type=kind, created=AT, user=user, object_id=object_id, **fields)


def test_what_changed_from_one_inventory_to_the_next():
    [moved] = inventory_changes(BEFORE, MOVED)
    assert (moved.what, moved.before["host"], moved.after["host"], moved.after["host_name"]) == (
        "moved",
        "host-1",
        "host-2",
        "esx-2",
    )
    # A folder renamed changes its VMs' paths, and only the folder changed.
    renamed = replace(
        BEFORE,
        folders=(replace(FOLDER, name="vms2", path="/dc/vm/vms2"),),
        vms=(replace(VM, path="/dc/vm/vms2/web"),),
    )
    assert [(c.object_type, c.what) for c in inventory_changes(BEFORE, renamed)] == [("folder", "renamed")]
    gone = replace(BEFORE, vms=())
    assert [(c.what, c.instance_uuid) for c in inventory_changes(BEFORE, gone)] == [("removed", VM.instance_uuid)]
    row = {"principal": "LAB\\x", "group": False, "role": "Admin", "entity_id": "vm-7", "entity": "web"}
    assert [c.what for c in permission_changes([], [row])] == ["permission_added"]
    assert [c.what for c in permission_changes([row], [{**row, "role": "ReadOnly"}])] == ["permission_changed"]


def test_a_change_names_who_made_it_and_when(lab):
    [found] = raise_for_changes(
        connector=lab,
        changes=inventory_changes(BEFORE, MOVED),
        events=[event("VmMigratedEvent", "LAB\\mallory"), event("VmPoweredOnEvent", "LAB\\other")],
    )
    assert (found.kind, found.object_ref) == ("vm_moved", f"vm:{VM.instance_uuid}")
    assert (found.observed["by"], found.observed["at"], found.observed["host"]) == (
        "LAB\\mallory",
        AT.isoformat(),
        "host-2",
    )
    assert found.observed["words"].startswith("VM web moved by LAB\\mallory at ")
    entry = AuditEntry.objects.get(action="finding.raised", object_id=str(found.pk))
    assert entry.details["observed"]["by"] == "LAB\\mallory"
    # Seen again (a restarted sync, a second report): not raised twice.
    assert raise_for_changes(connector=lab, changes=inventory_changes(BEFORE, MOVED)) == []
    assert Finding.objects.count() == 1


def test_the_portals_own_account_acting_without_a_ticket_is_a_finding_of_its_own(lab):
    assert same_account("VSPHERE.LOCAL\\Administrator", "administrator@vsphere.local")
    assert not same_account("LAB\\mallory", "administrator@vsphere.local")
    [found] = raise_for_changes(
        connector=lab, changes=inventory_changes(BEFORE, MOVED), events=[event("VmRelocatedEvent", lab.username)]
    )
    assert (found.kind, found.object_ref) == ("portal_account", f"vm:{VM.instance_uuid}:moved")
    assert found.expected["account"].startswith("the portal's own service account")


def test_a_running_ticket_explains_its_change_and_a_namesake_is_not_explained(lab, requester):
    def migrate(state, vm):
        return Ticket.objects.create(
            kind="vm_migrate",
            state=state,
            connector=lab,
            requester=requester,
            justification="t",
            required_approvals=1,
            pending_expires_at=AT,
            approver_group=Group.objects.get(name="approver"),
            params={"vm": vm, "target_host": "host-2", "source_host": "host-1"},
        )

    migrate("running", "vm-7")
    assert raise_for_changes(connector=lab, changes=inventory_changes(BEFORE, MOVED)) == []
    Ticket.objects.all().delete()
    migrate("running", "vm-8")  # another VM
    migrate("rejected", "vm-7")  # never ran
    assert [f.kind for f in raise_for_changes(connector=lab, changes=inventory_changes(BEFORE, MOVED))] == ["vm_moved"]

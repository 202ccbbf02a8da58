"""Tickets bind objects, not names: every object is resolved at submission to
one identity, the worker acts on ids, and zones cover storage, every network
card and containers. Real vcsim labs; results read back through a separate
pyVmomi session."""

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from approvals.inventory import inventory_outdated
from approvals.models import Policy, Ticket, Zone
from approvals.services import ticket_approve
from approvals.services.execution import ticket_execute
from audit.models import AuditEntry
from tests.approvals.helpers import ADMIN_ACCESS, VM_CREATE, body

pytestmark = pytest.mark.django_db


def find(si, vimtype, name):
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vimtype], True)
    try:
        return [obj for obj in view.view if obj.name == name]
    finally:
        view.Destroy()


def one(si, vimtype, name):
    [obj] = find(si, vimtype, name)
    return obj


def rename(si, vimtype, name, new_name):
    WaitForTask(one(si, vimtype, name).Rename_Task(new_name))


def clone_into(si, source, folder_name, name):
    """A copy of VM `source` named `name` in VM folder `folder_name`."""
    vm = one(si, vim.VirtualMachine, source)
    folder = one(si, vim.Folder, folder_name)
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(), powerOn=False)
    WaitForTask(vm.CloneVM_Task(folder=folder, name=name, spec=spec))
    return [v for v in find(si, vim.VirtualMachine, name) if v.parent == folder][0]


def submit(api, user, lab, kind, params):
    # The test changed vcsim behind the portal's back, and no sync follows it
    # here: submissions read the inventory afresh.
    inventory_outdated(lab.pk)
    return api(user).post("/api/tickets/", body(lab, kind, params), format="json")


def refused(response):
    assert response.status_code == 400, response.content
    return response.json()["params"]


def approve_and_run(ticket_id, *approvers):
    for user in approvers:
        ticket_approve(ticket_id=ticket_id, approver=user)
    ticket_execute(ticket_id=ticket_id, worker="test-worker")
    return Ticket.objects.get(pk=ticket_id)


@pytest.fixture
def si(fresh_vcsim):
    return fresh_vcsim.connect()


def test_a_rename_swap_never_moves_the_unapproved_vm(api, own_lab, si, requester, approver):
    a, b = one(si, vim.VirtualMachine, "dev-app-01"), one(si, vim.VirtualMachine, "dev-app-02")
    b_host = b.runtime.host.name
    response = submit(api, requester, own_lab, "vm_migrate", {"vm": "dev-app-01", "target_host": "dev-esx-02"})
    assert response.status_code == 201, response.content
    ticket = response.json()
    assert ticket["params"]["vm"] == a._moId
    assert ticket["params"]["objects"]["vm"]["instance_uuid"] == a.config.instanceUuid
    # Before approval: A becomes "renamed-a", B takes A's old name.
    rename(si, vim.VirtualMachine, "dev-app-01", "renamed-a")
    rename(si, vim.VirtualMachine, "dev-app-02", "dev-app-01")
    done = approve_and_run(ticket["id"], approver)
    assert done.state == "succeeded", done.error
    assert one(si, vim.VirtualMachine, "dev-app-01").runtime.host.name == b_host  # B, the unapproved one, stayed
    assert one(si, vim.VirtualMachine, "renamed-a").runtime.host.name == "dev-esx-02"  # the approved VM moved
    renamed = AuditEntry.objects.get(ticket_id=ticket["id"], action="ticket.objects_renamed")
    assert renamed.details["vm"] == {"id": a._moId, "from": "dev-app-01", "to": "renamed-a"}


def test_a_replaced_vm_fails_the_ticket(api, own_lab, si, requester, approver):
    ticket = submit(api, requester, own_lab, "vm_migrate", {"vm": "dev-app-01", "target_host": "dev-esx-02"}).json()
    vm = one(si, vim.VirtualMachine, "dev-app-01")
    WaitForTask(vm.PowerOffVM_Task())
    WaitForTask(vm.Destroy_Task())
    done = approve_and_run(ticket["id"], approver)
    assert done.state == "failed" and "gone; needs a new ticket" in done.error


def test_two_vms_of_one_name_are_refused_with_their_paths_then_named_by_id(api, own_lab, si, requester):
    first = clone_into(si, "dev-app-02", "dev-vms", "twin")
    second = clone_into(si, "dev-app-02", "prod-vms", "twin")
    errors = refused(submit(api, requester, own_lab, "vm_migrate", {"vm": "twin", "target_host": "dev-esx-01"}))
    words = errors["vm"][0]
    assert "2 objects are named 'twin'" in words
    assert first._moId in words and second._moId in words
    assert "/lab/vm/dev-vms/twin" in words and "/lab/vm/prod-vms/twin" in words
    by_id = submit(api, requester, own_lab, "vm_migrate", {"vm": first._moId, "target_host": "dev-esx-01"})
    assert by_id.status_code == 201, by_id.content
    by_path = submit(
        api, requester, own_lab, "vm_migrate", {"vm": "/lab/vm/prod-vms/twin", "target_host": "dev-esx-01"}
    )
    assert by_path.status_code == 201, by_path.content
    assert by_path.json()["params"]["vm"] == second._moId
    assert Ticket.objects.filter(params__vm=first._moId).count() == 1


def test_a_vm_and_a_host_sharing_a_name(api, own_lab, si, requester):
    rename(si, vim.VirtualMachine, "dev-app-02", "dev-esx-02")
    errors = refused(submit(api, requester, own_lab, "admin_access", {**ADMIN_ACCESS, "entity": "dev-esx-02"}))
    assert "2 objects are named 'dev-esx-02'" in errors["entity"][0]
    # A field that takes hosts only is not ambiguous.
    ok = submit(api, requester, own_lab, "vm_migrate", {"vm": "dev-app-01", "target_host": "dev-esx-02"})
    assert ok.status_code == 201 and ok.json()["params"]["objects"]["target_host"]["type"] == "host"


def test_a_name_of_managed_object_id_form_is_only_an_id(api, own_lab, si, requester):
    root = si.RetrieveContent().rootFolder._moId
    rename(si, vim.VirtualMachine, "dev-app-02", root)
    errors = refused(submit(api, requester, own_lab, "admin_access", {**ADMIN_ACCESS, "entity": root}))
    assert "root folder" in errors["entity"][0]  # the root folder, not the VM that carries its id as a name
    errors = refused(submit(api, requester, own_lab, "vm_create", {**VM_CREATE, "name": "vm-77"}))
    assert "form of a managed-object id" in errors["name"][0]
    assert not Ticket.objects.exists()


def test_the_root_folder_only_where_the_policy_names_it(api, own_lab, si, requester):
    root = si.RetrieveContent().rootFolder._moId
    refused(submit(api, requester, own_lab, "admin_access", {**ADMIN_ACCESS, "entity": root}))
    Policy.objects.filter(kind="admin_access").update(top_level_entities=[root])
    ok = submit(api, requester, own_lab, "admin_access", {**ADMIN_ACCESS, "entity": root})
    assert ok.status_code == 201, ok.content
    assert ok.json()["zone"] == "prod"  # the most trusted zone beneath


def test_a_container_takes_the_most_trusted_zone_beneath_it(api, own_lab, requester):
    prod = Zone.objects.get(connector=own_lab, name="prod")
    strict = Policy.objects.create(
        kind="admin_access",
        zone=prod,
        approver_group=Policy.objects.get(kind="admin_access", zone=None).approver_group,
        required_approvals=3,
        grantable_roles=["ReadOnly"],
    )
    response = submit(
        api, requester, own_lab, "admin_access", {**ADMIN_ACCESS, "entity": "prod-vms", "role": "ReadOnly"}
    )
    assert response.status_code == 201, response.content
    assert response.json()["zone"] == "prod" and response.json()["required_approvals"] == 3
    # The folder of VM folders holds prod VMs too.
    response = submit(
        api, requester, own_lab, "admin_access", {**ADMIN_ACCESS, "entity": "/lab/vm", "role": "ReadOnly"}
    )
    assert response.status_code == 201 and response.json()["required_approvals"] == strict.required_approvals


def test_a_role_the_policy_does_not_list_is_refused(api, lab, requester):
    errors = refused(submit(api, requester, lab, "admin_access", {**ADMIN_ACCESS, "role": "Admin"}))
    assert "does not grant 'Admin'" in errors["role"][0]


def test_storage_must_be_in_the_placement_zone(api, lab, requester):
    errors = refused(submit(api, requester, lab, "vm_create", {**VM_CREATE, "datastore": "ds-dmz"}))
    assert "zone dmz" in errors["datastore"][0]


def test_a_cross_zone_migration_moves_disks_and_every_card_into_the_target_zone(
    api, own_lab, si, requester, approver, approver2
):
    move = {"vm": "dev-app-01", "target_host": "prod-esx-01"}
    errors = refused(submit(api, requester, own_lab, "vm_migrate", move))
    assert "ds-dev" in errors["target_datastore"][0]
    assert "pg-dev" in errors["network_map"][0] and "Network adapter 1" in errors["network_map"][0]
    errors = refused(submit(api, requester, own_lab, "vm_migrate", {**move, "target_datastore": "ds-prod"}))
    assert "network_map" in errors and "target_datastore" not in errors
    full = {**move, "target_datastore": "ds-prod", "network_map": {"pg-dev": "pg-prod"}}
    response = submit(api, requester, own_lab, "vm_migrate", full)
    assert response.status_code == 201, response.content
    done = approve_and_run(response.json()["id"], approver, approver2)
    assert done.state == "succeeded", done.error
    vm = one(si, vim.VirtualMachine, "dev-app-01")
    assert vm.runtime.host.name == "prod-esx-01"
    assert {d.name for d in vm.datastore} == {"ds-prod"}
    nets = [d.backing.deviceName for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]
    assert nets and set(nets) == {"pg-prod"}


def test_a_template_with_two_cards_gets_both_connected(api, own_lab, si, requester, approver):
    params = {**VM_CREATE, "name": "two-cards", "template": "tpl-rhel9"}
    params.pop("network")
    errors = refused(submit(api, requester, own_lab, "vm_create", params))
    assert "2 network card(s)" in errors["networks"][0]
    errors = refused(
        submit(api, requester, own_lab, "vm_create", {**params, "networks": ["pg-prod", "pg-prod", "pg-prod"]})
    )
    assert "give 2 networks" in errors["networks"][0]
    errors = refused(submit(api, requester, own_lab, "vm_create", {**params, "networks": ["pg-prod", "pg-dev"]}))
    assert "Network adapter 2" in errors["networks"][0]
    response = submit(api, requester, own_lab, "vm_create", {**params, "networks": ["pg-prod"]})
    assert response.status_code == 201, response.content
    done = approve_and_run(response.json()["id"], approver)
    assert done.state == "succeeded", done.error
    vm = one(si, vim.VirtualMachine, "two-cards")
    nets = [d.backing.deviceName for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]
    assert nets == ["pg-prod", "pg-prod"]


def test_pages_and_api_show_type_and_path_of_every_object(api, client, lab, requester):
    move = {"vm": "dev-app-01", "target_host": "dev-esx-02"}
    ticket = submit(api, requester, lab, "vm_migrate", move).json()
    client.force_login(requester)
    page = client.get(f"/tickets/{ticket['id']}/").content.decode()
    for ref in ticket["params"]["objects"].values():
        assert ref["path"] in page and ref["id"] in page and ref["type"] in page
    inventory = api(requester).get(f"/api/connectors/{lab.pk}/inventory/").json()
    vm = next(v for v in inventory["vms"] if v["name"] == "dev-app-01")
    assert vm["id"].startswith("vm-") and vm["path"] == "/lab/vm/dev-vms/dev-app-01"
    assert vm["nics"] and vm["nics"][0]["network"].startswith(("network-", "dvportgroup-"))
    assert {d["name"]: d["zone"] for d in inventory["datastores"]}["ds-prod"] == "prod"

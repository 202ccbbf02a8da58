"""Decommission, reconfigure, power and snapshot tickets end to end: filed
through the API, approved, carried out by a real Celery worker on a vcsim lab
of this module's own, and read back through a separate pyVmomi session.

One lab and one worker (with beat) serve the whole module; each test acts on
VMs no other test here touches."""

import os
import time
import uuid

import pytest
from pyVmomi import vim

from approvals.inventory import inventory_outdated
from approvals.kinds import KINDS
from approvals.models import Policy
from audit.models import AuditEntry
from connectors.models import InventoryObject
from connectors.vsphere import VSphereConnector
from tests.approvals.helpers import file_ticket, wait_for
from tests.conftest import register_lab
from tests.fixtures.vcsim import VcsimProcess, recent_tasks
from tests.fixtures.workers import WORKER_ENV, Worker, subprocess_database_url

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def module_vcsim():
    with VcsimProcess() as lab:
        yield lab


@pytest.fixture(scope="module")
def module_worker(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        database_url = subprocess_database_url()
    env = {
        **os.environ,
        **WORKER_ENV,
        "DATABASE_URL": database_url,
        "TWOKEY_SERVICE": "worker",
        "GUEST_SHUTDOWN_TIMEOUT_SECONDS": "5",
    }
    worker = Worker("kinds", beat=True, env=env).start()
    yield worker
    worker.stop()


@pytest.fixture
def kinds_lab(transactional_db, roles, module_vcsim, module_worker):
    return register_lab(module_vcsim, name="kinds-lab")


@pytest.fixture(scope="module")
def check(module_vcsim):
    """A separate pyVmomi session to read the results back."""
    si = module_vcsim.connect()
    yield si
    si.content.sessionManager.Logout()


def find_vm(si, name):
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        return next((vm for vm in view.view if vm.name == name), None)
    finally:
        view.Destroy()


def wait_task(task):
    while task.info.state not in ("success", "error"):
        time.sleep(0.05)
    assert task.info.state == "success", task.info.error
    return task.info.result


def cards(vm):
    return [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]


def clone_running(si, name):
    """A running VM of the lab's own, made outside the portal (setup)."""
    template = find_vm(si, "tpl-debian12")
    pool = find_vm(si, "dev-app-01").resourcePool
    # A fresh instance UUID, as vCenter gives (vcsim derives one from the name).
    config = vim.vm.ConfigSpec(instanceUuid=str(uuid.uuid4()))
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=pool), powerOn=False, template=False, config=config)
    vm = wait_task(template.CloneVM_Task(folder=template.parent, name=name, spec=spec))
    wait_task(vm.PowerOnVM_Task())
    return vm


def decide(api, ticket, *approvers):
    for user in approvers:
        response = api(user).post(f"/api/tickets/{ticket['id']}/approve/", {}, format="json")
        assert response.status_code == 200, response.content
    done = wait_for(ticket["id"], "succeeded", "failed")
    assert done.state == "succeeded", done.error
    return done


def carried_out(api, lab, requester, kind, params, *approvers):
    ticket = file_ticket(api(requester), lab, kind, params)
    return decide(api, ticket, *approvers)


def test_vm_power_on_guest_shutdown_and_reset(api, kinds_lab, requester, approver, check):
    done = carried_out(api, kinds_lab, requester, "vm_power", {"vm": "dmz-proxy-01", "action": "shutdown"}, approver)
    vm = find_vm(check, "dmz-proxy-01")
    assert vm.runtime.powerState == "poweredOff"
    assert "shut down by its guest" in done.result["summary"]
    carried_out(api, kinds_lab, requester, "vm_power", {"vm": "dmz-proxy-01", "action": "on"}, approver)
    assert vm.runtime.powerState == "poweredOn"
    reset = carried_out(api, kinds_lab, requester, "vm_power", {"vm": "dmz-proxy-01", "action": "reset"}, approver)
    [task] = recent_tasks(check, "reset", vm._moId)
    assert task.key == reset.hypervisor_task_id and vm.runtime.powerState == "poweredOn"
    assert KINDS["vm_power"].summary(reset) == "Reset (hard): dmz-proxy-01"


def test_vm_reconfigure_while_on_with_hot_add_then_while_off(api, kinds_lab, requester, approver, check):
    web = find_vm(check, "prod-web-01")
    # A vCenter admin allowed hot-add on prod-web-01 (outside the portal).
    wait_task(web.ReconfigVM_Task(spec=vim.vm.ConfigSpec(cpuHotAddEnabled=True, memoryHotAddEnabled=True)))
    grown = carried_out(
        api,
        kinds_lab,
        requester,
        "vm_reconfigure",
        {"vm": "prod-web-01", "cpus": 4, "memory_mb": 8192, "add_network": "pg-prod"},
        approver,
    )
    assert web.runtime.powerState == "poweredOn"
    assert (web.config.hardware.numCPU, web.config.hardware.memoryMB) == (4, 8192)
    assert [c.backing.network.name for c in cards(web)] == ["pg-prod", "pg-prod"]
    assert grown.params["needs_power_off"] is False
    carried_out(
        api, kinds_lab, requester, "vm_reconfigure", {"vm": "prod-web-01", "remove_nic": "Network adapter 2"}, approver
    )
    assert [c.deviceInfo.label for c in cards(web)] == ["Network adapter 1"]

    # Without hot-add the VM must be off: the ticket says so, and the worker
    # checks again before acting.
    app = find_vm(check, "dev-app-01")
    wait_task(app.PowerOffVM_Task())
    inventory_outdated(kinds_lab.pk)  # no sync follows vcsim here
    cold = carried_out(api, kinds_lab, requester, "vm_reconfigure", {"vm": "dev-app-01", "cpus": 2}, approver)
    assert app.config.hardware.numCPU == 2
    assert KINDS["vm_reconfigure"].summary(cold) == "dev-app-01: 1 → 2 CPUs (the VM must be off)"
    ticket = file_ticket(api(requester), kinds_lab, "vm_reconfigure", {"vm": "dev-app-01", "cpus": 3})
    wait_task(app.PowerOnVM_Task())  # switched on after filing
    assert api(approver).post(f"/api/tickets/{ticket['id']}/approve/", {}, format="json").status_code == 200
    failed = wait_for(ticket["id"], "failed", "succeeded")
    assert failed.state == "failed"
    assert "dev-app-01 is poweredOn and does not allow CPU hot-add: this change needs the VM off" in failed.error
    assert app.config.hardware.numCPU == 2


def test_vm_snapshot_create_revert_delete(api, kinds_lab, requester, approver, approver2, check):
    db = find_vm(check, "prod-db-01")
    first = carried_out(
        api,
        kinds_lab,
        requester,
        "vm_snapshot",
        {"vm": "prod-db-01", "action": "create", "snapshot": "before-patch", "memory": True},
        approver,
    )
    carried_out(
        api,
        kinds_lab,
        requester,
        "vm_snapshot",
        {"vm": "prod-db-01", "action": "create", "snapshot": "after-patch"},
        approver,
    )
    trees = {t.name: t for t in walk(db.snapshot.rootSnapshotList)}
    assert set(trees) == {"before-patch", "after-patch"}
    assert str(first.operation_uuid) in trees["before-patch"].description
    assert db.snapshot.currentSnapshot._moId == trees["after-patch"].snapshot._moId
    # A revert is approved as a reconfigure is: here by two.
    Policy.objects.filter(kind="vm_reconfigure", zone=None).update(required_approvals=2)
    revert = file_ticket(
        api(requester), kinds_lab, "vm_snapshot", {"vm": "prod-db-01", "action": "revert", "snapshot": "before-patch"}
    )
    assert revert["required_approvals"] == 2
    decide(api, revert, approver, approver2)
    assert db.snapshot.currentSnapshot._moId == trees["before-patch"].snapshot._moId
    carried_out(
        api,
        kinds_lab,
        requester,
        "vm_snapshot",
        {"vm": "prod-db-01", "action": "delete", "snapshot": "after-patch"},
        approver,
    )
    assert [t.name for t in walk(db.snapshot.rootSnapshotList)] == ["before-patch"]


def walk(trees):
    for tree in trees or ():
        yield tree
        yield from walk(tree.childSnapshotList)


def test_vm_decommission_destroys_the_vm_and_keeps_its_configuration(
    api, kinds_lab, requester, approver, approver2, check
):
    vm = find_vm(check, "dev-app-02")
    instance_uuid, host = vm.config.instanceUuid, vm.runtime.host.name
    ticket = file_ticket(api(requester), kinds_lab, "vm_decommission", {"vm": "dev-app-02"})
    assert ticket["required_approvals"] == 2
    assert InventoryObject.objects.filter(connector=kinds_lab, moid=vm._moId).exists()
    done = decide(api, ticket, approver, approver2)
    assert check.content.searchIndex.FindByUuid(None, instance_uuid, True, True) is None
    assert find_vm(check, "dev-app-02") is None
    # The worker took it out of the stored inventory too, without any sync.
    assert not InventoryObject.objects.filter(connector=kinds_lab, moid=vm._moId).exists()
    assert "shut down by its guest" in done.result["summary"]
    operation = AuditEntry.objects.get(ticket_id=ticket["id"], action="hypervisor.operation")
    last = operation.details["last_configuration"]
    assert (last["instance_uuid"], last["cpus"], last["memory_mb"], last["power_state"]) == (
        instance_uuid,
        1,
        2048,
        "poweredOn",
    )
    assert last["host"] == done.params["objects"]["host"]["id"] and done.params["objects"]["host"]["name"] == host
    assert [d["file"] for d in last["disks"]] == ["[ds-dev] dev-app-02/disk1.vmdk"]
    assert [n["label"] for n in last["networks"]] == ["Network adapter 1"]


def test_a_vm_already_gone_counts_as_decommissioned_and_its_namesake_is_left_alone(
    api, kinds_lab, requester, approver, approver2, check
):
    vm = clone_running(check, "scratch-01")
    ticket = file_ticket(api(requester), kinds_lab, "vm_decommission", {"vm": "scratch-01"})
    # Removed outside the portal meanwhile, and another VM of the same name made.
    wait_task(vm.PowerOffVM_Task())
    wait_task(vm.Destroy_Task())
    namesake = clone_running(check, "scratch-01")
    done = decide(api, ticket, approver, approver2)
    assert done.result["already_done"] is True
    assert not AuditEntry.objects.filter(ticket_id=ticket["id"], action="hypervisor.operation").exists()
    assert AuditEntry.objects.get(ticket_id=ticket["id"], action="ticket.succeeded").details["result"]["already_done"]
    assert find_vm(check, "scratch-01")._moId == namesake._moId
    assert namesake.runtime.powerState == "poweredOn"
    assert not recent_tasks(check, "destroy", namesake._moId)


def test_a_guest_that_ignores_the_shutdown_is_powered_off_after_the_timeout(module_vcsim, check, monkeypatch):
    # A guest that does not shut down cannot be made in this vcsim: its
    # ShutdownGuest powers the VM off at once. So the request is dropped on
    # the way (the guest "ignores" it); everything else is real.
    vm = clone_running(check, "stubborn-01")
    monkeypatch.setattr(vim.VirtualMachine, "ShutdownGuest", lambda self: None)
    result = VSphereConnector(module_vcsim.config).destroy_vm(
        vm_id=vm._moId, instance_uuid=vm.config.instanceUuid, shutdown_timeout_seconds=1
    )
    assert "the guest did not shut down within 1 s; powered off" in result.result
    assert len(recent_tasks(check, "powerOff", vm._moId)) == 1
    assert find_vm(check, "stubborn-01") is None

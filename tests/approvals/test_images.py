"""Images that stay vetted: a catalogue entry vouches for its template until
its expiry and only as the template was when vetted. Refused at submission
and at the worker's re-check; a template changed behind the portal's back
raises a finding. Real worker, vcsim, PostgreSQL, Redis; templates are
changed through a separate pyvmomi session."""

from datetime import timedelta

import pytest
from django.utils import timezone
from pyVim.task import WaitForTask
from pyVmomi import vim

from approvals.inventory import inventory_outdated
from approvals.models import CatalogueTemplate
from audit.models import AuditEntry, Finding, FindingKind
from tests.approvals.helpers import VM_CREATE, body, configure, file_ticket, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def one(si, vimtype, name):
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vimtype], True)
    try:
        [found] = [obj for obj in view.view if obj.name == name]
        return found
    finally:
        view.Destroy()


def vm_names(si):
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        return {vm.name for vm in view.view}
    finally:
        view.Destroy()


def add_disk(si, name):
    """Give the template a second disk behind the portal's back."""
    template = one(si, vim.VirtualMachine, name)
    host = one(si, vim.HostSystem, "dev-esx-01")
    template.MarkAsVirtualMachine(pool=host.parent.resourcePool, host=host)
    controller = next(d for d in template.config.hardware.device if isinstance(d, vim.vm.device.VirtualSCSIController))
    disk = vim.vm.device.VirtualDisk(
        controllerKey=controller.key,
        unitNumber=1,
        capacityInKB=1024,
        backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(diskMode="persistent", fileName=""),
    )
    change = vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create", device=disk)
    WaitForTask(template.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change])))
    template.MarkAsTemplate()


def approve(api, user, ticket):
    assert api(user).post(f"/api/tickets/{ticket['id']}/approve/", {}, format="json").status_code == 200


def test_an_expired_vetting_is_refused_at_submission_and_at_the_re_check(api, lab, vcsim, requester, approver, workers):
    entry = CatalogueTemplate.objects.get(connector=lab, name="tpl-debian12")
    entry.vetted_until = timezone.now() - timedelta(minutes=1)
    entry.save()
    refused = api(requester).post("/api/tickets/", body(lab, "vm_create", VM_CREATE), format="json")
    assert refused.status_code == 400
    assert "The vetting of tpl-debian12 expired on" in refused.json()["params"]["template"][0]

    entry.vetted_until = timezone.now() + timedelta(days=1)
    entry.save()
    ticket = file_ticket(api(requester), lab, "vm_create", VM_CREATE)
    entry.vetted_until = timezone.now() - timedelta(minutes=1)  # expires between approval and execution
    entry.save()
    workers(1)
    approve(api, approver, ticket)
    done = wait_for(ticket["id"], "succeeded", "failed")
    assert done.state == "failed"
    assert "The vetting of tpl-debian12 expired on" in done.error
    assert VM_CREATE["name"] not in vm_names(vcsim.connect())
    failed = AuditEntry.objects.get(ticket_id=ticket["id"], action="ticket.failed")
    assert "expired" in failed.details["error"]


def test_a_template_changed_after_vetting_is_refused_with_a_finding_and_a_re_vet_takes_it_afresh(
    api, own_lab, fresh_vcsim, requester, approver, portal_admin, portal_admin2, workers
):
    before = CatalogueTemplate.objects.get(connector=own_lab, name="tpl-debian12")
    ticket = file_ticket(api(requester), own_lab, "vm_create", VM_CREATE)
    check = fresh_vcsim.connect()
    add_disk(check, "tpl-debian12")
    workers(1)
    approve(api, approver, ticket)
    done = wait_for(ticket["id"], "succeeded", "failed")
    assert done.state == "failed"
    assert "tpl-debian12 changed after it was vetted" in done.error
    assert VM_CREATE["name"] not in vm_names(check)
    finding = Finding.objects.get(connector=own_lab, kind=FindingKind.TEMPLATE_CHANGED, acknowledged_at=None)
    assert finding.object_ref == f"template:{before.template_id}"
    assert finding.expected == before.fingerprint and len(finding.observed["disk_files"]) == 2
    assert AuditEntry.objects.filter(action="finding.raised", object_id=str(finding.pk)).exists()
    assert AuditEntry.objects.filter(action="catalogue.template_changed").exists()

    # A re-vet is a configuration request; the worker reads the template anew.
    revet = configure(api(portal_admin), api(portal_admin2), f"/api/templates/{before.pk}/revet/", {}, method="post")
    revet = wait_for(revet.pk, "succeeded", "failed")  # the running worker may have applied it
    assert revet.state == "succeeded", revet.error
    after = CatalogueTemplate.objects.get(pk=before.pk)
    assert after.vetted_by == portal_admin.get_username() and after.vetted_at > before.vetted_at
    assert after.fingerprint["disk_files"] == finding.observed["disk_files"]
    assert after.vetted_until > timezone.now()


def test_a_template_whose_guest_cannot_be_customized_is_refused_at_submission(
    api, own_lab, fresh_vcsim, requester, portal_admin, portal_admin2
):
    check = fresh_vcsim.connect()
    host = one(check, vim.HostSystem, "dev-esx-01")
    source = one(check, vim.VirtualMachine, "tpl-win2022")
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=host.parent.resourcePool, host=host), powerOn=False)
    WaitForTask(source.CloneVM_Task(folder=source.parent, name="tpl-freebsd", spec=spec))
    bsd = one(check, vim.VirtualMachine, "tpl-freebsd")
    WaitForTask(bsd.ReconfigVM_Task(spec=vim.vm.ConfigSpec(guestId="freebsd64Guest")))
    bsd.MarkAsTemplate()
    inventory_outdated(own_lab.pk)  # no sync follows vcsim here

    vetting = configure(
        api(portal_admin),
        api(portal_admin2),
        "/api/templates/",
        {"connector": own_lab.pk, "name": "tpl-freebsd"},
        method="post",
    )
    assert vetting.state == "succeeded", vetting.error
    entry = CatalogueTemplate.objects.get(connector=own_lab, name="tpl-freebsd")
    assert entry.fingerprint["guest_id"] == "freebsd64Guest" and entry.vetted_by == portal_admin.get_username()

    params = {**VM_CREATE, "template": "tpl-freebsd"}
    params.pop("network")
    refused = api(requester).post("/api/tickets/", body(own_lab, "vm_create", params), format="json")
    assert refused.status_code == 400
    words = refused.json()["params"]["template"][0]
    assert "tpl-freebsd runs a guest (freebsd64Guest) that the hypervisor cannot customize" in words
    assert not own_lab.tickets.filter(kind="vm_create").exists()

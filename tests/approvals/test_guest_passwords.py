"""No default passwords on new VMs: vm_create customizes every clone with
its host name and a fresh administrator password, which the requester sees
once on the ticket page and nobody sees anywhere else. Real worker, vcsim,
PostgreSQL, Redis."""

import json
import re

import pytest
from django.test import Client
from pyVim.task import WaitForTask
from pyVmomi import vim

from approvals.models import GuestPassword
from audit.models import AuditEntry
from connectors.base import LINUX, WINDOWS, GuestCustomization
from connectors.vsphere_customization import customization_spec
from tests.approvals.helpers import VM_CREATE, file_ticket, wait_for
from tests.fixtures.vcsim import find_vm

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SECRET = re.compile(r'<code class="secret">([^<]+)</code>')


def page_client(user):
    client = Client()
    client.force_login(user)
    return client


def test_new_vm_is_customized_and_its_password_is_shown_once_to_the_requester_only(
    api, own_lab, fresh_vcsim, requester, approver, workers
):
    [worker] = workers(1)
    ticket = file_ticket(api(requester), own_lab, "vm_create", VM_CREATE)
    assert api(approver).post(f"/api/tickets/{ticket['id']}/approve/", {}, format="json").status_code == 200
    done = wait_for(ticket["id"], "succeeded", "failed")
    assert done.state == "succeeded", done.error

    # Read back through a separate session. vcsim (govmomi 0.24) ignores a
    # CloneSpec's customization, so the worker gives it again with
    # CustomizeVM_Task, which vcsim keeps pending (as vCenter keeps an inline
    # one) and applies at first power-on: the guest then reports the host
    # name. No API shows a customization's password, on vCenter or vcsim.
    check = fresh_vcsim.connect()
    vm = find_vm(check, VM_CREATE["name"])
    assert vm.config.tools.pendingCustomization
    WaitForTask(vm.PowerOnVM_Task())
    assert vm.guest.hostName == VM_CREATE["name"]

    stored = GuestPassword.objects.get(ticket_id=ticket["id"])
    assert stored.sealed and stored.revealed_at is None

    # Nobody but the requester may see it.
    other = page_client(approver).post(f"/tickets/{ticket['id']}/guest-password/", follow=True)
    assert other.status_code == 404 or "Only the requester" in other.content.decode()
    assert GuestPassword.objects.get(pk=stored.pk).sealed

    requester_page = page_client(requester)
    before = requester_page.get(f"/tickets/{ticket['id']}/").content.decode()
    assert "Show the password once" in before
    shown = requester_page.post(f"/tickets/{ticket['id']}/guest-password/")
    assert shown.status_code == 200 and shown["Cache-Control"] == "no-store"
    [password] = SECRET.findall(shown.content.decode())
    assert len(password) == 20 and stored.sealed.find(password) == -1

    # Gone: the stored copy is destroyed and a second reveal says so.
    gone = GuestPassword.objects.get(pk=stored.pk)
    assert gone.sealed == "" and gone.revealed_by == requester
    again = requester_page.post(f"/tickets/{ticket['id']}/guest-password/", follow=True).content.decode()
    assert "is gone; it cannot be shown again" in again and password not in again
    reveals = AuditEntry.objects.filter(ticket_id=ticket["id"], action="guest_password.revealed")
    assert [e.actor_name or e.actor.get_username() for e in reveals] == [requester.get_username()]

    # Nowhere else: API answers, pages, the worker's log and the mail it sent, the audit log.
    requester_api, approver_api = api(requester), api(approver)
    answers = [
        requester_api.get(f"/api/tickets/{ticket['id']}/").content,
        requester_api.get("/api/tickets/").content,
        approver_api.get(f"/api/tickets/{ticket['id']}/").content,
        api(approver).get(f"/api/audit/?ticket={ticket['id']}").content,
        before.encode(),
        requester_page.get(f"/tickets/{ticket['id']}/").content,
        page_client(approver).get(f"/tickets/{ticket['id']}/").content,
    ]
    for answer in answers:
        assert password.encode() not in answer
    output = worker.output()
    assert f"Subject: {done.ref} is done" in output  # the notification went out (console mail backend)
    assert password not in output
    entries = AuditEntry.objects.all()
    assert entries.filter(ticket_id=ticket["id"], action="guest_password.issued").count() == 1
    assert all(password not in json.dumps(e.details) for e in entries)


def test_the_guest_family_chooses_sysprep_or_linux_prep():
    nics = 2
    windows = customization_spec(GuestCustomization(WINDOWS, "web01", "Pass-word1"), nics, "vim.version.v7_0")
    assert isinstance(windows.identity, vim.vm.customization.Sysprep)
    assert windows.identity.userData.computerName.name == "web01"
    assert windows.identity.guiUnattended.password.value == "Pass-word1"
    linux = customization_spec(GuestCustomization(LINUX, "web01", "Pass-word1"), nics, "vim.version.v7_0")
    assert isinstance(linux.identity, vim.vm.customization.LinuxPrep)
    assert linux.identity.hostName.name == "web01"
    assert "'root:Pass-word1' | chpasswd" in linux.identity.scriptText
    assert len(linux.nicSettingMap) == nics
    newer = customization_spec(GuestCustomization(LINUX, "web01", "Pass-word1"), 0, "vim.version.v9_1_0_0")
    assert newer.identity.password.value == "Pass-word1" and not newer.identity.scriptText
    assert "Pass-word1" not in repr(GuestCustomization(LINUX, "web01", "Pass-word1"))

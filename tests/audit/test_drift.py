"""Drift detection against a vcsim lab of the test's own: changes made around
the portal, directly through pyvmomi, become findings, exactly once; what
tickets did does not."""

import time

import pytest
from django.core.management import CommandError, call_command
from pyVmomi import vim

from approvals.models import Ticket
from approvals.services import access_revoke
from approvals.services.execution import access_expire, ticket_execute
from audit import drift, tasks
from audit.models import AuditEntry, DriftBaseline, Finding
from audit.verify import verify_chain
from portal.celery import app
from tests.approvals.helpers import ADMIN_ACCESS, VM_CREATE, file_ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def si(fresh_vcsim):
    """A raw pyvmomi session on the test's own lab: the way around the portal."""
    return fresh_vcsim.connect()


def find(si, vimtype, name):
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vimtype], True)
    try:
        return next(obj for obj in view.view if obj.name == name)
    finally:
        view.Destroy()


def wait(task):
    while task.info.state not in (vim.TaskInfo.State.success, vim.TaskInfo.State.error):
        time.sleep(0.05)
    assert task.info.state == vim.TaskInfo.State.success, task.info.error
    return task.info.result


def clone_by_hand(si, template, name, host="dev-esx-01"):
    tpl = find(si, vim.VirtualMachine, template)
    target = find(si, vim.HostSystem, host)
    location = vim.vm.RelocateSpec(host=target, pool=target.parent.resourcePool)
    spec = vim.vm.CloneSpec(location=location, powerOn=False, template=False)
    return wait(tpl.CloneVM_Task(folder=tpl.parent, name=name, spec=spec))


def move_by_hand(si, vm_name, host_name):
    host = find(si, vim.HostSystem, host_name)
    vm = find(si, vim.VirtualMachine, vm_name)
    wait(vm.RelocateVM_Task(spec=vim.vm.RelocateSpec(host=host, pool=host.parent.resourcePool)))


def grant_by_hand(si, entity_name, principal, role):
    content = si.RetrieveContent()
    am = content.authorizationManager
    entity = find(si, vim.ManagedEntity, entity_name)
    role_id = next(r.roleId for r in am.roleList if r.name == role)
    kept = [p for p in am.RetrieveEntityPermissions(entity=entity, inherited=False) if p.principal != principal]
    new = vim.AuthorizationManager.Permission(
        entity=entity, principal=principal, group=False, roleId=role_id, propagate=True
    )
    am.SetEntityPermissions(entity=entity, permission=[*kept, new])


def carry_out(api, lab, requester, approvers, kind, params):
    """File, approve and execute a ticket (the worker's code, run inline)."""
    ticket = file_ticket(api(requester), lab, kind, params)
    for user in approvers:
        assert api(user).post(f"/api/tickets/{ticket['id']}/approve/", {}, format="json").status_code == 200
    assert ticket_execute(ticket_id=ticket["id"], worker="test-worker") == "succeeded"
    return Ticket.objects.get(pk=ticket["id"])


def found(connector):
    return sorted((f.kind, f.object_ref) for f in Finding.objects.filter(connector=connector))


def moid(si, vimtype, name):
    return find(si, vimtype, name)._moId


def vm_ref(si, name):
    return f"vm:{find(si, vim.VirtualMachine, name).config.instanceUuid.lower()}"


def test_registration_takes_the_baseline(own_lab, si):
    baseline = DriftBaseline.objects.get(connector=own_lab)
    assert {vm["name"] for vm in baseline.vms} == {
        "prod-web-01",
        "prod-db-01",
        "dev-app-01",
        "dev-app-02",
        "dmz-proxy-01",
        "tpl-debian12",
        "tpl-rhel9",
        "tpl-win2022",
    }
    prod_db = next(vm for vm in baseline.vms if vm["name"] == "prod-db-01")
    assert prod_db["id"] == moid(si, vim.VirtualMachine, "prod-db-01")
    assert prod_db["host"] == moid(si, vim.HostSystem, "prod-esx-02")
    assert {p["principal"] for p in baseline.permissions} >= {"admin", "root"}  # vcsim's own
    own_lab.refresh_from_db()
    assert own_lab.baseline_taken_at == baseline.taken_at
    assert AuditEntry.objects.filter(action="drift.baseline_taken", object_id=str(own_lab.pk)).count() == 1
    # An untouched lab holds no drift.
    report = drift.detect_drift(connector=own_lab)
    assert (report.present, report.raised) == (0, ())


def test_each_kind_of_drift_is_found_once_and_tickets_explain_theirs(api, own_lab, si, requester, approver, approver2):
    # What tickets do is explained...
    created = carry_out(api, own_lab, requester, [approver], "vm_create", VM_CREATE)
    carry_out(api, own_lab, requester, [approver], "vm_migrate", {"vm": "dev-app-01", "target_host": "dev-esx-02"})
    carry_out(api, own_lab, requester, [approver, approver2], "admin_access", ADMIN_ACCESS)
    ended = carry_out(
        api,
        own_lab,
        requester,
        [approver, approver2],
        "admin_access",
        {**ADMIN_ACCESS, "principal": "LAB\\dave", "entity": "dev-app-02"},
    )
    access_revoke(ticket_id=ended.pk, user=approver)
    assert access_expire(ticket_id=ended.pk, actor_name="test-worker") == "revoked"

    # ...what is done around the portal is not.
    clone_by_hand(si, "tpl-rhel9", "rogue-01")
    move_by_hand(si, "prod-db-01", "prod-esx-01")
    grant_by_hand(si, "dmz-proxy-01", "LAB\\mallory", "ReadOnly")
    grant_by_hand(si, "dev-app-02", "LAB\\dave", "Admin")

    report = drift.detect_drift(connector=own_lab)
    dmz_proxy = find(si, vim.VirtualMachine, "dmz-proxy-01")._moId
    dev_app_02 = find(si, vim.VirtualMachine, "dev-app-02")._moId
    expected = sorted(
        [
            ("vm_unexplained", vm_ref(si, "rogue-01")),
            ("vm_moved", vm_ref(si, "prod-db-01")),
            ("permission_unexplained", f"permission:{dmz_proxy}:user:lab\\mallory"),
            ("access_after_end", f"permission:{dev_app_02}:user:lab\\dave"),
        ]
    )
    assert found(own_lab) == expected
    assert (report.present, len(report.raised)) == (4, 4)
    assert created.state == "succeeded"

    moved = Finding.objects.get(kind="vm_moved")
    assert (moved.observed["host"], moved.observed["host_name"]) == (
        moid(si, vim.HostSystem, "prod-esx-01"),
        "prod-esx-01",
    )
    assert moved.expected == {"hosts": [moid(si, vim.HostSystem, "prod-esx-02")], "according_to": "baseline"}
    unexplained = Finding.objects.get(kind="permission_unexplained")
    assert (unexplained.observed["entity_id"], unexplained.observed["entity"]) == (dmz_proxy, "dmz-proxy-01")
    after_end = Finding.objects.get(kind="access_after_end")
    assert after_end.observed["ticket"] == ended.ref and after_end.expected["ticket_state"] == "revoked"
    raised = AuditEntry.objects.filter(action="finding.raised")
    assert raised.count() == 4
    assert raised.get(object_id=str(after_end.pk)).ticket_id == ended.pk

    # Again: the same findings, seen later, not raised twice.
    first_seen = {f.pk: (f.first_seen, f.last_seen) for f in Finding.objects.all()}
    again = drift.detect_drift(connector=own_lab)
    assert (again.present, again.raised) == (4, ())
    assert found(own_lab) == expected
    for finding in Finding.objects.all():
        assert finding.first_seen == first_seen[finding.pk][0] and finding.last_seen > first_seen[finding.pk][1]
    assert AuditEntry.objects.filter(action="finding.raised").count() == 4
    assert verify_chain().ok


def test_a_vm_moved_off_its_tickets_host_is_found(api, own_lab, si, requester, approver):
    carry_out(api, own_lab, requester, [approver], "vm_migrate", {"vm": "dev-app-01", "target_host": "dev-esx-02"})
    move_by_hand(si, "dev-app-01", "dev-esx-01")
    drift.detect_drift(connector=own_lab)
    moved = Finding.objects.get()
    assert (moved.kind, moved.object_ref) == ("vm_moved", vm_ref(si, "dev-app-01"))
    assert moved.expected["hosts"] == [moid(si, vim.HostSystem, "dev-esx-02")]
    assert moved.expected["according_to"].startswith("CHG-")
    assert moved.observed["host_name"] == "dev-esx-01"


def test_an_acknowledged_finding_is_not_raised_again_unless_it_changes(api, own_lab, si, approver):
    move_by_hand(si, "prod-db-01", "prod-esx-01")
    drift.detect_drift(connector=own_lab)
    finding = Finding.objects.get()
    response = api(approver).post(f"/api/findings/{finding.pk}/acknowledge/", {"comment": "maintenance"}, format="json")
    assert response.status_code == 200
    assert drift.detect_drift(connector=own_lab).raised == ()
    move_by_hand(si, "prod-db-01", "dev-esx-01")
    [new] = drift.detect_drift(connector=own_lab).raised
    assert (new.kind, new.observed["host"], new.observed["host_name"], new.is_open) == (
        "vm_moved",
        moid(si, vim.HostSystem, "dev-esx-01"),
        "dev-esx-01",
        True,
    )
    assert Finding.objects.count() == 2


def test_command_and_beat_task(own_lab, si, capsys):
    clone_by_hand(si, "tpl-debian12", "rogue-02")
    assert settings_schedule()["task"] == "audit.tasks.detect_drift"
    app.loader.import_default_modules()
    assert "audit.tasks.detect_drift" in app.tasks
    summary = tasks.detect_drift()
    assert summary == [{"connector": own_lab.name, "raised": 1, "present": 1, "error": ""}]
    call_command("detect_drift", "--connector", own_lab.name)
    assert "1 differences, 0 new findings" in capsys.readouterr().out
    assert Finding.objects.count() == 1


def settings_schedule():
    from django.conf import settings

    return settings.CELERY_BEAT_SCHEDULE["detect-drift"]


def test_an_unreachable_connector_is_reported_and_the_rest_checked(own_lab, fresh_vcsim, vcsim, capsys):
    from tests.conftest import register_lab

    other = register_lab(vcsim, name="shared")
    fresh_vcsim.stop()
    reports = {r.connector: r for r in drift.detect_drift_everywhere()}
    assert reports[own_lab.name].error and not reports[other.name].error
    with pytest.raises(CommandError) as failure:
        call_command("detect_drift")
    assert failure.value.returncode == 2
    assert f"{own_lab.name}: not checked" in capsys.readouterr().err
    assert not Finding.objects.filter(connector=own_lab).exists()


def test_a_connector_without_a_baseline_gets_one_first(own_lab, si):
    DriftBaseline.objects.filter(connector=own_lab).delete()
    clone_by_hand(si, "tpl-debian12", "before-baseline")
    report = drift.detect_drift(connector=own_lab)
    assert report.baseline_taken and report.raised == ()
    assert "before-baseline" in {vm["name"] for vm in DriftBaseline.objects.get(connector=own_lab).vms}
    assert drift.detect_drift(connector=own_lab).present == 0

"""Standard changes: a ticket that fits its policy's standard scope (set by a
configuration request) is approved at submission by the policy and carried
out by a real worker; one just outside needs approvals; a policy made
standard by writing the database is refused by the worker. vcsim is read
back through a separate pyvmomi session."""

import pytest
from django.db import connection
from pyVmomi import vim

from approvals.models import Policy, Ticket
from audit.models import AuditEntry, Finding, FindingKind
from tests.approvals.helpers import VM_CREATE, configure, file_ticket, migrate_within_zone, wait_for


def vm_host_name(si, name):
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        return next(vm.runtime.host.name for vm in view.view if vm.name == name)
    finally:
        view.Destroy()


def migrate_policy():
    return Policy.objects.get(kind="vm_migrate", zone=None)


def make_standard(api, portal_admin, portal_admin2, policy, scope):
    done = configure(api(portal_admin), api(portal_admin2), f"/api/policies/{policy.pk}/", {"standard_scope": scope})
    assert done.state == "succeeded", done.error
    policy.refresh_from_db()
    return policy


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_standard_change_is_approved_at_submission_and_executed(
    api, own_lab, requester, portal_admin, portal_admin2, workers, fresh_vcsim
):
    policy = make_standard(api, portal_admin, portal_admin2, migrate_policy(), {"zone": "dev"})
    workers(1)
    params = migrate_within_zone(api(requester), own_lab)
    ticket = file_ticket(api(requester), own_lab, "vm_migrate", params)
    assert ticket["state"] == "approved" and ticket["is_standard"] is True
    assert ticket["approvals"] == []
    assert "Fits the standard change" in ticket["standard"]["reasons"][0]
    approved = AuditEntry.objects.get(ticket_id=ticket["id"], action="ticket.approved")
    assert approved.actor_name == f"policy #{policy.pk}"
    assert approved.details["policy_id"] == policy.pk and approved.details["policy_digest"] == policy.digest()
    done = wait_for(ticket["id"], "succeeded", "failed")
    assert done.state == "succeeded", done.error
    assert vm_host_name(fresh_vcsim.connect(), "dev-app-01") == params["target_host"]
    page = api(requester).get(f"/api/tickets/{ticket['id']}/").json()
    assert page["standard"]["standard"] is True


def test_a_ticket_just_outside_the_scope_needs_approvals(api, lab, requester, portal_admin, portal_admin2):
    make_standard(api, portal_admin, portal_admin2, migrate_policy(), {"zone": "dev"})
    # prod-web-01 moves within prod: the same kind of move, but not in dev.
    ticket = file_ticket(api(requester), lab, "vm_migrate", migrate_within_zone(api(requester), lab, "prod-web-01"))
    assert ticket["state"] == "pending" and ticket["is_standard"] is False
    assert any("not dev" in reason for reason in ticket["standard"]["reasons"])


def test_vm_create_scope_judges_template_zone_and_size(api, lab, requester, portal_admin, portal_admin2):
    policy = Policy.objects.get(kind="vm_create", zone=None)
    scope = {"zone": "dev", "template": "tpl-debian12", "max_cpus": 2, "max_memory_mb": 4096}
    make_standard(api, portal_admin, portal_admin2, policy, scope)
    dev = {**VM_CREATE, "host": "dev-esx-01", "datastore": "ds-dev", "network": "pg-dev"}
    fits = file_ticket(api(requester), lab, "vm_create", {**dev, "name": "std-ok"})
    assert fits["state"] == "approved" and fits["is_standard"] is True
    big = file_ticket(api(requester), lab, "vm_create", {**dev, "name": "std-big", "cpus": 3})
    assert big["state"] == "pending"
    assert any("3 CPUs is more than 2" in r for r in big["standard"]["reasons"])


def test_scope_fields_are_the_kinds_own_and_checked(api, lab, portal_admin):
    policy = Policy.objects.get(kind="admin_access", zone=None)
    for scope, words in [
        ({"role": "Admin", "max_minutes": 30}, "does not grant 'Admin'"),
        ({"role": "ReadOnly"}, "max_minutes"),
        ({"role": "ReadOnly", "max_minutes": 30, "cpus": 2}, "Not a field"),
    ]:
        response = api(portal_admin).patch(
            f"/api/policies/{policy.pk}/", {"standard_scope": scope, "justification": "j"}, format="json"
        )
        assert response.status_code == 400 and words in str(response.json()), response.content
    assert not Ticket.objects.filter(kind="config_change").exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_policy_made_standard_in_the_database_is_refused_by_the_worker(api, own_lab, requester, workers, fresh_vcsim):
    before = vm_host_name(fresh_vcsim.connect(), "dev-app-01")
    with connection.cursor() as cursor:  # a DBA, alone, without any configuration request
        cursor.execute(
            "UPDATE approvals_policy SET standard_scope = %s WHERE kind = 'vm_migrate' AND zone_id IS NULL",
            ['{"zone": "dev"}'],
        )
    workers(1)
    ticket = file_ticket(api(requester), own_lab, "vm_migrate", migrate_within_zone(api(requester), own_lab))
    assert ticket["state"] == "approved"  # the web trusts the row it reads ...
    done = wait_for(ticket["id"], "succeeded", "failed")
    assert done.state == "failed"  # ... the worker does not
    assert "Refused as a standard change" in done.error and "never set by an approved configuration" in done.error
    assert vm_host_name(fresh_vcsim.connect(), "dev-app-01") == before
    refused = AuditEntry.objects.get(ticket_id=ticket["id"], action="ticket.records_unverified")
    assert "standard change refused" in refused.details["problem"]
    assert Finding.objects.filter(kind=FindingKind.RECORDS_UNVERIFIED, object_ref=f"ticket:{ticket['id']}:records")
    assert not AuditEntry.objects.filter(ticket_id=ticket["id"], action="hypervisor.operation").exists()


def test_the_policy_page_files_a_standard_scope_as_a_request(client, lab, portal_admin):
    policy = Policy.objects.get(kind="admin_access", zone=None)
    client.force_login(portal_admin)
    fields = {
        "required_approvals": policy.required_approvals,
        "approver_group": "approver",
        "pending_ttl_minutes": policy.pending_ttl_minutes,
        "max_duration_minutes": policy.max_duration_minutes,
        "max_cpus": policy.max_cpus,
        "max_memory_mb": policy.max_memory_mb,
        "grantable_roles": ", ".join(policy.grantable_roles),
        "allowed_zone_pairs": "[]",
        "justification": "read-only access is routine",
    }
    bad = client.post(f"/config/policy/{policy.pk}/update/", {**fields, "standard_scope": '{"role": "ReadOnly"}'})
    assert bad.status_code == 400 and "max_minutes" in bad.content.decode()
    response = client.post(
        f"/config/policy/{policy.pk}/update/", {**fields, "standard_scope": '{"role": "ReadOnly", "max_minutes": 30}'}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    ticket = Ticket.objects.get(kind="config_change")
    assert ticket.params["after"]["standard_scope"] == {"role": "ReadOnly", "max_minutes": 30}
    assert Policy.objects.get(pk=policy.pk).standard_scope == {}  # nothing changes until approved

"""Standard changes: a ticket that fits its policy's standard scope (set by a
configuration request) is approved at submission by the policy and carried
out by a real worker; one just outside needs approvals; a policy made
standard by writing the database is refused by the worker. vcsim is read
back through a separate pyvmomi session."""

import time

import pytest
from django.db import connection

from approvals.models import Policy, Ticket
from audit.models import AuditEntry, Finding, FindingKind
from tests.approvals.helpers import VM_CREATE, configure, file_ticket, migrate_within_zone, wait_for
from tests.fixtures.vcsim import find_vm, host_of


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
    assert host_of(fresh_vcsim.connect(), "dev-app-01") == params["target_host"]
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
    before = host_of(fresh_vcsim.connect(), "dev-app-01")
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
    assert host_of(fresh_vcsim.connect(), "dev-app-01") == before
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


def power_off(si, name):
    """Setup outside the portal, as an operator would have left the VM."""
    task = find_vm(si, name).PowerOffVM_Task()
    while task.info.state not in ("success", "error"):
        time.sleep(0.05)
    assert task.info.state == "success", task.info.error


def kind_policy(kind):
    return Policy.objects.get(kind=kind, zone=None)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_vm_power_on_in_dev_is_approved_at_submission_and_executed(
    api, own_lab, requester, portal_admin, portal_admin2, workers, fresh_vcsim
):
    si = fresh_vcsim.connect()
    power_off(si, "dev-app-01")
    policy = make_standard(
        api, portal_admin, portal_admin2, kind_policy("vm_power"), {"actions": ["on"], "zones": ["dev"]}
    )
    assert policy.standard_scope == {"actions": ["on"], "zones": ["dev"]}
    workers(1)
    ticket = file_ticket(api(requester), own_lab, "vm_power", {"vm": "dev-app-01", "action": "on"})
    assert ticket["state"] == "approved" and ticket["is_standard"] is True and ticket["approvals"] == []
    assert ticket["standard"]["reasons"] == [
        "Fits the standard change of the vm_power policy (any zone): actions on, zones dev."
    ]
    approved = AuditEntry.objects.get(ticket_id=ticket["id"], action="ticket.approved")
    assert approved.actor_name == f"policy #{policy.pk}" and approved.details["policy_digest"] == policy.digest()
    done = wait_for(ticket["id"], "succeeded", "failed")
    assert done.state == "succeeded", done.error
    check = fresh_vcsim.connect()  # a session of its own, not the worker's
    assert find_vm(check, "dev-app-01").runtime.powerState == "poweredOn"
    # Just outside: another action on the same VM needs an approver.
    outside = file_ticket(api(requester), own_lab, "vm_power", {"vm": "dev-app-01", "action": "off"})
    assert outside["state"] == "pending" and outside["is_standard"] is False
    assert "power off (hard); only power on is standard" in outside["standard"]["reasons"][0]
    page = api(requester).get(f"/api/tickets/{outside['id']}/").json()
    assert page["standard"] == outside["standard"]


def test_vm_power_outside_its_zones_needs_approvals(api, lab, requester, portal_admin, portal_admin2):
    scope = {"actions": ["reset", "on"], "zones": ["dev"]}
    make_standard(api, portal_admin, portal_admin2, kind_policy("vm_power"), scope)
    ticket = file_ticket(api(requester), lab, "vm_power", {"vm": "prod-web-01", "action": "reset"})
    assert ticket["state"] == "pending" and ticket["is_standard"] is False
    assert ticket["standard"]["reasons"] == [
        "Outside the standard change of the vm_power policy (actions on or reset, zones dev): "
        "its VM is in zone prod, not dev."
    ]


def test_vm_snapshot_scope_takes_snapshots_only_and_without_memory(api, lab, requester, portal_admin, portal_admin2):
    make_standard(api, portal_admin, portal_admin2, kind_policy("vm_snapshot"), {"zones": ["dev"]})
    fits = file_ticket(api(requester), lab, "vm_snapshot", {"vm": "dev-app-01", "action": "create", "snapshot": "s1"})
    assert fits["state"] == "approved" and fits["is_standard"] is True
    with_memory = {"vm": "dev-app-01", "action": "create", "snapshot": "s2", "memory": True}
    memory = file_ticket(api(requester), lab, "vm_snapshot", with_memory)
    assert memory["state"] == "pending"
    assert "only snapshots without memory are standard" in memory["standard"]["reasons"][0]
    prod = file_ticket(api(requester), lab, "vm_snapshot", {"vm": "prod-web-01", "action": "create", "snapshot": "s3"})
    assert prod["state"] == "pending" and "its VM is in zone prod, not dev" in prod["standard"]["reasons"][0]


def test_a_snapshot_revert_is_never_standard_even_under_a_standard_reconfigure_policy(
    api, own_lab, requester, portal_admin, portal_admin2, fresh_vcsim
):
    si = fresh_vcsim.connect()
    task = find_vm(si, "dev-app-01").CreateSnapshot_Task(name="before", memory=False, quiesce=False)
    while task.info.state not in ("success", "error"):
        time.sleep(0.05)
    scope = {"zone": "dev", "max_cpus": 2, "max_memory_mb": 4096}
    make_standard(api, portal_admin, portal_admin2, kind_policy("vm_reconfigure"), scope)
    revert = file_ticket(
        api(requester), own_lab, "vm_snapshot", {"vm": "dev-app-01", "action": "revert", "snapshot": "before"}
    )
    assert revert["state"] == "pending" and revert["is_standard"] is False
    assert "standard change is for vm_reconfigure tickets only" in revert["standard"]["reasons"][0]


def test_vm_reconfigure_scope_judges_zone_size_and_cards(
    api, own_lab, requester, portal_admin, portal_admin2, fresh_vcsim
):
    power_off(fresh_vcsim.connect(), "dev-app-01")  # so that no change needs hot-add
    scope = {"zone": "dev", "max_cpus": 2, "max_memory_mb": 4096}
    make_standard(api, portal_admin, portal_admin2, kind_policy("vm_reconfigure"), scope)
    fits = file_ticket(api(requester), own_lab, "vm_reconfigure", {"vm": "dev-app-01", "cpus": 2, "memory_mb": 4096})
    assert fits["state"] == "approved" and fits["is_standard"] is True
    big = file_ticket(api(requester), own_lab, "vm_reconfigure", {"vm": "dev-app-01", "memory_mb": 4224})
    assert big["state"] == "pending"
    assert "4224 MB of memory is more than 4096 MB" in big["standard"]["reasons"][0]
    card = file_ticket(api(requester), own_lab, "vm_reconfigure", {"vm": "dev-app-01", "add_network": "pg-dev"})
    assert card["state"] == "pending" and "adds or removes a network card" in card["standard"]["reasons"][0]


@pytest.mark.parametrize(
    ("kind", "scope", "words"),
    [
        ("vm_power", {"actions": ["on", "fly"], "zones": ["dev"]}, 'actions: item 2: "fly" is not a valid choice.'),
        ("vm_power", {"actions": ["on"], "zones": ["nowhere", "dev"]}, "Unknown zones: nowhere."),
        ("vm_power", {"actions": ["on"]}, "zones: This field is required."),
        ("vm_snapshot", {"zones": []}, "zones"),
        ("vm_snapshot", {"zones": ["dev"], "action": "delete"}, "Not a field"),
        ("vm_reconfigure", {"zone": "dev", "max_cpus": 9, "max_memory_mb": 4096}, "max_cpus is above"),
        ("vm_decommission", {"zone": "dev"}, "vm_decommission has no standard changes."),
    ],
)
def test_a_bad_standard_scope_is_refused_with_field_errors(api, lab, portal_admin, kind, scope, words):
    policy = kind_policy(kind)
    response = api(portal_admin).patch(
        f"/api/policies/{policy.pk}/", {"standard_scope": scope, "justification": "j"}, format="json"
    )
    assert response.status_code == 400, response.content
    assert words in " ".join(response.json()["standard_scope"]), response.json()
    assert not Ticket.objects.filter(kind="config_change").exists()
    assert Policy.objects.get(pk=policy.pk).standard_scope == {}

"""Submission checks of the kinds that act on an existing VM (decommission,
reconfigure, power, snapshot): a field error in words, nothing stored and
nothing sent to the hypervisor (read back through a separate session). The
pages show the same refusals next to their fields."""

import pytest
from pyVmomi import vim

from approvals.models import Policy, Ticket
from audit.models import AuditEntry
from tests.approvals.helpers import body, file_ticket

pytestmark = pytest.mark.django_db


def refused(client, lab, kind, params):
    response = client.post("/api/tickets/", body(lab, kind, params), format="json")
    assert response.status_code == 400, response.content
    assert Ticket.objects.count() == 0
    assert not AuditEntry.objects.filter(action="ticket.submitted").exists()
    return response.json()["params"]


def hardware(check, name):
    content = check.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        vm = next(vm for vm in view.view if vm.name == name)
        return (
            vm.config.hardware.numCPU,
            vm.config.hardware.memoryMB,
            len([d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]),
            vm.runtime.powerState,
        )
    finally:
        view.Destroy()


@pytest.mark.parametrize("kind", ["vm_decommission", "vm_power", "vm_reconfigure", "vm_snapshot"])
def test_a_template_of_the_catalogue_is_refused_by_every_vm_kind(api, lab, requester, kind, vsphere_check):
    params = {
        "vm_decommission": {},
        "vm_power": {"action": "on"},
        "vm_reconfigure": {"cpus": 2},
        "vm_snapshot": {"action": "create", "snapshot": "s1"},
    }[kind]
    errors = refused(api(requester), lab, kind, {"vm": "tpl-debian12", **params})
    assert "tpl-debian12" in errors["vm"][0]
    assert "is a template of the approved catalogue, not a VM" in errors["vm"][0]
    content = vsphere_check.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    assert "tpl-debian12" in [vm.name for vm in view.view if vm.config.template]
    view.Destroy()


def test_a_template_outside_the_catalogue_is_refused_too(api, lab, requester):
    from approvals.models import CatalogueTemplate

    CatalogueTemplate.objects.filter(connector=lab, name="tpl-rhel9").delete()
    errors = refused(api(requester), lab, "vm_decommission", {"vm": "tpl-rhel9"})
    [words] = errors["vm"]
    assert words.startswith("tpl-rhel9 (vm-")
    assert words.endswith(") is a template, not a VM; templates are not decommissioned by ticket.")


@pytest.mark.parametrize(
    "change,field,words",
    [
        ({"cpus": 9}, "cpus", "At most 8 CPUs by policy."),
        ({"memory_mb": 65536}, "memory_mb", "At most 32768 MB by policy."),
        ({"add_network": "pg-dev"}, "add_network", "is in zone dev, but prod-web-01 is in zone prod."),
        ({"add_network": "pg-none"}, "add_network", "No network named 'pg-none'."),
        ({"remove_nic": "Network adapter 7"}, "remove_nic", "prod-web-01 has no card 'Network adapter 7'"),
        # prod-web-01 runs and allows no hot-add: more CPUs or memory need it off.
        ({"cpus": 4}, "cpus", "prod-web-01 is poweredOn and does not allow CPU hot-add: this change needs the VM off"),
        ({"memory_mb": 8192}, "memory_mb", "does not allow memory hot-add: this change needs the VM off"),
        ({"memory_mb": 2048}, "memory_mb", "cannot give memory back while it runs"),
        ({"cpus": 2}, "cpus", "prod-web-01 already has 2 CPUs and 4096 MB."),
        ({}, "cpus", "Give CPUs, memory, a network to add or a card to remove."),
    ],
)
def test_reconfigure_refusals(api, lab, requester, vsphere_check, change, field, words):
    errors = refused(api(requester), lab, "vm_reconfigure", {"vm": "prod-web-01", **change})
    assert words in " ".join(errors[field]), errors
    assert hardware(vsphere_check, "prod-web-01") == (2, 4096, 1, "poweredOn")


def test_a_new_card_over_the_policys_card_limit_is_refused(api, lab, requester):
    Policy.objects.filter(kind="vm_reconfigure", zone=None).update(max_nics=1)
    errors = refused(api(requester), lab, "vm_reconfigure", {"vm": "prod-web-01", "add_network": "pg-prod"})
    assert errors["add_network"] == ["prod-web-01 would have 2 network cards; at most 1 by policy."]


@pytest.mark.parametrize(
    "params,field,words",
    [
        (
            {"action": "revert", "snapshot": "nope"},
            "snapshot",
            "prod-db-01 has no snapshot named 'nope'; it has: none.",
        ),
        ({"action": "delete", "snapshot": "nope"}, "snapshot", "has no snapshot named 'nope'"),
        ({"action": "undo", "snapshot": "x"}, "action", "not a valid choice"),
    ],
)
def test_snapshot_refusals(api, lab, requester, params, field, words):
    errors = refused(api(requester), lab, "vm_snapshot", {"vm": "prod-db-01", **params})
    assert words in " ".join(errors[field]), errors


@pytest.mark.parametrize(
    "params,words",
    [
        ({"action": "on"}, "prod-web-01 is already poweredOn."),
        ({"action": "suspend"}, "not a valid choice"),
    ],
)
def test_power_refusals(api, lab, requester, params, words):
    errors = refused(api(requester), lab, "vm_power", {"vm": "prod-web-01", **params})
    assert words in " ".join(errors["action"]), errors


def test_decommission_is_filed_with_two_approvals_and_the_vms_configuration(api, client, lab, requester):
    ticket = file_ticket(api(requester), lab, "vm_decommission", {"vm": "prod-db-01"})
    client.force_login(requester)
    page = client.get(f"/tickets/{ticket['id']}/").content.decode()
    assert "Destroy prod-db-01 on prod-esx-02, 4 CPU / 8192 MB, 1 disk(s)" in page
    assert ticket["required_approvals"] == 2 and ticket["zone"] == "prod"
    submitted = AuditEntry.objects.get(ticket_id=ticket["id"], action="ticket.submitted")
    config = submitted.details["params"]["configuration"]
    assert (config["name"], config["cpus"], config["memory_mb"]) == ("prod-db-01", 4, 8192)
    assert config["host"] and config["disks"][0]["file"] == "[ds-prod] prod-db-01/disk1.vmdk"
    assert [n["label"] for n in config["networks"]] == ["Network adapter 1"]


def test_the_pages_offer_every_new_kind_and_show_refusals_next_to_the_field(client, lab, requester):
    client.force_login(requester)
    for kind in ("vm_decommission", "vm_reconfigure", "vm_power", "vm_snapshot"):
        page = client.get(f"/tickets/new/{kind}/?connector={lab.pk}")
        assert page.status_code == 200, kind
        assert f"/inventory/{lab.pk}/search/?ticket_kind={kind}&amp;field=vm" in page.content.decode(), kind
        offered = client.get(f"/inventory/{lab.pk}/search/", {"ticket_kind": kind, "field": "vm", "vm": "-01"})
        assert "prod-web-01" in offered.content.decode() and "tpl-debian12" not in offered.content.decode(), kind
    vm = next(vm for vm in lab_vms(lab) if vm.name == "prod-web-01")
    response = client.post(
        f"/tickets/new/vm_reconfigure/?connector={lab.pk}",
        {"connector": lab.pk, "vm": vm.id, "cpus": 12, "justification": "bigger"},
    )
    assert response.status_code == 400
    assert "At most 8 CPUs by policy." in response.content.decode()
    assert Ticket.objects.count() == 0


def lab_vms(lab):
    from approvals.inventory import StoredIndex

    return StoredIndex.for_connector(lab).objects("vm")


def test_what_the_checks_derive_cannot_be_supplied(api, lab, requester):
    forged = {
        "vm": "prod-web-01",
        "add_network": "pg-prod",
        "needs_power_off": False,
        "before": {"cpus": 64, "memory_mb": 1, "nic_keys": []},
        "objects": {"vm": {"type": "vm", "id": "vm-1", "name": "other", "path": "/", "instance_uuid": "forged"}},
    }
    ticket = file_ticket(api(requester), lab, "vm_reconfigure", forged)
    stored = Ticket.objects.get(pk=ticket["id"]).params
    vm = next(vm for vm in lab_vms(lab) if vm.name == "prod-web-01")
    assert stored["objects"]["vm"]["instance_uuid"] == vm.instance_uuid and stored["vm"] == vm.id
    assert stored["before"] == {"cpus": 2, "memory_mb": 4096, "nic_keys": [n.key for n in vm.nics]}

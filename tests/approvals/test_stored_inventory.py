"""The inventory table as pages, the API and submission read it: StoredIndex
answers as the in-memory index does, freshness is said (loudly when the sync
is behind or the hypervisor unreachable), the API pages and filters, and a
finished ticket shows in the table without any sync."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from approvals.inventory import InventoryIndex, StoredIndex
from approvals.inventory.rules import KIND_WORDS, Unresolved
from approvals.models import Zone
from approvals.services.execution import ticket_execute
from connectors.inventory_store import load_inventory
from connectors.models import InventoryObject, InventoryState
from tests.approvals.helpers import VM_CREATE, file_ticket, migrate_within_zone

CONTAINERS = ("cluster", "resource_pool", "folder", "datacenter", "root", "datastore_cluster")


def answer(index, kinds, value):
    """What resolve gives, or its refusal in words, to compare two indexes."""
    try:
        return ("ok", index.resolve(kinds, value))
    except Unresolved as exc:
        return ("refused", str(exc))


def test_stored_index_answers_like_the_in_memory_index(lab, django_assert_max_num_queries):
    stored = StoredIndex.for_connector(lab)
    memory = InventoryIndex(load_inventory(lab), list(Zone.objects.filter(connector=lab)))
    assert stored.roles == memory.roles and stored.labels == memory.labels and memory.labels
    kinds = tuple(KIND_WORDS)
    for kind in kinds:
        assert stored.objects(kind) == memory.objects(kind), kind
    everything = [(kind, obj) for kind in kinds for obj in memory.objects(kind)]
    assert len(everything) > 30 and {k for k, _ in everything} >= {"vm", "template", "host", "cluster", "root"}
    values = {"vm-99999", "/lab/nowhere", "nobody", "Resources", "", "group-d1"}
    for kind, obj in everything:
        values |= {obj.id, obj.path, obj.name}
        assert stored.get(obj.id) == obj and stored.kind_of(obj.id) == memory.kind_of(obj.id) == kind
        assert stored.get(obj.id, ("nothing",)) is None
        assert stored.named(kind, obj.name) == memory.named(kind, obj.name)
        assert stored.ref(kind, obj) == memory.ref(kind, obj)
        for method in ("label_of", "host_zone", "cluster_zone", "datastore_zone", "network_zone"):
            assert getattr(stored, method)(obj.id) == getattr(memory, method)(obj.id), (method, obj.id)
        assert stored.entity_zone(kind, obj) == memory.entity_zone(kind, obj), (kind, obj.id)
        if kind in ("vm", "template"):
            assert stored.vm_zone(obj) == memory.vm_zone(obj)
            assert stored.has_instance_uuid(obj.instance_uuid) and memory.has_instance_uuid(obj.instance_uuid)
        if kind in ("host", "cluster"):
            assert stored.placement_zone(kind, obj) == memory.placement_zone(kind, obj)
        if kind in CONTAINERS:
            assert stored.zones_beneath(kind, obj) == memory.zones_beneath(kind, obj), (kind, obj.id)
    # The root reaches every zone; "Resources" names one pool per cluster and is refused as ambiguous.
    root = memory.objects("root")[0]
    assert {z.label for z in stored.zones_beneath("root", root)} >= {"prod", "dev", "dmz"}
    assert answer(stored, ("resource_pool",), "Resources")[0] == "refused"
    for value in sorted(values):
        for accepted in [(kind,) for kind in kinds] + [("vm", "template"), ("host", "cluster"), kinds]:
            assert answer(stored, accepted, value) == answer(memory, accepted, value), (accepted, value)
    assert not stored.has_instance_uuid("00000000-0000-0000-0000-000000000000")
    # The pickers' search: the same objects in the same order, SQL or memory.
    for query in ("", "esx", "PROD", "dev-app-01", "/lab/vm/", "Datacenters", "no-such-thing"):
        for accepted in [("vm",), ("host", "cluster"), ("network",), ("vm", "host", "folder", "root")]:
            for limit in (3, 50):
                assert stored.search(accepted, query, limit=limit) == memory.search(accepted, query, limit=limit), (
                    accepted,
                    query,
                    limit,
                )
    # A fresh index costs a handful of queries for what a migration names.
    with django_assert_max_num_queries(8):
        fresh = StoredIndex.for_connector(lab)
        _, vm = fresh.resolve(("vm",), "dev-app-01")
        _, host = fresh.resolve(("host",), "dev-esx-02")
        assert fresh.vm_zone(vm).label == fresh.host_zone(host.id).label == "dev"


def _state(lab, **fields):
    StoredIndex.for_connector(lab)  # the table is filled
    InventoryState.objects.filter(connector=lab).update(**fields)


def test_a_fresh_inventory_says_as_of_when(api, lab, requester):
    StoredIndex.for_connector(lab)
    synced = InventoryState.objects.get(connector=lab).synced_at
    web = Client()
    web.force_login(requester)
    html = web.get(f"/tickets/new/vm_migrate/?connector={lab.pk}").content.decode()
    assert f"Inventory as of {timezone.localtime(synced):%H:%M:%S}" in html and "data-inventory-stale" not in html
    inventory = api(requester).get(f"/api/connectors/{lab.pk}/inventory/").json()["inventory"]
    assert inventory["as_of"] == synced.isoformat() and not inventory["stale"] and inventory["warning"] == ""


def test_an_unreachable_hypervisor_is_said_loudly_and_submission_still_works(api, lab, requester):
    _state(lab, error="cannot connect to https://vcenter.example:443/sdk: connection refused")
    web = Client()
    web.force_login(requester)
    response = web.get(f"/tickets/new/vm_migrate/?connector={lab.pk}")
    html = response.content.decode()
    assert response.status_code == 200 and 'name="vm"' in html
    assert "data-inventory-stale" in html and "The hypervisor cannot be read" in html and "connection refused" in html
    inventory = api(requester).get(f"/api/connectors/{lab.pk}/inventory/").json()["inventory"]
    assert inventory["stale"] and "connection refused" in inventory["warning"]
    ticket = file_ticket(api(requester), lab, "vm_migrate", migrate_within_zone(api(requester), lab))
    assert ticket["state"] == "pending"
    assert "data-inventory-stale" in web.get(f"/tickets/{ticket['id']}/").content.decode()


def test_a_sync_that_fell_behind_is_said_loudly(api, lab, requester, settings):
    settings.INVENTORY_STALE_SECONDS = 120
    old = timezone.now() - timedelta(seconds=121)
    _state(lab, synced_at=old, full_read_at=old)
    web = Client()
    web.force_login(requester)
    html = web.get(f"/tickets/new/vm_create/?connector={lab.pk}").content.decode()
    assert "The inventory sync is behind" in html and f"{timezone.localtime(old):%H:%M:%S}" in html
    inventory = api(requester).get(f"/api/connectors/{lab.pk}/inventory/").json()["inventory"]
    assert inventory["stale"] and inventory["error"] == "" and "behind" in inventory["warning"]


def test_the_inventory_api_pages(api, lab, requester, settings):
    settings.INVENTORY_PAGE_SIZE = 7
    client = api(requester)
    first = client.get(f"/api/connectors/{lab.pk}/inventory/").json()
    assert first["page"] == 1 and first["page_size"] == 7 and first["pages"] == -(-first["count"] // 7) > 2
    groups = ("datacenters", "folders", "clusters", "hosts", "resource_pools", "datastore_clusters")
    groups += ("datastores", "networks", "vms", "templates")
    seen = []
    for page in range(1, first["pages"] + 1):
        body = client.get(f"/api/connectors/{lab.pk}/inventory/?page={page}").json()
        on_page = [row["id"] for group in groups for row in body[group]]
        assert len(on_page) == (7 if page < first["pages"] else first["count"] - 7 * (first["pages"] - 1))
        seen += on_page
    assert len(seen) == len(set(seen)) == first["count"]
    stored = set(InventoryObject.objects.filter(connector=lab).exclude(type="template").values_list("moid", flat=True))
    assert stored <= set(seen)  # templates: only those in the catalogue
    assert first["roles"] and "Admin" in first["roles"] and first["root_folder"] == "group-d1"


def test_the_inventory_api_filters(api, lab, requester):
    client = api(requester)

    def listed(query, group):
        response = client.get(f"/api/connectors/{lab.pk}/inventory/?{query}")
        assert response.status_code == 200, response.content
        return {row["name"]: row.get("zone") for row in response.json()[group]}

    web = listed("type=vm&q=WEB", "vms")
    assert web and all("web" in name for name in web)
    assert listed("type=vm&q=WEB", "hosts") == {}
    assert listed("type=host&zone=prod", "hosts") == {"prod-esx-01": "prod", "prod-esx-02": "prod"}
    prod_vms = listed("type=vm&zone=prod", "vms")
    assert prod_vms and set(prod_vms.values()) == {"prod"} and "dev-app-01" not in prod_vms
    everything = listed("type=vm", "vms")
    assert {n for n, z in everything.items() if z == "untrusted"} == set(listed("type=vm&zone=untrusted", "vms"))
    assert set(listed("zone=dmz", "networks")) == {"pg-dmz"} and listed("zone=dmz", "folders") == {}
    beneath = listed("q=/lab/host/", "hosts")
    assert set(beneath) == {"prod-esx-01", "prod-esx-02", "dev-esx-01", "dev-esx-02", "dmz-esx-01"}
    assert listed("q=/lab/host/", "vms") == {}


@pytest.mark.parametrize(
    ("query", "field"),
    [("type=spaceship", "type"), ("zone=moon", "zone"), ("page=0", "page"), ("page=x", "page"), ("page=999", "page")],
)
def test_the_inventory_api_refuses_bad_filters_in_words(api, lab, requester, query, field):
    response = api(requester).get(f"/api/connectors/{lab.pk}/inventory/?{query}")
    assert response.status_code == 400
    assert list(response.json()) == [field] and response.json()[field][0]


def test_a_finished_ticket_shows_in_the_table_without_a_sync(api, own_lab, requester, approver):
    client = api(requester)
    move = migrate_within_zone(client, own_lab)
    ticket = file_ticket(client, own_lab, "vm_migrate", move)
    approve_all_by(api, ticket, approver)
    assert ticket_execute(ticket_id=ticket["id"], worker="test-worker") == "succeeded"
    vm = InventoryObject.objects.get(connector=own_lab, type="vm", name=move["vm"])
    target = InventoryObject.objects.get(connector=own_lab, type="host", name=move["target_host"])
    assert vm.host_id == target.moid
    listed = client.get(f"/api/connectors/{own_lab.pk}/inventory/?type=vm&q={move['vm']}").json()["vms"]
    assert [v["host"] for v in listed] == [target.moid]

    created = file_ticket(client, own_lab, "vm_create", VM_CREATE)
    approve_all_by(api, created, approver)
    assert ticket_execute(ticket_id=created["id"], worker="test-worker") == "succeeded"
    row = InventoryObject.objects.get(connector=own_lab, type="vm", name=VM_CREATE["name"])
    assert row.host_id == InventoryObject.objects.get(connector=own_lab, type="host", name="prod-esx-01").moid
    assert StoredIndex.for_connector(own_lab).resolve(("vm",), VM_CREATE["name"])[1].id == row.moid
    state = InventoryState.objects.get(connector=own_lab)
    assert state.full_read_at is not None and state.full_read_at < row.updated_at  # written after the read


def test_while_a_sync_follows_a_finished_ticket_leaves_the_table_to_it(api, own_lab, requester, approver):
    """The sync judges what it sees against the table: a worker writing the
    objects it read along after a change could hide from drift a change made
    beside the ticket's, so while a sync follows, only the sync writes."""
    client = api(requester)
    move = migrate_within_zone(client, own_lab)
    before = InventoryObject.objects.get(connector=own_lab, type="vm", name=move["vm"])
    InventoryState.objects.filter(connector=own_lab).update(holder="sync@elsewhere", synced_at=timezone.now())
    ticket = file_ticket(client, own_lab, "vm_migrate", move)
    approve_all_by(api, ticket, approver)
    assert ticket_execute(ticket_id=ticket["id"], worker="test-worker") == "succeeded"
    after = InventoryObject.objects.get(pk=before.pk)
    assert (after.host_id, after.updated_at) == (before.host_id, before.updated_at)


def approve_all_by(api, ticket, *approvers):
    for user in approvers:
        response = api(user).post(f"/api/tickets/{ticket['id']}/approve/", {}, format="json")
        assert response.status_code == 200, response.content

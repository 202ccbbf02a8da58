"""The inventory table holds exactly what the connector reads: stored and
loaded back it is the same Inventory, and a second store writes only what
changed."""

from dataclasses import replace

import pytest

from connectors.inventory_store import load_inventory, store_snapshot
from connectors.models import InventoryObject, InventoryState
from connectors.registry import connector_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def read(lab):
    backend = connector_for(lab.kind, lab.connection_config())
    return backend.inventory()


def test_round_trip_is_the_connectors_own_inventory(lab, read):
    stored = store_snapshot(connector=lab, inventory=read, version="7")

    assert load_inventory(lab) == read
    assert len(stored.created) == InventoryObject.objects.filter(connector=lab).count() > 20
    root = InventoryObject.objects.get(connector=lab, moid=read.root_folder_id)
    assert (root.type, root.parent_id, root.path, root.version) == ("root", "", "/", "7")
    template = InventoryObject.objects.get(connector=lab, name="tpl-rhel9")
    assert template.type == "template" and len(template.nics) == 2 and template.instance_uuid
    state = InventoryState.objects.get(connector=lab)
    assert state.version == "7" and state.full_read_at and state.roles


def test_a_second_store_writes_only_what_changed(lab, read):
    store_snapshot(connector=lab, inventory=read, version="1")
    assert store_snapshot(connector=lab, inventory=read, version="2").updated == ()

    web = next(vm for vm in read.vms if vm.name == "prod-web-01")
    gone = next(vm for vm in read.vms if vm.name == "dev-app-02")
    moved = replace(web, name="prod-web-99", path=web.path.replace("prod-web-01", "prod-web-99"), host_id="host-x")
    changed = replace(read, vms=tuple(moved if vm is web else vm for vm in read.vms if vm is not gone))
    stored = store_snapshot(connector=lab, inventory=changed, version="3")

    assert (stored.created, stored.updated, stored.removed) == ((), (web.id,), (gone.id,))
    assert load_inventory(lab) == changed
    untouched = InventoryObject.objects.get(connector=lab, name="prod-db-01")
    assert untouched.version == "1"
    assert InventoryObject.objects.get(connector=lab, moid=web.id).version == "3"

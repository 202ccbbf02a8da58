"""The inventory table: a connector's inventory kept in the database, one row
per object (connectors.models.InventoryObject), written by the sync and read
by everyone else.

`store_snapshot` makes the table equal to an Inventory, `store_changes`
writes what one batch of updates changed, `load_inventory` gives back the
frozen dataclasses exactly as the connector's own `inventory()` returns them.
Rows carry the update version that last wrote them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from connectors.base import (
    Cluster,
    Datacenter,
    Datastore,
    DatastoreCluster,
    Disk,
    Folder,
    Host,
    Inventory,
    Network,
    Nic,
    ResourcePool,
    Role,
    Snapshot,
    VirtualMachine,
)
from connectors.models import Connector, InventoryObject, InventoryState

# The row's fields that say what the object is (everything but the bookkeeping).
CONTENT_FIELDS = (
    "type",
    "name",
    "parent_id",
    "path",
    "instance_uuid",
    "host_id",
    "cluster_id",
    "datastore_cluster_id",
    "resource_pool_id",
    "datastore_ids",
    "nics",
    "host_ids",
    "power_state",
    "attrs",
)
BATCH = 2000

# Inventory attribute -> the row type of its objects (VMs: "vm" or "template").
_GROUPS = {
    "datacenters": "datacenter",
    "folders": "folder",
    "clusters": "cluster",
    "hosts": "host",
    "resource_pools": "resource_pool",
    "datastore_clusters": "datastore_cluster",
    "datastores": "datastore",
    "networks": "network",
    "vms": "vm",
}


@dataclass(frozen=True)
class Stored:
    """What a write changed, by managed object id."""

    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def objects_of(inventory: Inventory) -> Iterable[Any]:
    """Every object of the inventory, root folder included."""
    for group in _GROUPS:
        yield from getattr(inventory, group)


def row_of(obj: Any, *, root_folder_id: str) -> dict[str, Any]:
    """The row's content fields for one inventory dataclass."""
    row: dict[str, Any] = {
        "type": _type_of(obj, root_folder_id),
        "name": obj.name,
        "parent_id": obj.parent_id or "",
        "path": obj.path,
        "instance_uuid": "",
        "host_id": "",
        "cluster_id": "",
        "datastore_cluster_id": "",
        "resource_pool_id": "",
        "datastore_ids": [],
        "nics": [],
        "host_ids": [],
        "power_state": "",
        "attrs": {},
    }
    if isinstance(obj, VirtualMachine):
        row.update(
            instance_uuid=obj.instance_uuid,
            host_id=obj.host_id or "",
            resource_pool_id=obj.resource_pool_id or "",
            datastore_ids=list(obj.datastore_ids),
            nics=[{"key": n.key, "label": n.label, "network_id": n.network_id} for n in obj.nics],
            power_state=obj.power_state,
            attrs=_vm_attrs(obj),
        )
    elif isinstance(obj, Host):
        row["cluster_id"] = obj.cluster_id or ""
    elif isinstance(obj, ResourcePool):
        row.update(cluster_id=obj.cluster_id or "", host_ids=list(obj.host_ids))
    elif isinstance(obj, Datastore):
        row["datastore_cluster_id"] = obj.datastore_cluster_id or ""
    return row


def _vm_attrs(vm: VirtualMachine) -> dict[str, Any]:
    """A VM's size, hot-add settings, disks and snapshots, for `attrs`."""
    return {
        "cpus": vm.cpus,
        "memory_mb": vm.memory_mb,
        "cpu_hot_add": vm.cpu_hot_add,
        "cpu_hot_remove": vm.cpu_hot_remove,
        "memory_hot_add": vm.memory_hot_add,
        "disks": [asdict(d) for d in vm.disks],
        "snapshots": [asdict(s) for s in vm.snapshots],
        "current_snapshot_id": vm.current_snapshot_id,
    }


def _vm_details(attrs: dict[str, Any]) -> dict[str, Any]:
    """The VirtualMachine fields _vm_attrs keeps (defaults for rows without them)."""
    return {
        "cpus": attrs.get("cpus", 0),
        "memory_mb": attrs.get("memory_mb", 0),
        "cpu_hot_add": attrs.get("cpu_hot_add", False),
        "cpu_hot_remove": attrs.get("cpu_hot_remove", False),
        "memory_hot_add": attrs.get("memory_hot_add", False),
        "disks": tuple(Disk(**d) for d in attrs.get("disks", ())),
        "snapshots": tuple(Snapshot(**s) for s in attrs.get("snapshots", ())),
        "current_snapshot_id": attrs.get("current_snapshot_id"),
    }


def _type_of(obj: Any, root_folder_id: str) -> str:
    if isinstance(obj, VirtualMachine):
        return "template" if obj.is_template else "vm"
    if isinstance(obj, Folder) and obj.id == root_folder_id:
        return "root"
    for cls, kind in _CLASSES.items():
        if isinstance(obj, cls):
            return kind
    raise TypeError(f"not an inventory object: {type(obj).__name__}")


_CLASSES = {
    Datacenter: "datacenter",
    Folder: "folder",
    Cluster: "cluster",
    Host: "host",
    ResourcePool: "resource_pool",
    DatastoreCluster: "datastore_cluster",
    Datastore: "datastore",
    Network: "network",
}


def object_of(row: dict[str, Any]) -> Any:
    """The inventory dataclass for a row (as InventoryObject.values() gives it)."""
    base = {"id": row["moid"], "name": row["name"], "parent_id": row["parent_id"] or None, "path": row["path"]}
    kind = row["type"]
    if kind in ("vm", "template"):
        return VirtualMachine(
            **base,
            host_id=row["host_id"] or None,
            datastore_ids=tuple(row["datastore_ids"]),
            nics=tuple(Nic(key=n["key"], label=n["label"], network_id=n["network_id"]) for n in row["nics"]),
            power_state=row["power_state"],
            instance_uuid=row["instance_uuid"],
            is_template=kind == "template",
            resource_pool_id=row["resource_pool_id"] or None,
            **_vm_details(row["attrs"] or {}),
        )
    if kind in ("folder", "root"):
        return Folder(**base)
    if kind == "host":
        return Host(**base, cluster_id=row["cluster_id"] or None)
    if kind == "resource_pool":
        return ResourcePool(**base, cluster_id=row["cluster_id"] or None, host_ids=tuple(row["host_ids"]))
    if kind == "datastore":
        return Datastore(**base, datastore_cluster_id=row["datastore_cluster_id"] or None)
    cls = {v: k for k, v in _CLASSES.items()}[kind]
    return cls(**base)


def load_inventory(connector: Connector) -> Inventory:
    """The connector's inventory as the table holds it, in the order and shape
    `connector.inventory()` gives; an empty Inventory before the first sync."""
    state = InventoryState.objects.filter(connector=connector).first()
    groups: dict[str, list[Any]] = {group: [] for group in _GROUPS}
    group_of = {kind: group for group, kind in _GROUPS.items()} | {"root": "folders", "template": "vms"}
    rows = InventoryObject.objects.filter(connector=connector).values("moid", *CONTENT_FIELDS)
    for row in rows.iterator(chunk_size=BATCH):
        groups[group_of[row["type"]]].append(object_of(row))
    return Inventory(
        root_folder_id=state.root_folder_id if state else "",
        roles=tuple(Role(id=r["id"], name=r["name"]) for r in (state.roles if state else ())),
        **{group: tuple(sorted(items, key=lambda o: (o.path, o.id))) for group, items in groups.items()},
    )


def store_snapshot(*, connector: Connector, inventory: Inventory, version: str = "") -> Stored:
    """Make the connector's table equal to `inventory`, in place and in one
    transaction: rows that changed are written, rows of objects that are gone
    deleted, the rest left alone. Records the full read on its state."""
    wanted = {obj.id: row_of(obj, root_folder_id=inventory.root_folder_id) for obj in objects_of(inventory)}
    with transaction.atomic():
        have = {
            row["moid"]: row
            for row in InventoryObject.objects.filter(connector=connector)
            .values("moid", *CONTENT_FIELDS)
            .iterator(chunk_size=BATCH)
        }
        changed = {
            moid: row
            for moid, row in wanted.items()
            if moid not in have or any(have[moid][f] != row[f] for f in CONTENT_FIELDS)
        }
        gone = [moid for moid in have if moid not in wanted]
        _write(connector, changed, gone, version)
        now = timezone.now()
        _state_update(
            connector,
            version=version,
            root_folder_id=inventory.root_folder_id,
            roles=[{"id": r.id, "name": r.name} for r in inventory.roles],
            full_read_at=now,
            synced_at=now,
        )
    return Stored(
        created=tuple(m for m in changed if m not in have),
        updated=tuple(m for m in changed if m in have),
        removed=tuple(gone),
    )


def store_changes(
    *, connector: Connector, root_folder_id: str, changed: Iterable[Any], removed: Iterable[str], version: str
) -> None:
    """Write one batch of updates: `changed` inventory objects (new or
    different), `removed` ids; the state moves to `version`."""
    rows = {obj.id: row_of(obj, root_folder_id=root_folder_id) for obj in changed}
    with transaction.atomic():
        _write(connector, rows, list(removed), version)
        _state_update(connector, version=version, synced_at=timezone.now())


def _write(connector: Connector, rows: dict[str, dict[str, Any]], gone: list[str], version: str) -> None:
    now = timezone.now()
    for start in range(0, len(gone), BATCH):
        InventoryObject.objects.filter(connector=connector, moid__in=gone[start : start + BATCH]).delete()
    objs = [
        InventoryObject(connector=connector, moid=moid, version=version, updated_at=now, **row)
        for moid, row in rows.items()
    ]
    InventoryObject.objects.bulk_create(
        objs,
        batch_size=BATCH // 4,
        update_conflicts=True,
        unique_fields=["connector", "moid"],
        update_fields=[*CONTENT_FIELDS, "version", "updated_at"],
    )


def _state_update(connector: Connector, **fields: Any) -> None:
    updated = InventoryState.objects.filter(connector=connector).update(**fields)
    if not updated:
        InventoryState.objects.create(connector=connector, **fields)


def state_update(*, connector: Connector, **fields: Any) -> None:
    """Set fields of the connector's sync state (creating it when missing):
    the heartbeat (synced_at), the error in words, the holder, …"""
    _state_update(connector, **fields)


def store_objects(*, connector: Connector, root_folder_id: str, changed: Iterable[Any], removed: Iterable[str]) -> None:
    """Write objects read outside the sync (after a change the portal made):
    rows written in place, `removed` ids deleted; the sync's version and
    heartbeat are left as they are; the rows carry the sync's version."""
    rows = {obj.id: row_of(obj, root_folder_id=root_folder_id) for obj in changed}
    version = InventoryState.objects.filter(connector=connector).values_list("version", flat=True).first() or ""
    with transaction.atomic():
        _write(connector, rows, list(removed), version)

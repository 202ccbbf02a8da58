"""The inventory table: a connector's inventory kept in the database, one row
per object (connectors.models.InventoryObject), written by the sync and read
by everyone else.

`store_snapshot` makes the table equal to an Inventory, `store_objects`
writes what one batch of updates changed and says what that was (compared
with the rows, by id, in batches: its cost follows the batch, not the
table), `load_inventory` gives back the frozen dataclasses exactly as the
connector's own `inventory()` returns them. Rows carry the update version
that last wrote them.
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


@dataclass(frozen=True)
class Diff:
    """What a write changed, as two partial inventories: `before` the rows
    as they were, `after` the objects as written, each holding only the
    objects that changed (or went) and every host (a VM's change names its
    host)."""

    before: Inventory
    after: Inventory


def store_snapshot(*, connector: Connector, inventory: Inventory, version: str = "") -> Stored:
    """Make the connector's table equal to `inventory`, in place and in one
    transaction: rows that changed are written, rows of objects that are gone
    deleted, the rest left alone. Records the full read on its state."""
    with transaction.atomic():
        stored, _ = _store(connector, inventory, (), version, complete=True, diff=False)
        _full_read(connector, inventory, version)
    return stored


def store_objects(
    *,
    connector: Connector,
    inventory: Inventory,
    removed: Iterable[str] = (),
    version: str,
    complete: bool = False,
    full_read: bool = False,
) -> Diff:
    """Write the objects of `inventory` (a part of it, or with `complete` all
    of it) whose rows differ, delete the rows of `removed` (with `complete`
    of every object it lacks); the state moves to `version` (`full_read`:
    and records a full read, as store_snapshot does). The rows are compared
    in batches by managed object id, so the cost follows the size of
    `inventory`, not of the table. Returns what changed."""
    with transaction.atomic():
        _, diff = _store(connector, inventory, removed, version, complete=complete, diff=True)
        if full_read:
            _full_read(connector, inventory, version)
        else:
            _state_update(connector, version=version, synced_at=timezone.now())
    return diff


def _full_read(connector: Connector, inventory: Inventory, version: str) -> None:
    now = timezone.now()
    _state_update(
        connector,
        version=version,
        root_folder_id=inventory.root_folder_id,
        roles=[{"id": r.id, "name": r.name} for r in inventory.roles],
        full_read_at=now,
        synced_at=now,
    )


def _store(
    connector: Connector, inventory: Inventory, removed: Iterable[str], version: str, *, complete: bool, diff: bool
) -> tuple[Stored, Diff | None]:
    root = inventory.root_folder_id
    table = InventoryObject.objects.filter(connector=connector)
    hosts = {r["moid"]: object_of(r) for r in table.filter(type="host").values("moid", *CONTENT_FIELDS)} if diff else {}
    objects = list(objects_of(inventory))
    created: list[str] = []
    updated: list[str] = []
    before: list[Any] = []
    after: list[Any] = []
    for start in range(0, len(objects), BATCH):
        chunk = objects[start : start + BATCH]
        rows = {obj.id: row_of(obj, root_folder_id=root) for obj in chunk}
        have = {r["moid"]: r for r in table.filter(moid__in=list(rows)).values("moid", *CONTENT_FIELDS)}
        changed = {
            moid: row
            for moid, row in rows.items()
            if moid not in have or any(have[moid][f] != row[f] for f in CONTENT_FIELDS)
        }
        _write(connector, changed, [], version)
        created += [m for m in changed if m not in have]
        updated += [m for m in changed if m in have]
        if diff:
            before += [object_of(have[m]) for m in changed if m in have]
            after += [obj for obj in chunk if obj.id in changed]
    gone = set(removed)
    if complete:
        seen = {obj.id for obj in objects}
        gone |= {m for m in table.values_list("moid", flat=True).iterator(chunk_size=BATCH) if m not in seen}
    gone_ids = sorted(gone)
    for start in range(0, len(gone_ids), BATCH):
        part = gone_ids[start : start + BATCH]
        rows_gone = list(table.filter(moid__in=part).values("moid", *CONTENT_FIELDS))
        if diff:
            before += [object_of(r) for r in rows_gone]
        _write(connector, {}, [r["moid"] for r in rows_gone], version)
    stored = Stored(created=tuple(created), updated=tuple(updated), removed=tuple(gone_ids))
    if not diff:
        return stored, None
    hosts_after = {m: h for m, h in hosts.items() if m not in gone} | {o.id: o for o in after if isinstance(o, Host)}
    return stored, Diff(
        before=_partial(root, {**hosts, **{o.id: o for o in before}}.values()),
        after=_partial(root, {**hosts_after, **{o.id: o for o in after}}.values()),
    )


def _partial(root_folder_id: str, objects: Iterable[Any]) -> Inventory:
    groups: dict[str, list[Any]] = {group: [] for group in _GROUPS}
    group_of = {kind: group for group, kind in _GROUPS.items()} | {"root": "folders", "template": "vms"}
    for obj in objects:
        groups[group_of[_type_of(obj, root_folder_id)]].append(obj)
    return Inventory(
        root_folder_id=root_folder_id,
        **{group: tuple(sorted(items, key=lambda o: (o.path, o.id))) for group, items in groups.items()},
    )


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


def store_read(*, connector: Connector, inventory: Inventory, removed: Iterable[str], version: str) -> None:
    """Write objects read outside the sync (after a change the portal made):
    rows that differ written in place, `removed` ids deleted; the state (the
    sync's version and heartbeat) is left as it is, and the rows carry its
    `version`, as the caller read it with the state."""
    with transaction.atomic():
        _store(connector, inventory, removed, version, complete=False, diff=False)

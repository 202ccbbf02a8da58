"""The inventory API's answer: one page of the stored inventory, filtered by
type, name or path, and zone, grouped by type the way the hypervisor groups
it, each object with its zone."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Case, IntegerField, Q, Value, When
from django.db.models.functions import Lower

from approvals.errors import InvalidInput
from approvals.inventory.rules import UNTRUSTED
from approvals.inventory.stored import StoredIndex
from connectors.inventory_store import CONTENT_FIELDS
from connectors.models import InventoryObject

# Answer group -> the row types it holds, in the order the answer lists them.
GROUPS = {
    "datacenters": ("datacenter",),
    "folders": ("root", "folder"),
    "clusters": ("cluster",),
    "hosts": ("host",),
    "resource_pools": ("resource_pool",),
    "datastore_clusters": ("datastore_cluster",),
    "datastores": ("datastore",),
    "networks": ("network",),
    "vms": ("vm",),
    "templates": ("template",),
}
# What ?type= accepts: a ticket's kinds of object (the root is a folder).
TYPES = tuple(t for types in GROUPS.values() for t in types if t != "root")
# Types whose objects carry a zone in the answer (?zone= keeps only those).
ZONED = ("cluster", "host", "resource_pool", "datastore_cluster", "datastore", "network", "vm")
SMALL_ZONED = tuple(t for t in ZONED if t != "vm")


@dataclass(frozen=True)
class InventoryQuery:
    type: str = ""
    q: str = ""
    zone: str = ""
    page: int = 1


def inventory_page(*, index: StoredIndex, query: InventoryQuery, catalogue: set[str]) -> dict:
    """One page of the connector's stored inventory, as the API answers it;
    InvalidInput with field errors for a zone or page that does not exist.
    Templates are listed only when in the catalogue."""
    zones = _zone_names(index)
    if query.zone and query.zone != UNTRUSTED.label and query.zone not in zones:
        known = ", ".join(sorted(zones | {UNTRUSTED.label}))
        raise InvalidInput({"zone": [f"No zone {query.zone!r} on this connector (zones: {known})."]})
    rows = InventoryObject.objects.filter(connector=index.connector)
    rows = rows.filter(~Q(type="template") | Q(moid__in=catalogue))
    if query.type:
        rows = rows.filter(type__in=("root", "folder") if query.type == "folder" else (query.type,))
    if query.q.startswith("/"):
        rows = rows.filter(path__startswith=query.q)
    elif query.q:
        rows = rows.alias(lname=Lower("name")).filter(lname__contains=query.q.lower())
    if query.zone:
        rows = rows.filter(_in_zone(index, query.zone))
    count = rows.count()
    size = settings.INVENTORY_PAGE_SIZE
    pages = max(1, -(-count // size))
    if query.page > pages:
        raise InvalidInput({"page": [f"There {'is' if pages == 1 else 'are'} only {pages} page(s) of {size}."]})
    order = Case(
        *(When(type=t, then=Value(i)) for i, t in enumerate(t for types in GROUPS.values() for t in types)),
        output_field=IntegerField(),
    )
    start = (query.page - 1) * size
    page = rows.alias(group=order).order_by("group", "path", "moid").values("moid", *CONTENT_FIELDS)
    answer: dict = {group: [] for group in GROUPS}
    group_of = {t: group for group, types in GROUPS.items() for t in types}
    index.objects("host")  # every VM's zone is its host's: read the hosts once
    for row in page[start : start + size]:
        kind, obj = index.adopt(row)
        answer[group_of[kind]].append(_entry(index, kind, obj))
    state = index.state
    return {
        "connector": index.connector.pk,
        "inventory": index.freshness.as_data(),
        "root_folder": state.root_folder_id if state else "",
        "roles": sorted(index.roles),
        "filters": {"type": query.type, "q": query.q, "zone": query.zone},
        "count": count,
        "page": query.page,
        "pages": pages,
        "page_size": size,
        **answer,
    }


def _zone_names(index: StoredIndex) -> set[str]:
    from approvals.models import Zone

    return set(Zone.objects.filter(connector=index.connector).values_list("name", flat=True))


def _in_zone(index: StoredIndex, zone: str) -> Q:
    """The rows whose zone (as the answer shows it) is `zone`: the few
    hosts, clusters, pools, datastores and networks judged one by one, VMs
    by the hosts they run on."""
    ids = [obj.id for kind in SMALL_ZONED for obj in index.objects(kind) if _zone_of(index, kind, obj).label == zone]
    hosts = {h.id: index.host_zone(h.id).label for h in index.objects("host")}
    hosts.update({moid: label.label for moid, label in index.labels.items()})  # labelled, read or not
    if zone == UNTRUSTED.label:
        vms = Q(type="vm") & ~Q(host_id__in=[h for h, label in hosts.items() if label != zone])
    else:
        vms = Q(type="vm", host_id__in=[h for h, label in hosts.items() if label == zone])
    return Q(moid__in=ids) | vms


def _zone_of(index: StoredIndex, kind: str, obj):
    """A datastore cluster's own label; anything else as entity_zone gives it
    (clusters, resource pools: the most trusted zone beneath)."""
    if kind == "datastore_cluster":
        return index.label_of(obj.id)
    return index.entity_zone(kind, obj)


def _entry(index: StoredIndex, kind: str, obj) -> dict:
    entry = {"id": obj.id, "name": obj.name, "path": obj.path, "parent": obj.parent_id}
    if kind in ZONED:
        entry["zone"] = _zone_of(index, kind, obj).label
    if kind == "host":
        entry["cluster"] = obj.cluster_id
    elif kind == "datastore":
        entry["datastore_cluster"] = obj.datastore_cluster_id
    elif kind == "template":
        entry["nics"] = [{"key": n.key, "label": n.label, "network": n.network_id} for n in obj.nics]
    elif kind == "vm":
        entry.update(
            instance_uuid=obj.instance_uuid,
            host=obj.host_id,
            datastores=list(obj.datastore_ids),
            nics=[{"key": n.key, "label": n.label, "network": n.network_id} for n in obj.nics],
            power_state=obj.power_state,
            # What reconfigure and snapshot tickets judge by.
            cpus=obj.cpus,
            memory_mb=obj.memory_mb,
            hot_add={"cpu": obj.cpu_hot_add, "cpu_remove": obj.cpu_hot_remove, "memory": obj.memory_hot_add},
            snapshots=[{"id": snap.id, "name": snap.name, "created": snap.created} for snap in obj.snapshots],
        )
    return entry

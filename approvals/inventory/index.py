"""One connector's inventory, indexed: every object by managed-object id, by
inventory path and by name, and the zone of each. A ticket names objects;
`resolve` turns each name into exactly one identity or refuses:

- a value that is an object's id, or has the form of a managed-object id
  ("vm-42", "group-d1"), is only ever matched as an id;
- a value starting with "/" is an inventory path ("/lab/vm/prod-vms/web-01");
- anything else is a name, and a name that more than one object of the
  accepted kinds carries is refused with the candidates, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from approvals.inventory.cache import get_inventory
from approvals.models import Zone
from connectors.base import Folder, Inventory

# The managed-object ids vCenter hands out: vm-42, host-21, domain-c7,
# domain-s13, group-d1 (folders, storage pods: group-p…), datacenter-2, …
MOID = re.compile(
    r"^(?:(?:vm|host|datacenter|datastore|network|dvportgroup|dvs|resgroup|vapp|folder|storagepod)-\d+"
    r"|domain-[cs]\d+|group-[a-z]\d+)$"
)

# Kinds of object a ticket may name, each with its words.
KIND_WORDS = {
    "vm": "VM",
    "template": "template",
    "host": "host",
    "cluster": "cluster",
    "datastore": "datastore",
    "datastore_cluster": "datastore cluster",
    "network": "network",
    "folder": "folder",
    "datacenter": "datacenter",
    "resource_pool": "resource pool",
    "root": "root folder",
}


def looks_like_moid(value: str) -> bool:
    return bool(MOID.match(str(value)))


def search_rank(needle: str, name: str, path: str) -> tuple:
    """The order search answers in: the exact name, then names starting with
    the query, then the rest; by name and path within each."""
    lowered = name.lower()
    return (lowered != needle, not lowered.startswith(needle), lowered, path)


@dataclass(frozen=True)
class ZoneLabel:
    name: str
    trust_level: int

    @property
    def label(self) -> str:
        return self.name or "untrusted"


UNTRUSTED = ZoneLabel("", -1)


def _most_trusted(labels) -> ZoneLabel:
    return max(labels, key=lambda z: z.trust_level, default=UNTRUSTED)


class Unresolved(Exception):
    """A value that names no object, or more than one, in words."""


class InventoryIndex:
    """Look-ups by id, path and name; zones of hosts, clusters, datastores,
    networks, VMs and containers."""

    def __init__(self, inventory: Inventory, zones: list[Zone]):
        self.inventory = inventory
        root = inventory.root_folder_id
        roots = [f for f in inventory.folders if f.id == root]
        if root and not roots:  # the root folder is always there, listed or not
            roots = [Folder(id=root, name="Datacenters", parent_id=None, path="/")]
        self._collections = {
            "vm": [vm for vm in inventory.vms if not vm.is_template],
            "template": [vm for vm in inventory.vms if vm.is_template],
            "host": list(inventory.hosts),
            "cluster": list(inventory.clusters),
            "datastore": list(inventory.datastores),
            "datastore_cluster": list(inventory.datastore_clusters),
            "network": list(inventory.networks),
            "folder": [f for f in inventory.folders if f.id != root],
            "datacenter": list(inventory.datacenters),
            "resource_pool": list(inventory.resource_pools),
            "root": roots,
        }
        self._by_id: dict[str, tuple[str, object]] = {}
        self._by_path: dict[str, tuple[str, object]] = {}
        self._by_name: dict[str, dict[str, list]] = {}
        for kind, objects in self._collections.items():
            names = self._by_name.setdefault(kind, {})
            for obj in objects:
                self._by_id[obj.id] = (kind, obj)
                self._by_path[obj.path] = (kind, obj)
                names.setdefault(obj.name, []).append(obj)
        self.roles = {role.name: role for role in inventory.roles}
        self._labels: dict[str, ZoneLabel] = {}
        for zone in zones:
            label = ZoneLabel(zone.name, zone.trust_level)
            for field, kinds in (
                ("clusters", ("cluster",)),
                ("hosts", ("host",)),
                ("networks", ("network",)),
                ("datastores", ("datastore", "datastore_cluster")),
            ):
                for entry in getattr(zone, field, None) or ():
                    for obj in self._labelled(kinds, entry):
                        self._labels[obj.id] = label

    def _labelled(self, kinds, entry: str) -> list:
        """What a zone's entry labels: the object of that id, or (labels
        written by name) every object of that name."""
        if entry in self._by_id and self._by_id[entry][0] in kinds:
            return [self._by_id[entry][1]]
        return [obj for kind in kinds for obj in self._by_name.get(kind, {}).get(entry, [])]

    @classmethod
    def for_connector(cls, connector, *, refresh: bool = False) -> InventoryIndex:
        return cls(get_inventory(connector, refresh=refresh), list(Zone.objects.filter(connector=connector)))

    # -- look-ups ---------------------------------------------------------

    def objects(self, kind: str) -> list:
        return self._collections[kind]

    def get(self, object_id: str | None, kinds: tuple[str, ...] | None = None):
        """The object with this id (of one of `kinds`), or None."""
        found = self._by_id.get(object_id or "")
        if found is None or (kinds is not None and found[0] not in kinds):
            return None
        return found[1]

    def kind_of(self, object_id: str) -> str | None:
        found = self._by_id.get(object_id)
        return found[0] if found else None

    def named(self, kind: str, name: str) -> list:
        return list(self._by_name.get(kind, {}).get(name, []))

    def search(self, kinds: tuple[str, ...], query: str, *, limit: int) -> tuple[list[tuple[str, object]], bool]:
        """Up to `limit` (kind, object) of `kinds` whose name or path contains
        `query` (any case), best first (see search_rank); and whether more match."""
        needle = query.lower()
        found = [
            (kind, obj)
            for kind in kinds
            for obj in self._collections[kind]
            if needle in obj.name.lower() or needle in obj.path.lower()
        ]
        found.sort(key=lambda pair: search_rank(needle, pair[1].name, pair[1].path))
        return found[:limit], len(found) > limit

    def resolve(self, kinds: tuple[str, ...], value) -> tuple[str, object]:
        """(kind, object) for `value`, or Unresolved saying why not."""
        words = " or ".join(KIND_WORDS[k] for k in kinds)
        value = str(value).strip()
        exact = self._by_id.get(value)
        if exact is not None and exact[0] in kinds:
            return exact  # an id as the hypervisor gave it (some ids, e.g. vcsim's datastores, are not of moid form)
        if looks_like_moid(value):
            found = self._by_id.get(value)
            if found is None or found[0] not in kinds:
                raise Unresolved(f"No {words} has the id {value}.")
            return found
        if value.startswith("/"):
            found = self._by_path.get(value)
            if found is None or found[0] not in kinds:
                raise Unresolved(f"No {words} at {value}.")
            return found
        candidates = [(kind, obj) for kind in kinds for obj in self._by_name.get(kind, {}).get(value, [])]
        if not candidates:
            raise Unresolved(f"No {words} named {value!r}.")
        if len(candidates) > 1:
            listed = "; ".join(f"{obj.id} ({KIND_WORDS[kind]} {obj.path})" for kind, obj in candidates)
            raise Unresolved(
                f"{len(candidates)} objects are named {value!r}: {listed}. Name one by its id or its path."
            )
        return candidates[0]

    def resolve_field(self, errors: dict, field: str, kinds: tuple[str, ...], value):
        """resolve(), with a refusal added to `errors[field]`; None then."""
        try:
            return self.resolve(kinds, value)
        except Unresolved as exc:
            errors.setdefault(field, []).append(str(exc))
            return None

    @staticmethod
    def ref(kind: str, obj) -> dict:
        """What a ticket stores of an object: its identity and where it was."""
        ref = {"type": kind, "id": obj.id, "name": obj.name, "path": obj.path}
        if kind in ("vm", "template"):
            ref["instance_uuid"] = obj.instance_uuid
        return ref

    # -- zones ------------------------------------------------------------

    def label_of(self, object_id: str | None) -> ZoneLabel:
        return self._labels.get(object_id or "", UNTRUSTED)

    def host_zone(self, host_id: str | None) -> ZoneLabel:
        """A host's own label, else its cluster's; unlabelled is untrusted."""
        if host_id in self._labels:
            return self._labels[host_id]
        host = self.get(host_id, ("host",))
        return self.label_of(host.cluster_id) if host is not None else UNTRUSTED

    def cluster_zone(self, cluster_id: str) -> ZoneLabel:
        return self.label_of(cluster_id)

    def datastore_zone(self, datastore_id: str | None) -> ZoneLabel:
        """A datastore's own label, else its datastore cluster's."""
        if datastore_id in self._labels:
            return self._labels[datastore_id]
        datastore = self.get(datastore_id, ("datastore",))
        return self.label_of(datastore.datastore_cluster_id) if datastore is not None else UNTRUSTED

    def network_zone(self, network_id: str | None) -> ZoneLabel:
        return self.label_of(network_id)

    def vm_zone(self, vm) -> ZoneLabel:
        return self.host_zone(vm.host_id) if vm.host_id else UNTRUSTED

    def placement_zone(self, kind: str, obj) -> ZoneLabel:
        return self.host_zone(obj.id) if kind == "host" else self.cluster_zone(obj.id)

    def entity_zone(self, kind: str, obj) -> ZoneLabel:
        """The zone a permission on this object reaches: an object's own, and
        for a container the most trusted zone of anything beneath it."""
        if kind in ("vm", "template"):
            return self.vm_zone(obj)
        if kind == "host":
            return self.host_zone(obj.id)
        if kind == "datastore":
            return self.datastore_zone(obj.id)
        if kind == "network":
            return self.network_zone(obj.id)
        return _most_trusted(self.zones_beneath(kind, obj))

    def zones_beneath(self, kind: str, obj) -> list[ZoneLabel]:
        """The zones of a container and of everything beneath it."""
        labels = [self.label_of(obj.id)]
        if kind == "cluster":
            hosts = [h for h in self.inventory.hosts if h.cluster_id == obj.id]
        elif kind == "resource_pool":
            prefix = obj.path.rstrip("/") + "/"
            pools = {obj.id} | {p.id for p in self.inventory.resource_pools if p.path.startswith(prefix)}
            hosts = [h for h in self.inventory.hosts if h.id in obj.host_ids]
            labels.append(self.label_of(obj.cluster_id))
            labels += [self.vm_zone(vm) for vm in self.inventory.vms if vm.resource_pool_id in pools]
        else:  # folders, datacenters, the root: everything whose path lies beneath
            prefix = "/" if kind == "root" else obj.path.rstrip("/") + "/"
            hosts = [h for h in self.inventory.hosts if h.path.startswith(prefix)]
            labels += [self.vm_zone(vm) for vm in self.inventory.vms if vm.path.startswith(prefix)]
            labels += [self.datastore_zone(d.id) for d in self.inventory.datastores if d.path.startswith(prefix)]
            labels += [self.label_of(n.id) for n in self.inventory.networks if n.path.startswith(prefix)]
            labels += [self.label_of(c.id) for c in self.inventory.clusters if c.path.startswith(prefix)]
        labels += [self.host_zone(h.id) for h in hosts]
        if kind == "cluster":
            ids = {h.id for h in hosts}
            labels += [self.vm_zone(vm) for vm in self.inventory.vms if vm.host_id in ids]
        return labels

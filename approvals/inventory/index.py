"""One connector's inventory indexed in memory: every object by managed-object
id, by inventory path and by name. The worker's re-check reads the ticket's
own objects live and indexes them here; pages and submission use the
inventory table instead (stored.py). Both follow the rules of rules.py."""

from __future__ import annotations

from collections.abc import Iterable

from approvals.inventory.rules import (  # noqa: F401 - the rules' names, where callers have found them
    KIND_WORDS,
    UNTRUSTED,
    IndexRules,
    Unresolved,
    ZoneLabel,
    looks_like_moid,
    matches,
    search_rank,
)
from connectors.base import Folder, Inventory


class InventoryIndex(IndexRules):
    """Look-ups by id, path and name over an Inventory; zones of hosts,
    clusters, datastores, networks, VMs and containers."""

    def __init__(self, inventory: Inventory, zones):
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
        self._label(zones)

    # -- look-ups over the lists ----------------------------------------------

    def _find(self, object_id):
        return self._by_id.get(object_id)

    def _at_path(self, path):
        return self._by_path.get(path)

    def _with_name(self, kinds, name):
        return [(kind, obj) for kind in kinds for obj in self._by_name.get(kind, {}).get(name, [])]

    def _prefetch(self, entries):
        pass  # everything is in memory already

    def objects(self, kind: str) -> list:
        return self._collections[kind]

    def search(self, kinds: tuple[str, ...], query: str, *, limit: int) -> tuple[list[tuple[str, object]], bool]:
        needle = query.lower()
        found = [(kind, obj) for kind in kinds for obj in self._collections[kind] if matches(query, obj)]
        found.sort(key=lambda pair: search_rank(needle, pair[1].name, pair[1].path))
        return found[:limit], len(found) > limit

    def has_instance_uuid(self, instance_uuid: str) -> bool:
        return any(vm.instance_uuid == instance_uuid for vm in self.inventory.vms)

    def _hosts(self, *, cluster_id=None, ids: Iterable[str] = (), prefix=None) -> list:
        hosts = self.inventory.hosts
        if cluster_id is not None:
            return [h for h in hosts if h.cluster_id == cluster_id]
        if prefix is not None:
            return [h for h in hosts if h.path.startswith(prefix)]
        wanted = set(ids)
        return [h for h in hosts if h.id in wanted]

    def _beneath(self, kind: str, prefix: str) -> list:
        return [obj for obj in self._collections[kind] if obj.path.startswith(prefix)]

    def _vm_host_ids(self, *, pool_ids: Iterable[str] = (), prefix=None) -> set[str]:
        if prefix is not None:
            return {vm.host_id or "" for vm in self.inventory.vms if vm.path.startswith(prefix)}
        pools = set(pool_ids)
        return {vm.host_id or "" for vm in self.inventory.vms if vm.resource_pool_id in pools}

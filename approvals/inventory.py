"""The connector's inventory as the portal sees it: cached in Redis, refreshed
periodically and on demand, and indexed with the zones portal admins set."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.cache import cache

from approvals.errors import InventoryUnavailable
from approvals.models import Zone
from connectors.base import ConnectorError, Inventory
from connectors.registry import connector_for

CACHE_SECONDS = 300


def _cache_key(connector_id: int) -> str:
    """The key for the current generation of this connector's inventory. A
    change the portal makes bumps the generation, so a read that started
    before the change can never be cached as the newest."""
    generation = cache.get_or_set(f"inventory-generation:{connector_id}", 0, timeout=None)
    return f"inventory:{connector_id}:{generation}"


def fetch_inventory(connector) -> Inventory:
    """Read the inventory live and refresh the cache."""
    key = _cache_key(connector.pk)  # before reading: see _cache_key
    try:
        inventory = connector_for(connector.kind, connector.connection_config()).inventory()
    except ConnectorError as exc:
        raise InventoryUnavailable(f"cannot read the inventory of {connector.name}: {exc}") from exc
    cache.set(key, inventory, CACHE_SECONDS)
    return inventory


def get_inventory(connector, *, refresh: bool = False) -> Inventory:
    if not refresh:
        cached = cache.get(_cache_key(connector.pk))
        if cached is not None:
            return cached
    return fetch_inventory(connector)


def forget_inventory(connector_id: int) -> None:
    """The hypervisor changed: the cached inventory is stale."""
    key = f"inventory-generation:{connector_id}"
    cache.add(key, 0, timeout=None)
    cache.incr(key)


@dataclass(frozen=True)
class ZoneLabel:
    name: str
    trust_level: int

    @property
    def label(self) -> str:
        return self.name or "untrusted"


UNTRUSTED = ZoneLabel("", -1)


class InventoryIndex:
    """Look-ups by name or managed object id, and the zone of each object."""

    def __init__(self, inventory: Inventory, zones: list[Zone]):
        self.inventory = inventory
        self._by_kind = {
            "cluster": self._index(inventory.clusters),
            "host": self._index(inventory.hosts),
            "datastore": self._index(inventory.datastores),
            "network": self._index(inventory.networks),
            "folder": self._index(inventory.folders),
            "vm": self._index([vm for vm in inventory.vms if not vm.is_template]),
            "template": self._index([vm for vm in inventory.vms if vm.is_template]),
            "role": {role.name: role for role in inventory.roles},
        }
        self._host_zone: dict[str, ZoneLabel] = {}
        self._cluster_zone: dict[str, ZoneLabel] = {}
        self._network_zone: dict[str, ZoneLabel] = {}
        for zone in zones:
            label = ZoneLabel(zone.name, zone.trust_level)
            for name in zone.clusters:
                self._cluster_zone[name] = label
            for name in zone.hosts:
                self._host_zone[name] = label
            for name in zone.networks:
                self._network_zone[name] = label

    @staticmethod
    def _index(objects) -> dict:
        index = {}
        for obj in objects:
            index[obj.id] = obj
            index.setdefault(obj.name, obj)
        return index

    @classmethod
    def for_connector(cls, connector, *, refresh: bool = False) -> InventoryIndex:
        return cls(get_inventory(connector, refresh=refresh), list(Zone.objects.filter(connector=connector)))

    def find(self, kind: str, name_or_id: str):
        """The object, or None."""
        return self._by_kind[kind].get(name_or_id)

    def find_entity(self, name_or_id: str):
        """A permission target: VM, host, cluster or folder. Returns (kind, object) or (None, None)."""
        for kind in ("vm", "host", "cluster", "folder", "template"):
            obj = self.find(kind, name_or_id)
            if obj is not None:
                return kind, obj
        return None, None

    def host_zone(self, host_name: str) -> ZoneLabel:
        if host_name in self._host_zone:
            return self._host_zone[host_name]
        host = self.find("host", host_name)
        if host is not None and host.cluster:
            return self._cluster_zone.get(host.cluster, UNTRUSTED)
        return UNTRUSTED

    def cluster_zone(self, cluster_name: str) -> ZoneLabel:
        return self._cluster_zone.get(cluster_name, UNTRUSTED)

    def network_zone(self, network_name: str) -> ZoneLabel:
        return self._network_zone.get(network_name, UNTRUSTED)

    def vm_zone(self, vm) -> ZoneLabel:
        return self.host_zone(vm.host) if vm.host else UNTRUSTED

    def entity_zone(self, kind: str, obj) -> ZoneLabel:
        if kind in ("vm", "template"):
            return self.vm_zone(obj)
        if kind == "host":
            return self.host_zone(obj.name)
        if kind == "cluster":
            return self.cluster_zone(obj.name)
        return UNTRUSTED

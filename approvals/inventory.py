"""The connector's inventory as the portal sees it: cached in Redis, refreshed
periodically and on demand, and indexed with the zones portal admins set.

Only a process that can open connector passwords (the worker, the shell)
reads a hypervisor. The web asks a worker instead (approvals.tasks.
read_inventory) and waits for the inventory to appear in the cache, with a
per-request answer saying whether the read worked."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from kombu.exceptions import OperationalError

from approvals.errors import InventoryUnavailable
from approvals.models import Zone
from connectors import credentials
from connectors.base import ConnectorError, Inventory
from connectors.registry import connector_for

logger = logging.getLogger(__name__)

CACHE_SECONDS = 300
# How long a worker's answer to one request is kept (the asker deletes it).
ANSWER_SECONDS = 120


def _cache_key(connector_id: int) -> str:
    """The key for the current generation of this connector's inventory. A
    change the portal makes bumps the generation, so a read that started
    before the change can never be cached as the newest."""
    generation = cache.get_or_set(f"inventory-generation:{connector_id}", 0, timeout=None)
    return f"inventory:{connector_id}:{generation}"


def _answer_key(nonce: str) -> str:
    return f"inventory-answer:{nonce}"


def _read_and_cache(connector) -> tuple[str, Inventory]:
    """Read the hypervisor here (worker, shell) and cache what it holds."""
    key = _cache_key(connector.pk)  # before reading: see _cache_key
    try:
        inventory = connector_for(connector.kind, connector.connection_config()).inventory()
    except ConnectorError as exc:
        raise InventoryUnavailable(f"cannot read the inventory of {connector.name}: {exc}") from exc
    except credentials.CredentialsUnreadable as exc:
        raise InventoryUnavailable(f"cannot read the inventory of {connector.name}: {exc}") from exc
    cache.set(key, inventory, CACHE_SECONDS)
    return key, inventory


def _inventory_from_worker(connector) -> Inventory:
    """Ask a worker to read the inventory and wait for its answer."""
    from approvals.tasks import read_inventory  # the tasks import services, which import this module

    wait = float(settings.INVENTORY_WAIT_SECONDS)
    nonce = secrets.token_urlsafe(18)
    try:
        read_inventory.apply_async(args=(connector.pk, nonce), expires=wait)
    except OperationalError as exc:
        raise InventoryUnavailable(f"cannot ask a worker for the inventory of {connector.name}: {exc}") from exc
    deadline = time.monotonic() + wait
    pause = 0.02
    while (answer := cache.get(_answer_key(nonce))) is None:
        if time.monotonic() >= deadline:
            raise InventoryUnavailable(
                f"no worker read the inventory of {connector.name} within {wait:g} seconds; is a worker running?"
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.25)
    cache.delete(_answer_key(nonce))
    if not answer.get("ok"):
        raise InventoryUnavailable(
            answer.get("error") or f"the worker could not read the inventory of {connector.name}"
        )
    inventory = cache.get(answer["key"])
    if inventory is None:
        raise InventoryUnavailable(f"the inventory of {connector.name} left the cache before it could be read")
    return inventory


def fetch_inventory(connector) -> Inventory:
    """Read the inventory live and refresh the cache: here where this process
    can open the connector's password, else through a worker (waiting at
    most INVENTORY_WAIT_SECONDS). InventoryUnavailable, in words, otherwise."""
    if credentials.can_unseal():
        return _read_and_cache(connector)[1]
    return _inventory_from_worker(connector)


def inventory_answer(*, connector_id: int, nonce: str, actor_name: str) -> str:
    """Worker side of fetch_inventory: read, cache, and answer the request
    named by `nonce` with ok or the error in words. An endpoint that is not
    the pinned hypervisor is recorded as such."""
    from approvals.services.connectors import connector_identity_refused, identity_mismatch_in
    from connectors.models import Connector

    connector = Connector.objects.filter(pk=connector_id).first()
    if connector is None:
        answer = {"ok": False, "error": f"connector {connector_id} does not exist"}
    else:
        try:
            key, _ = _read_and_cache(connector)
            answer = {"ok": True, "key": key}
        except InventoryUnavailable as exc:
            mismatch = identity_mismatch_in(exc)
            if mismatch is not None:
                connector_identity_refused(connector=connector, error=mismatch, actor_name=actor_name)
            logger.warning("%s", exc)
            answer = {"ok": False, "error": str(exc)}
    cache.set(_answer_key(nonce), answer, ANSWER_SECONDS)
    return "ok" if answer["ok"] else "failed"


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

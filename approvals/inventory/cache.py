"""The connector's inventory, cached in Redis, refreshed periodically and on
demand.

Only a process that can open connector passwords (the worker, the shell)
reads a hypervisor. The web asks a worker instead (approvals.tasks.
read_inventory) and waits for the inventory to appear in the cache, with a
per-request answer saying whether the read worked."""

from __future__ import annotations

import logging
import secrets
import time

from django.conf import settings
from django.core.cache import cache
from kombu.exceptions import OperationalError

from approvals.errors import InventoryUnavailable
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

"""Filling the inventory table when no sync has (a fresh portal, tests, an
asked-for refresh), and writing what a finished ticket changed.

Only a process that can open connector passwords (the worker, the shell)
reads a hypervisor. The web asks a worker instead (approvals.tasks.
read_inventory): the worker reads everything, stores it in the table and
answers the request under its nonce with ok or the error in words; the
answer is a few bytes, the inventory itself only ever goes to the table."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from kombu.exceptions import OperationalError

from approvals.errors import InventoryUnavailable
from approvals.inventory.freshness import freshness_of
from connectors import credentials
from connectors.base import ConnectorError, Inventory
from connectors.inventory_store import objects_of, store_read, store_snapshot
from connectors.models import InventoryState
from connectors.registry import connector_for

logger = logging.getLogger(__name__)

# How long a worker's answer to one request is kept (the asker deletes it).
ANSWER_SECONDS = 120
# A snapshot that wrote this many rows is worth new planner statistics.
ANALYZE_ROWS = 1000


def _answer_key(nonce: str) -> str:
    return f"inventory-answer:{nonce}"


def _read_and_store(connector) -> None:
    """Read the hypervisor here (worker, shell) and store what it holds."""
    try:
        inventory = connector_for(connector.kind, connector.connection_config()).inventory()
    except (ConnectorError, credentials.CredentialsUnreadable) as exc:
        raise InventoryUnavailable(f"cannot read the inventory of {connector.name}: {exc}") from exc
    store_full_read(connector=connector, inventory=inventory)


def store_full_read(*, connector, inventory: Inventory) -> None:
    """Make the table equal to a full read made outside the sync (the sync's
    own position is kept: this read does not follow its updates)."""
    version = InventoryState.objects.filter(connector=connector).values_list("version", flat=True).first() or ""
    stored = store_snapshot(connector=connector, inventory=inventory, version=version)
    if connection.vendor == "postgresql" and len(stored.created) + len(stored.updated) >= ANALYZE_ROWS:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE connectors_inventoryobject")


def _fill_through_worker(connector) -> None:
    """Ask a worker to read and store the inventory, and wait for its answer."""
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


def fill_inventory(connector) -> None:
    """Read the whole inventory live into the table: here where this process
    can open the connector's password, else through a worker (waiting at
    most INVENTORY_WAIT_SECONDS). InventoryUnavailable, in words, otherwise."""
    if credentials.can_unseal():
        _read_and_store(connector)
    else:
        _fill_through_worker(connector)


def inventory_answer(*, connector_id: int, nonce: str, actor_name: str) -> str:
    """Worker side of fill_inventory: read, store, and answer the request
    named by `nonce` with ok or the error in words. An endpoint that is not
    the pinned hypervisor is recorded as such."""
    from approvals.services.connectors import connector_identity_refused, identity_mismatch_in
    from connectors.models import Connector

    connector = Connector.objects.filter(pk=connector_id).first()
    if connector is None:
        answer = {"ok": False, "error": f"connector {connector_id} does not exist"}
    else:
        try:
            _read_and_store(connector)
            answer = {"ok": True}
        except InventoryUnavailable as exc:
            mismatch = identity_mismatch_in(exc)
            if mismatch is not None:
                connector_identity_refused(connector=connector, error=mismatch, actor_name=actor_name)
            logger.warning("%s", exc)
            answer = {"ok": False, "error": str(exc)}
    cache.set(_answer_key(nonce), answer, ANSWER_SECONDS)
    return "ok" if answer["ok"] else "failed"


def store_after_change(*, connector, backend, objects: Mapping[str, str], read: Inventory | None = None) -> None:
    """After a change the portal made: read `objects` ({id: kind}) live and
    write them, with what came along (ancestors, a container's contents),
    into the table, so pages show the result before any sync reports it. A
    VM asked for and no longer there is removed. A failed read is only
    logged: the sync, or the next full read, catches up. `read`: what the
    operation itself read back after the change; when it holds every object
    asked for, it stands for the read.

    Nothing is written while a sync follows the hypervisor: it reports the
    change within seconds itself, and it judges what it sees against the
    table, so a write here could hide from drift a change someone made
    beside the ticket's to an object read along."""
    state = InventoryState.objects.filter(connector=connector).first()
    if state is not None and state.holder and not freshness_of(state).stale:
        return
    inventory = read
    seen = {obj.id for obj in objects_of(read)} if read is not None else set()
    if inventory is None or not set(objects) <= seen:
        try:
            # Rows only: the role list (most of such a read) is not stored here.
            inventory = backend.read_objects(dict(objects), roles=False)
        except ConnectorError as exc:
            logger.warning("the inventory of %s after a change was not re-read: %s", connector.name, exc)
            return
        seen = {obj.id for obj in objects_of(inventory)}
    gone = [moid for moid, kind in objects.items() if kind in ("vm", "template") and moid not in seen]
    store_read(connector=connector, inventory=inventory, removed=gone, version=state.version if state else "")


def inventory_outdated(connector_id: int) -> None:
    """The stored inventory no longer describes the hypervisor (the connector
    now points elsewhere, or it changed behind the portal's back with no sync
    following it): it is filled anew before it is used again."""
    InventoryState.objects.filter(connector_id=connector_id).update(full_read_at=None)

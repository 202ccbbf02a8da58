"""The inventory sync of one connector: takes the connector's lock (or stands
by until the holder dies), reads the inventory once into the table, then
follows the hypervisor's updates, permissions and events, writing the table
in place and raising a finding for each change no ticket explains, in the
same transaction. A lost connection is retried with backoff, the error in
words on the connector's sync state until it is back.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from audit.live import (
    PERMISSION_EVENTS,
    inventory_changes,
    permission_changes,
    permission_rows,
    raise_for_changes,
)
from connectors.base import ConnectorError, Inventory, TransientConnectorError
from connectors.feed import Batch, Event, FeedLost, InventoryFeed
from connectors.inventory_store import BATCH, objects_of, state_update, store_objects
from connectors.models import Connector, InventoryObject, InventoryState
from connectors.sync_lock import SyncLock
from connectors.vsphere_sync import VSphereFeed

log = logging.getLogger(__name__)

FEEDS: dict[str, type[InventoryFeed]] = {"vsphere": VSphereFeed}
# How long events are kept to name who made a change seen a moment later.
EVENT_MEMORY_SECONDS = 300
STANDBY_POLL_SECONDS = 1.0


def release_memory() -> None:
    """Give the first read's garbage back to the system: parsing the whole
    estate leaves most of the process's peak in freed blocks that glibc
    keeps unless asked (measured in bench/README.md)."""
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)


def rss_mb() -> float:
    """This process's resident memory (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (musl, macOS): nothing to trim
        return None


_libc = _glibc()


class LockLost(Exception):
    """Another sync may be active now: stop writing."""


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def error_words(exc: BaseException) -> str:
    if isinstance(exc, TransientConnectorError):
        return f"hypervisor unreachable: {exc}"
    return f"hypervisor error: {exc}"


class ConnectorSync:
    def __init__(self, connector: Connector, *, feed_factory: Callable[..., InventoryFeed] | None = None):
        self.connector = connector
        self.feed_factory = feed_factory or FEEDS[connector.kind]
        self.lock = SyncLock(connector.name)
        self.events: list[Event] = []

    # -- the process ---------------------------------------------------------

    def run(self, stop: threading.Event, *, once: bool = False) -> None:
        """Until `stop` is set: wait for the lock, then follow; `once`: one
        full read, then return."""
        while not stop.is_set():
            if not self.lock.try_acquire():
                stop.wait(STANDBY_POLL_SECONDS)
                continue
            log.info("sync %s: active as %s", self.connector.name, holder_name())
            try:
                state_update(connector=self.connector, holder=holder_name())
                self._follow_with_retries(stop, once=once)
            except LockLost:
                log.warning("sync %s: lost the lock, standing by", self.connector.name)
            finally:
                self.lock.release()
            if once:
                return

    def _follow_with_retries(self, stop: threading.Event, *, once: bool) -> None:
        backoff = 1.0
        while not stop.is_set():
            feed = self.feed_factory(self.connector.connection_config())
            try:
                self.follow(feed, stop, once=once)
                return
            except FeedLost as exc:
                log.info("sync %s: %s; reading everything again", self.connector.name, exc)
            except ConnectorError as exc:
                log.warning("sync %s: %s", self.connector.name, exc)
                state_update(connector=self.connector, error=error_words(exc))
                if once:
                    raise
                stop.wait(backoff)
                backoff = min(backoff * 2, settings.SYNC_BACKOFF_MAX_SECONDS)
            finally:
                feed.close()
                close_old_connections()

    # -- following -------------------------------------------------------------

    def follow(self, feed: InventoryFeed, stop: threading.Event, *, once: bool = False) -> None:
        with transaction.atomic():
            self._read(feed)
        release_memory()
        log.info("sync %s: following; RSS %.0f MB", self.connector.name, rss_mb())
        self._permissions(feed)
        if once:
            return
        permissions_due = time.monotonic() + settings.SYNC_PERMISSIONS_SECONDS
        while not stop.is_set():
            if not self.lock.still_held():
                raise LockLost
            batch = feed.wait(settings.SYNC_HEARTBEAT_SECONDS)
            arrived = time.monotonic()
            state = InventoryState.objects.get(connector=self.connector)
            fresh = self._events(feed, state.event_key)
            with transaction.atomic():
                if batch is not None:
                    self._store(batch, events_seconds=time.monotonic() - arrived)
                state_update(connector=self.connector, synced_at=timezone.now(), error="")
            if time.monotonic() >= permissions_due or any(e.type in PERMISSION_EVENTS for e in fresh):
                self._permissions(feed)
                permissions_due = time.monotonic() + settings.SYNC_PERMISSIONS_SECONDS

    def _read(self, feed: InventoryFeed) -> None:
        """The full read, into the table page by page; when the table held an
        earlier read, each change since then judged as it is stored."""
        started = time.monotonic()
        state = InventoryState.objects.filter(connector=self.connector).first()
        judge = InventoryObject.objects.filter(connector=self.connector).exists()
        seen: set[str] = set()
        head = Inventory()  # the first part: the containers, the root folder and the roles

        def take(part: Inventory, version: str) -> None:
            nonlocal head
            if not seen:  # logged in by now: the events that name who made what the read finds
                self._events(feed, state.event_key if state else None)
                head = part
            diff = store_objects(connector=self.connector, inventory=part, version=version)
            seen.update(o.id for o in objects_of(part))
            if judge:
                raise_for_changes(
                    connector=self.connector, changes=inventory_changes(diff.before, diff.after), events=self.events
                )

        version = feed.open(take)
        rss_read = rss_mb()
        rows = InventoryObject.objects.filter(connector=self.connector).values_list("moid", flat=True)
        diff = store_objects(
            connector=self.connector,
            inventory=Inventory(root_folder_id=head.root_folder_id, roles=head.roles),
            removed=[m for m in rows.iterator(chunk_size=BATCH) if m not in seen],
            version=version,
            full_read=True,
        )
        if judge:
            raise_for_changes(
                connector=self.connector, changes=inventory_changes(diff.before, diff.after), events=self.events
            )
        state_update(connector=self.connector, error="")
        log.info(
            "sync %s: read and stored %d objects in %.1f s (RSS %.0f MB)",
            self.connector.name,
            len(seen),
            time.monotonic() - started,
            rss_read,
        )

    def _store(self, batch: Batch, *, events_seconds: float) -> None:
        """One batch into the table; each object it changed compared with its
        row, and a finding for each change no ticket explains."""
        started = time.monotonic()
        diff = store_objects(
            connector=self.connector,
            inventory=batch.inventory,
            removed=batch.removed,
            version=batch.version,
        )
        changes = inventory_changes(diff.before, diff.after)
        raise_for_changes(connector=self.connector, changes=changes, events=self.events)
        log.info(
            "sync %s: batch of %d objects, %d changes; events read in %.3f s, stored in %.3f s",
            self.connector.name,
            len(batch.inventory.vms) + len(batch.removed),
            len(changes),
            events_seconds,
            time.monotonic() - started,
        )

    def _events(self, feed: InventoryFeed, after: int | None) -> list[Event]:
        """New events into memory; the newest key is kept on the state, so a
        restarted sync goes on from there."""
        fresh = feed.events(after)
        if after is None:  # the first run: events before it are history
            fresh_key = fresh[-1].key if fresh else 0
            state_update(connector=self.connector, event_key=fresh_key)
            return []
        if fresh:
            state_update(connector=self.connector, event_key=fresh[-1].key)
        horizon = timezone.now().timestamp() - EVENT_MEMORY_SECONDS
        self.events = [e for e in self.events if e.created.timestamp() >= horizon] + fresh
        return fresh

    def _permissions(self, feed: InventoryFeed) -> None:
        rows = permission_rows(feed.permissions())
        with transaction.atomic():
            state = InventoryState.objects.select_for_update().get(connector=self.connector)
            if state.permissions_read_at is not None:
                raise_for_changes(
                    connector=self.connector, changes=permission_changes(state.permissions, rows), events=self.events
                )
            state_update(connector=self.connector, permissions=rows, permissions_read_at=timezone.now())


# How often the sync of every connector looks for newly registered ones.
DISCOVER_SECONDS = 10


def run_syncs(stop: threading.Event, *, name: str | None = None) -> None:
    """One sync per connector (or only `name`'s), each in a thread of its
    own; connectors registered later are picked up within DISCOVER_SECONDS."""
    threads: dict[int, threading.Thread] = {}
    while not stop.is_set():
        connectors = Connector.objects.order_by("name")
        for connector in connectors.filter(name=name) if name else connectors:
            if connector.pk not in threads:
                thread = threading.Thread(
                    target=_run_one, args=(connector, stop, False), name=f"sync-{connector.name}", daemon=True
                )
                threads[connector.pk] = thread
                thread.start()
        close_old_connections()
        stop.wait(DISCOVER_SECONDS)
    for thread in threads.values():
        thread.join(10)


def _run_one(connector: Connector, stop: threading.Event, once: bool) -> None:
    """One connector's sync; anything unexpected (the database gone a while)
    is logged and the sync starts over after a pause, so one connector's
    trouble neither ends the process nor stops the others."""
    pause = 1.0
    while not stop.is_set():
        try:
            ConnectorSync(connector).run(stop, once=once)
            return
        except Exception:
            log.exception("sync %s failed; starting over in %.0f s", connector.name, pause)
            if once:
                return
            stop.wait(pause)
            pause = min(pause * 2, settings.SYNC_BACKOFF_MAX_SECONDS)
        finally:
            close_old_connections()

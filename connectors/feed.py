"""The interface a backend offers the inventory sync: one full read, then the
inventory as it changes, the permissions, and the hypervisor's events.

Like connectors.base it speaks plain frozen dataclasses and the errors
defined there; the Django side (table, lock, findings) lives elsewhere.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from connectors.base import ConnectionConfig, ConnectorError, Inventory, Permission


class FeedLost(ConnectorError):
    """The hypervisor no longer knows the update version: read everything again."""


@dataclass(frozen=True)
class Batch:
    """One batch of followed updates: `inventory` holds the objects the batch
    may have changed, as they are now, `removed` the ids of those that went."""

    inventory: Inventory
    version: str
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Event:
    """One event from the hypervisor's event history."""

    key: int
    type: str  # "VmClonedEvent", "PermissionAddedEvent", …
    created: datetime
    user: str  # the user name the hypervisor records, "" when none
    object_id: str  # the VM's (or the permission's entity's) managed object id, "" when none
    principal: str = ""  # permission events
    role: str = ""
    message: str = ""


class InventoryFeed(abc.ABC):
    """Follows one hypervisor's inventory. Not thread-safe; one per sync."""

    def __init__(self, config: ConnectionConfig):
        self.config = config

    @abc.abstractmethod
    def open(self, take: Callable[[Inventory, str], None]) -> str:
        """Log in, read everything once and start following: `take` is given
        the inventory in parts (the containers first, then VMs a page at a
        time, each with the update version so far), so no part of the
        estate's size is held at once; returns the update version. Raises
        TransientConnectorError, AuthenticationFailed, IdentityMismatch."""

    @abc.abstractmethod
    def wait(self, seconds: float) -> Batch | None:
        """The next batch of updates, or None when nothing changed within
        `seconds`. Its cost follows the batch, not the estate. Raises FeedLost
        when the version is lost or a change reaches other objects (a folder
        renamed moves the paths beneath it: read everything again),
        TransientConnectorError when the connection is lost."""

    @abc.abstractmethod
    def permissions(self) -> tuple[Permission, ...]:
        """Every permission, in one call (roles are re-read with it)."""

    @abc.abstractmethod
    def events(self, after: int | None) -> list[Event]:
        """Events with a key above `after`, oldest first (None: none yet,
        only the newest key matters); at most one page of the history."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Log out; the default does nothing."""

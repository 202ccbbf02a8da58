"""How current the stored inventory is, as pages and the API say it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone


@dataclass(frozen=True)
class Freshness:
    """`as_of`: when the table was last confirmed current (the sync's
    heartbeat, or the last full read); `error`: what is wrong, in words."""

    as_of: datetime | None
    full_read_at: datetime | None
    error: str
    stale: bool

    @property
    def warning(self) -> str:
        """ "" when all is well, else what a reader must know, in words."""
        if self.error:
            return (
                f"The hypervisor cannot be read: {self.error}. Choices may be out of date; the worker re-checks live."
            )
        if self.as_of is None:
            return "The inventory has not been read yet."
        if self.stale:
            return (
                "The inventory sync is behind: nothing newer than "
                f"{timezone.localtime(self.as_of):%H:%M:%S} has been read. The worker re-checks live."
            )
        return ""

    def as_data(self) -> dict:
        return {
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "full_read_at": self.full_read_at.isoformat() if self.full_read_at else None,
            "stale": self.stale,
            "error": self.error,
            "warning": self.warning,
        }


def freshness_of(state) -> Freshness:
    """The freshness an InventoryState (None before any read) describes."""
    if state is None:
        return Freshness(as_of=None, full_read_at=None, error="", stale=True)
    as_of = max((t for t in (state.synced_at, state.full_read_at) if t is not None), default=None)
    behind = as_of is None or (timezone.now() - as_of).total_seconds() > settings.INVENTORY_STALE_SECONDS
    return Freshness(as_of=as_of, full_read_at=state.full_read_at, error=state.error, stale=behind or bool(state.error))


def connector_freshness(connector_id: int) -> Freshness:
    from connectors.models import InventoryState

    return freshness_of(InventoryState.objects.filter(connector_id=connector_id).first())

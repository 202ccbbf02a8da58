"""The connector's inventory as the portal sees it: stored in the inventory
table (kept current by the sync, filled on demand by fill.py), looked up with
SQL (stored.py) or, for the worker's live re-check, in memory (index.py),
with one set of resolve and zone rules (rules.py)."""

from approvals.inventory.fill import fill_inventory, inventory_answer, inventory_outdated, store_after_change
from approvals.inventory.freshness import Freshness, connector_freshness
from approvals.inventory.index import InventoryIndex
from approvals.inventory.rules import UNTRUSTED, IndexRules, ZoneLabel, looks_like_moid
from approvals.inventory.stored import StoredIndex

__all__ = [
    "UNTRUSTED",
    "Freshness",
    "IndexRules",
    "InventoryIndex",
    "StoredIndex",
    "ZoneLabel",
    "connector_freshness",
    "fill_inventory",
    "inventory_answer",
    "inventory_outdated",
    "looks_like_moid",
    "store_after_change",
]

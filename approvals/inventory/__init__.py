"""The connector's inventory as the portal sees it: read and cached
(cache.py), then indexed with the zones portal admins set (index.py), where
every object a ticket names is resolved to its identity."""

from approvals.inventory.cache import fetch_inventory, forget_inventory, get_inventory, inventory_answer
from approvals.inventory.index import UNTRUSTED, InventoryIndex, ZoneLabel, looks_like_moid

__all__ = [
    "UNTRUSTED",
    "InventoryIndex",
    "ZoneLabel",
    "fetch_inventory",
    "forget_inventory",
    "get_inventory",
    "inventory_answer",
    "looks_like_moid",
]

"""The errors approvals' services raise. They live in portal.errors, where
every app (audit too) imports them without reaching into approvals."""

from portal.errors import InvalidInput, InventoryUnavailable, StateConflict, describe_errors

__all__ = ["InvalidInput", "InventoryUnavailable", "StateConflict", "describe_errors"]

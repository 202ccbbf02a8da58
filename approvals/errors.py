"""Errors services raise, each mapped to one HTTP status by the API and to a
message by the pages. Validation errors are Django's ValidationError (400) and
permission refusals Django's PermissionDenied (403)."""


class StateConflict(Exception):
    """The ticket is not in a state that allows this (HTTP 409)."""


class InventoryUnavailable(Exception):
    """The connector's inventory could not be read (HTTP 503)."""

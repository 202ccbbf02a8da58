"""Errors services raise (in every app), each mapped to one HTTP status by the API and to a
message by the pages. Permission refusals are Django's PermissionDenied (403)."""


class StateConflict(Exception):
    """The ticket is not in a state that allows this (HTTP 409)."""


class InventoryUnavailable(Exception):
    """The connector's inventory could not be read (HTTP 503)."""


class InvalidInput(Exception):
    """Bad input, with field errors that may nest ({"params": {"cpus": [...]}})
    (HTTP 400). Nothing was stored."""

    def __init__(self, errors: dict):
        self.errors = errors
        super().__init__(errors)


def describe_errors(errors: dict, prefix: str = "") -> str:
    """Field errors in one line of words: 'params.cpus: At most 8 CPUs by policy.'"""
    parts = []
    for field, value in errors.items():
        name = f"{prefix}{field}"
        if isinstance(value, dict):
            parts.append(describe_errors(value, f"{name}."))
        else:
            parts.append(f"{name}: {' '.join(map(str, value))}")
    return "; ".join(parts)

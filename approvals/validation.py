"""Submission checks, the same for every entry point and for the worker's
re-check: the parameters' shape, then the kind's own rules (one module per
kind in approvals.kinds), which resolve every object a ticket names to one
identity and judge the zones and the policy."""

from __future__ import annotations

from approvals.errors import InvalidInput
from approvals.inventory import IndexRules
from approvals.kinds import KINDS
from approvals.kinds.base import Checked, policy_for

__all__ = ["DERIVED_PARAMS", "Checked", "check_shape", "check_submission", "check_window", "policy_for"]

# Parameters the checks add; the worker's re-check starts from the rest.
DERIVED_PARAMS = (
    "objects",
    "source_host",
    "entity_type",
    "configuration",
    "before",
    "needs_power_off",
    "removed_nic_label",
    "snapshot_name",
)


def check_shape(kind: str, params) -> dict:
    if kind not in KINDS:
        raise InvalidInput({"kind": [f"Unknown kind {kind!r}; one of {', '.join(KINDS)}."]})
    if not isinstance(params, dict):
        raise InvalidInput({"params": ["Must be an object."]})
    serializer = KINDS[kind].params(data=params)
    if not serializer.is_valid():
        raise InvalidInput({"params": {field: [str(e) for e in errs] for field, errs in serializer.errors.items()}})
    return {k: v for k, v in serializer.validated_data.items() if v not in ("", None)}


def check_submission(*, kind: str, connector, params, index: IndexRules, recheck: bool = False) -> Checked:
    """All checks for a new ticket; `recheck` for the worker's second look
    before acting, which must not count the ticket itself as a clash. A kind
    the connector cannot carry out is refused in words."""
    shaped = check_shape(kind, params)
    missing = [op for op in KINDS[kind].operations if op not in connector_operations(connector)]
    if missing:
        raise InvalidInput(
            {
                "kind": [
                    f"The {connector.get_kind_display()} connector {connector.name} cannot do {kind} (no {', '.join(missing)})."
                ]
            }
        )
    return KINDS[kind].check(connector, index, shaped, recheck)


def connector_operations(connector) -> frozenset[str]:
    from connectors.registry import backend_class

    return backend_class(connector.kind).operations


def check_window(not_before, not_after, now) -> None:
    if not_before and not_after and not_after <= not_before:
        raise InvalidInput({"not_after": ["Must be after not_before."]})
    if not_after and not_after <= now:
        raise InvalidInput({"not_after": ["Must be in the future."]})

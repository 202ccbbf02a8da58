"""Standard changes: a policy may declare one narrowly scoped change of its
kind standard (Policy.standard_scope, set by configuration requests like
every other policy field). A ticket that fits is approved at submission by
the policy itself; the worker judges the fit again, against the policy as
an approved configuration request left it. Each kind says what its scope
holds and how a ticket falls outside it (Kind.standard_scope,
Kind.standard_misfits), so a kind added later brings its own.

vm_decommission has none on purpose: it destroys a VM and its disks, which
nothing undoes, and a standard change is approved by no person — it would
let one requester destroy VMs alone."""

from __future__ import annotations

from approvals.inventory import IndexRules
from approvals.kinds import KINDS
from approvals.kinds.base import Checked


def scope_errors(kind: str, scope) -> dict | list | None:
    """Why `scope` is not a standard-change scope for `kind`, as field
    errors, or None. An empty scope (no standard change) is always fine."""
    if scope in ({}, None):
        return None
    shape = KINDS[kind].standard_scope if kind in KINDS else None
    if shape is None:
        return [f"{kind} has no standard changes."]
    if not isinstance(scope, dict):
        return ["Must be an object."]
    serializer = shape(data=scope)
    if not serializer.is_valid():
        return {name: _messages(errors) for name, errors in serializer.errors.items()}
    unknown = sorted(set(scope) - set(serializer.fields))
    if unknown:
        return {name: ["Not a field of this kind's standard scope."] for name in unknown}
    return None


def _messages(errors) -> list[str]:
    """A field's errors as words; a list field's are by item ({index: [...]})."""
    if isinstance(errors, dict):
        return [f"item {int(i) + 1}: {m}" for i, item in sorted(errors.items()) for m in _messages(item)]
    return [str(e) for e in errors]


def clean_scope(kind: str, scope: dict) -> dict:
    """The scope as stored: validated values only (call scope_errors first)."""
    if not scope:
        return {}
    serializer = KINDS[kind].standard_scope(data=scope)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def scope_words(scope: dict) -> str:
    def words(value) -> str:
        return " or ".join(map(str, value)) if isinstance(value, list) else str(value)

    return ", ".join(f"{name.replace('_', ' ')} {words(value)}" for name, value in sorted(scope.items()))


def verdict(*, kind: str, checked: Checked, index: IndexRules) -> dict:
    """Whether the checked ticket is a standard change of its policy, and
    why (or why not) in words: {"standard": bool, "reasons": [...]}."""
    policy, scope = checked.policy, checked.policy.standard_scope or {}
    if policy.kind != kind:
        # A snapshot revert is approved under vm_reconfigure's policy; that
        # policy's standard change is for reconfigure tickets only.
        return {
            "standard": False,
            "reasons": [
                f"Approved under the {policy.kind} policy ({_where(policy)}), whose standard change is "
                f"for {policy.kind} tickets only."
            ],
        }
    misfits_of = KINDS[kind].standard_misfits
    if not scope or misfits_of is None:
        return {"standard": False, "reasons": [f"The {kind} policy ({_where(policy)}) declares no standard change."]}
    misfits = misfits_of(checked, index, scope)
    if checked.required_approvals > policy.required_approvals:
        misfits.append(f"the zone rules ask for {checked.required_approvals} approvals")
    if misfits:
        return {
            "standard": False,
            "reasons": [
                f"Outside the standard change of the {kind} policy ({scope_words(scope)}): {m}." for m in misfits
            ],
        }
    return {
        "standard": True,
        "reasons": [f"Fits the standard change of the {kind} policy ({_where(policy)}): {scope_words(scope)}."],
        "policy_id": policy.pk,
        "policy_digest": policy.digest(),
    }


def _where(policy) -> str:
    return f"zone {policy.zone.name}" if policy.zone_id else "any zone"

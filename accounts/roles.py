"""The portal's roles and who holds them. Roles are Django groups; every app
asks here (approvals.permissions and audit.rules build their rules on it)."""

from django.db import models


class Role(models.TextChoices):
    REQUESTER = "requester"
    APPROVER = "approver"
    AUDITOR = "auditor"
    PORTAL_ADMIN = "portal_admin"
    # May file an emergency ticket that runs at once and is reviewed afterwards.
    BREAK_GLASS = "break_glass"


def _groups(user) -> tuple[frozenset[int], frozenset[str]]:
    """The ids and names of this person's groups, read once per request."""
    cached = getattr(user, "_twokey_groups", None)
    if cached is None:
        pairs = list(user.groups.values_list("id", "name"))
        cached = (frozenset(pk for pk, _ in pairs), frozenset(name for _, name in pairs))
        user._twokey_groups = cached
    return cached


def role_names(user) -> frozenset[str]:
    if not user or not user.is_authenticated:
        return frozenset()
    return _groups(user)[1]


def group_ids(user) -> frozenset[int]:
    if not user or not user.is_authenticated:
        return frozenset()
    return _groups(user)[0]


def has_role(user, role: str) -> bool:
    return role in role_names(user)

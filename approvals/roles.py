"""The role groups and the Django permissions each carries (for the admin)."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from approvals.choices import Role

ADMIN_MODELS = {
    "connectors": ["connector"],
    "approvals": ["zone", "policy", "cataloguetemplate"],
    "auth": ["user", "group"],
}


def ensure_roles() -> dict[str, Group]:
    """Create the groups if missing and give portal admins their model
    permissions. Idempotent."""
    groups = {role.value: Group.objects.get_or_create(name=role.value)[0] for role in Role}
    admin_perms = Permission.objects.filter(
        content_type__app_label__in=ADMIN_MODELS,
        codename__regex=r"^view_",
    )
    wanted = [p for p in admin_perms if p.content_type.model in ADMIN_MODELS[p.content_type.app_label]]
    groups[Role.PORTAL_ADMIN].permissions.set(wanted)
    auditor_perms = Permission.objects.filter(
        codename__startswith="view_", content_type__app_label__in=["approvals", "audit"]
    )
    groups[Role.AUDITOR].permissions.set(auditor_perms)
    return groups


def create_user(
    *,
    username: str,
    password: str,
    roles: list[str],
    email: str = "",
    actor_name: str = "cli",
    details: dict | None = None,
):
    """A user made on the server's shell (bootstrap, adduser): the trust root
    that brings in the first portal admins. The role rules hold here too.
    Audited (`actor_name`: which command) with the roles granted, the entry
    the worker believes them from."""
    from accounts import role_log
    from approvals.config.users import role_conflict
    from audit.writer import record

    groups = ensure_roles()
    unknown = [r for r in roles if r not in groups]
    if unknown:
        raise ValueError(f"unknown role(s): {', '.join(unknown)}; choose from {', '.join(groups)}")
    conflict = role_conflict(roles)
    if conflict:
        raise ValueError(conflict)
    user = get_user_model().objects.create_user(
        username=username, password=password, email=email, is_staff=Role.PORTAL_ADMIN in roles
    )
    user.groups.set([groups[r] for r in roles])
    record(
        "config.user.created",
        actor_name=actor_name,
        obj=user,
        details={"roles": sorted(roles), **(details or {}), **role_log.granted(user)},
    )
    return user


def ensure_config_policy():
    """The policy for configuration changes: portal admins approve, one
    approval (a configuration request can ask for more). Idempotent."""
    from approvals.choices import TicketKind
    from approvals.models import Policy

    group = ensure_roles()[Role.PORTAL_ADMIN]
    return Policy.objects.get_or_create(
        kind=TicketKind.CONFIG_CHANGE, zone=None, defaults={"approver_group": group, "required_approvals": 1}
    )[0]

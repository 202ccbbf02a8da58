"""Who may do what, in one place. Roles are Django groups; a superuser gets
no approval rights from being a superuser."""

from accounts.roles import Role, group_ids, has_role, role_names  # noqa: F401 - who holds which role, for every rule
from approvals.choices import TicketKind


def can_file_tickets(user) -> bool:
    return has_role(user, Role.REQUESTER)


def can_file_emergency(user) -> bool:
    return has_role(user, Role.BREAK_GLASS)


def hears_of_emergencies(user) -> bool:
    """Approvers and auditors: told of every emergency, shown the overdue ones."""
    return has_role(user, Role.APPROVER) or has_role(user, Role.AUDITOR)


def sees_all_tickets(user) -> bool:
    return has_role(user, Role.APPROVER) or has_role(user, Role.AUDITOR)


def can_decide(user, ticket) -> bool:
    """Approve or reject: a member of the ticket's approver group who did not
    request it. No exception for superusers."""
    return ticket.requester_id != user.pk and ticket.approver_group.name in role_names(user)


def conflict_of_interest(user, ticket) -> str | None:
    """Why this person must not decide on this ticket although their group
    may, in words; None when nothing stands in the way. The worker asks again
    before acting, so an approval that became a conflict stops counting."""
    params = ticket.params or {}
    if ticket.kind == TicketKind.ADMIN_ACCESS:
        from accounts.models import AccountState

        own = AccountState.objects.filter(user_id=user.pk).values_list("hypervisor_principal", flat=True).first()
        if own and own.lower() == str(params.get("principal", "")).lower():
            return f"{params['principal']} is your own hypervisor account; someone else approves access for it."
    if ticket.kind == TicketKind.CONFIG_CHANGE and params.get("target") == "user":
        if str(params.get("object_id")) == str(user.pk) or params.get("label") == user.get_username():
            return "This request is about your own account; another portal admin decides on it."
    return None


def can_cancel(user, ticket) -> bool:
    return ticket.requester_id == user.pk


def can_revoke(user, ticket) -> bool:
    return ticket.requester_id == user.pk or has_role(user, Role.APPROVER)


def can_manage_configuration(user) -> bool:
    return has_role(user, Role.PORTAL_ADMIN)


def can_read_configuration(user) -> bool:
    return bool(role_names(user))

"""Who may read the audit log and the findings, and who acknowledges them."""

from accounts.roles import Role, has_role


def can_read_audit(user) -> bool:
    return has_role(user, Role.AUDITOR) or has_role(user, Role.APPROVER)


def can_acknowledge_findings(user) -> bool:
    return has_role(user, Role.APPROVER)

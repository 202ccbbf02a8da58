"""Who may read the audit log and the findings, and who acknowledges them."""

from approvals.choices import Role
from approvals.permissions import can_read_audit, has_role

__all__ = ["can_acknowledge_findings", "can_read_audit"]


def can_acknowledge_findings(user) -> bool:
    return has_role(user, Role.APPROVER)

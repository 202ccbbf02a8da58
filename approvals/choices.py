from django.db import models

from accounts.roles import Role  # noqa: F401 - the roles live with the accounts; approvals names them from here


class TicketKind(models.TextChoices):
    VM_CREATE = "vm_create", "Create VM"
    VM_MIGRATE = "vm_migrate", "Migrate VM"
    ADMIN_ACCESS = "admin_access", "Temporary admin access"
    VM_DECOMMISSION = "vm_decommission", "Decommission VM"
    VM_RECONFIGURE = "vm_reconfigure", "Reconfigure VM"
    VM_POWER = "vm_power", "Power VM on or off"
    VM_SNAPSHOT = "vm_snapshot", "VM snapshot"
    # A change to who may act or to the rules, applied by the worker once a
    # second portal admin approved it (approvals/config/).
    CONFIG_CHANGE = "config_change", "Configuration change"


# The kinds that act on a hypervisor (every kind but configuration changes).
HYPERVISOR_KINDS = tuple(kind for kind in TicketKind.values if kind != TicketKind.CONFIG_CHANGE)


class TicketState(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REVOKED = "revoked"


class Decision(models.TextChoices):
    APPROVE = "approve"
    REJECT = "reject"
    # A post-review of an emergency that already ran (approvals/services/emergencies.py).
    REVIEW = "review"


S = TicketState
# The only moves a ticket can make. Everything else is refused by `transition`.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.APPROVED, S.REJECTED, S.CANCELLED, S.EXPIRED}),
    S.APPROVED: frozenset({S.RUNNING, S.CANCELLED, S.EXPIRED, S.FAILED}),
    # running -> approved: a lease taken back from a worker that provably did
    # not start the operation, so the ticket is queued again.
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.EXPIRED, S.APPROVED}),
    S.SUCCEEDED: frozenset({S.REVOKED}),
    S.FAILED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
    S.REVOKED: frozenset(),
}
FINAL_STATES = frozenset(state for state, targets in ALLOWED_TRANSITIONS.items() if not targets)

from approvals.services.tickets import (
    access_revoke,
    ticket_approve,
    ticket_cancel,
    ticket_reject,
    ticket_submit,
)
from approvals.services.transitions import transition

__all__ = [
    "access_revoke",
    "ticket_approve",
    "ticket_cancel",
    "ticket_reject",
    "ticket_submit",
    "transition",
]

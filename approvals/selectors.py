"""Reads that carry rules: what each person may see."""

from django.db.models import Count, Prefetch, Q, QuerySet

from approvals import permissions
from approvals.choices import Decision
from approvals.models import Approval, Ticket


def tickets_visible_to(user) -> QuerySet[Ticket]:
    tickets = Ticket.objects.select_related("requester", "connector", "approver_group")
    if permissions.sees_all_tickets(user):
        return tickets
    return tickets.filter(requester=user)


def with_approval_counts(tickets: QuerySet[Ticket]) -> QuerySet[Ticket]:
    return tickets.annotate(
        approvals_given=Count("approvals", filter=Q(approvals__decision=Decision.APPROVE), distinct=True)
    )


def with_decisions(tickets: QuerySet[Ticket]) -> QuerySet[Ticket]:
    return tickets.prefetch_related(
        Prefetch("approvals", queryset=Approval.objects.select_related("approver").order_by("created_at", "id"))
    )


def tickets_awaiting(user) -> QuerySet[Ticket]:
    """Pending tickets this person may decide on and has not yet."""
    return (
        Ticket.objects.filter(state="pending", approver_group__in=user.groups.all())
        .exclude(requester=user)
        .exclude(approvals__approver=user)
        .select_related("requester", "connector", "approver_group")
    )

"""Reads that carry rules: what each person may see."""

from django.db.models import Count, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce

from approvals import permissions
from approvals.choices import Decision
from approvals.models import Approval, Ticket


def tickets_visible_to(user) -> QuerySet[Ticket]:
    tickets = Ticket.objects.select_related("requester", "connector", "approver_group")
    if permissions.sees_all_tickets(user):
        return tickets
    return tickets.filter(requester=user)


def with_approvals_given(tickets: QuerySet[Ticket]) -> QuerySet[Ticket]:
    """Each ticket's approval count, from a subquery that runs only for the
    rows a page shows (a join and GROUP BY would count the whole table)."""
    given = (
        Approval.objects.filter(ticket=OuterRef("pk"), decision=Decision.APPROVE)
        .order_by()
        .values("ticket")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return tickets.annotate(approvals_given=Coalesce(Subquery(given), 0))


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

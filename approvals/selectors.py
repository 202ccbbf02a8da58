"""Reads that carry rules: what each person may see, and the shapes the
pages and the API read tickets in."""

from collections import Counter
from datetime import datetime, time, timedelta

from django.core.cache import cache
from django.db.models import Case, Count, DateField, OuterRef, Prefetch, Q, QuerySet, Subquery, When
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from approvals import permissions
from approvals.choices import Decision, TicketKind, TicketState
from approvals.models import Approval, Ticket

OPEN_STATES = (TicketState.PENDING, TicketState.APPROVED, TicketState.RUNNING)
CHART_DAYS = 30


def tickets_visible_to(user) -> QuerySet[Ticket]:
    tickets = Ticket.objects.select_related("requester", "connector", "approver_group")
    if permissions.sees_all_tickets(user):
        return tickets
    if permissions.can_manage_configuration(user):
        # Portal admins review each other's configuration requests.
        return tickets.filter(Q(kind=TicketKind.CONFIG_CHANGE) | Q(requester=user))
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
    """Pending tickets this person may decide on and has not yet. The group
    ids are already known (permissions reads them once a request), which
    spares PostgreSQL a join in the plan."""
    return (
        Ticket.objects.filter(state=TicketState.PENDING, approver_group_id__in=permissions.group_ids(user))
        .exclude(requester=user)
        .exclude(approvals__approver=user)
    )


# What a row of tickets shows; loading only these keeps long pages cheap.
TICKET_ROW_FIELDS = ("id", "kind", "state", "params", "required_approvals", "created_at", "is_emergency", "is_standard")


def ticket_rows(tickets: QuerySet[Ticket], *, requester: bool = True, connector: bool = True) -> QuerySet[Ticket]:
    """Tickets ready for a table: the requester and connector joined for
    tables that show them, only the shown columns loaded, the approvals given
    counted. Every join left out is planning time PostgreSQL saves."""
    related, fields = [], list(TICKET_ROW_FIELDS)
    if requester:
        related.append("requester")
        fields.append("requester__username")
    if connector:
        related.append("connector")
        fields.append("connector__name")
    return with_approvals_given(tickets.select_related(None).select_related(*related).only(*fields))


# Dashboard counts


def overview_counts(tickets: QuerySet[Ticket], days: int = CHART_DAYS) -> dict:
    """Tickets by state, and tickets filed each of the last `days` days
    (today included), from one GROUP BY: (state, the day for recent
    tickets) pairs, at most states × (days + 1) rows."""
    first = timezone.localdate() - timedelta(days=days - 1)
    since = timezone.make_aware(datetime.combine(first, time.min))
    recent_day = Case(When(created_at__gte=since, then=TruncDate("created_at")), output_field=DateField())
    by_state, by_day = Counter(), Counter()
    for state, day, n in tickets.order_by().values_list("state", recent_day).annotate(n=Count("id")):
        by_state[state] += n
        if day is not None:
            by_day[day] += n
    return {
        "state_counts": [(state, by_state[state]) for state in TicketState.values],
        "daily": [(first + timedelta(days=i), by_day[first + timedelta(days=i)]) for i in range(days)],
    }


# Counting every ticket by state and day reads the whole table; the
# dashboards of those who see all tickets share counts at most this old.
OVERVIEW_SECONDS = 30
OVERVIEW_KEY = "dashboard:overview:all"


def ticket_overview(user) -> dict:
    """Counts by state and tickets per day of the tickets this person sees.
    A requester's own are counted live (an index serves them); everyone's
    are cached briefly."""
    if not permissions.sees_all_tickets(user):
        return {"scope": "yours", **overview_counts(tickets_visible_to(user))}
    overview = cache.get(OVERVIEW_KEY)
    if overview is None:
        overview = {**overview_counts(tickets_visible_to(user)), "as_of": timezone.now()}
        cache.set(OVERVIEW_KEY, overview, OVERVIEW_SECONDS)
    return {"scope": "all", **overview}

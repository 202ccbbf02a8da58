"""The browser portal. Views read through selectors, write through services
and ask approvals.permissions who may see or press what."""

from __future__ import annotations

import json
import time as time_module

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts import otp, passkeys
from approvals import conflicts, permissions, selectors, services
from approvals.choices import FINAL_STATES, HYPERVISOR_KINDS, Decision, Role, TicketKind, TicketState
from approvals.errors import InvalidInput, InventoryUnavailable, StateConflict
from approvals.forms import FORMS_BY_KIND, DecisionForm, RejectForm, TicketListFilter
from approvals.guest_passwords import guest_password_reveal, guest_password_state
from approvals.inventory import StoredIndex, connector_freshness
from approvals.models import CatalogueTemplate, Ticket
from approvals.services import emergencies, passkey_approvals
from approvals.services.config_requests import config_display
from approvals.services.holds import is_held
from audit import selectors as audit_selectors
from connectors.models import Connector
from portal.paging import page_number, positive_int, query_with

PAGE_SIZE = 25
# htmx stops polling when a poll answers with this status.
HTMX_STOP_POLLING = 286


@require_GET
def healthz(request):
    """For load balancers: the process answers. Touches no database."""
    return HttpResponse("ok\n", content_type="text/plain")


@login_required
def bench_trivial(request):
    """The benchmark's yardstick: signed in (session and user read), nothing
    else. Routed only when settings.BENCH_TRIVIAL_VIEW is on."""
    return HttpResponse("ok\n", content_type="text/plain")


# Dashboard


@login_required
def dashboard(request):
    user = request.user
    context = {**selectors.ticket_overview(user), "has_role": bool(permissions.role_names(user))}
    if permissions.can_file_tickets(user):
        # Their own tickets: no requester column, so no requester joined.
        mine = selectors.ticket_rows(Ticket.objects.filter(requester=user), requester=False)
        context["my_open"] = mine.filter(state__in=selectors.OPEN_STATES)[:10]
        context["my_recent"] = mine.exclude(state__in=selectors.OPEN_STATES)[:5]
    if permissions.can_manage_configuration(user):
        mine = Ticket.objects.filter(requester=user, kind=TicketKind.CONFIG_CHANGE)
        context["my_requests"] = selectors.ticket_rows(mine, requester=False, connector=False)[:10]
    if permissions.has_role(user, Role.APPROVER) or permissions.can_manage_configuration(user):
        # Oldest first: the longest wait is the first to see. The queue shows
        # no connector column, so none is joined.
        awaiting = selectors.tickets_awaiting(user).order_by("created_at", "id")
        context["queue"] = selectors.ticket_rows(awaiting, connector=False)[:25]
    if permissions.hears_of_emergencies(user):
        context["overdue_emergencies"] = list(emergencies.overdue_emergencies().select_related("requester")[:20])
    if permissions.has_role(user, Role.AUDITOR):
        context["activity"] = audit_selectors.audit_entries()[:10]
        open_findings = audit_selectors.open_findings()
        context["open_findings"] = open_findings[:5]
        context["open_findings_count"] = open_findings.count()
    return render(request, "approvals/dashboard.html", context)


# Tickets


@login_required
def ticket_list(request):
    user = request.user
    # Someone who sees only their own tickets gets no requester column or filter.
    mine = not permissions.sees_all_tickets(user)
    tickets = selectors.ticket_rows(selectors.tickets_visible_to(user), requester=not mine)
    filters = TicketListFilter(request.GET or None, queryset=tickets)
    if mine:
        del filters.form.fields["requester"]
    page = page_number(request)
    offset = (page - 1) * PAGE_SIZE
    # One row more than a page tells whether a next page exists, without
    # counting every matching ticket.
    rows = list(filters.qs[offset : offset + PAGE_SIZE + 1])
    return render(
        request,
        "approvals/ticket_list.html",
        {
            "filters": filters,
            "tickets": rows[:PAGE_SIZE],
            "mine": mine,
            "page": page,
            "previous_query": query_with(request, page=page - 1) if page > 1 else None,
            "next_query": query_with(request, page=page + 1) if len(rows) > PAGE_SIZE else None,
        },
    )


@login_required
def ticket_new(request, kind: str | None = None):
    user = request.user
    if not (permissions.can_file_tickets(user) or permissions.can_file_emergency(user)):
        raise PermissionDenied("Only requesters file tickets.")
    connectors = list(Connector.objects.all())
    kinds = [(k, TicketKind(k).label) for k in HYPERVISOR_KINDS]
    context = {"kinds": kinds, "kind": kind, "connectors": connectors}
    if not connectors:
        return render(request, "approvals/ticket_new.html", context)
    wanted = request.POST.get("connector") or request.GET.get("connector")
    connector = next((c for c in connectors if str(c.pk) == wanted), connectors[0])
    context["connector"] = connector
    if kind is None:
        return render(request, "approvals/ticket_new.html", context)
    form_class = FORMS_BY_KIND.get(kind)
    if form_class is None:
        raise Http404(f"There is no ticket kind {kind!r}.")
    context["kind_label"] = TicketKind(kind).label
    try:
        index = StoredIndex.for_connector(connector)
    except InventoryUnavailable as exc:
        context["inventory_error"] = str(exc)
        return render(request, "approvals/ticket_new.html", context, status=503)
    context["freshness"] = index.freshness
    catalogue = set(CatalogueTemplate.objects.filter(connector=connector).values_list("name", flat=True))
    form = form_class(
        request.POST or None,
        index=index,
        catalogue=catalogue,
        emergency=permissions.can_file_emergency(user),
        connector=connector,
    )
    context["form"] = form
    if request.method == "POST" and form.is_valid():
        try:
            ticket = services.ticket_submit(requester=user, connector=connector, index=index, **form.submission())
        except InvalidInput as exc:
            form.add_service_errors(exc.errors)
        except InventoryUnavailable as exc:
            context["inventory_error"] = str(exc)
            return render(request, "approvals/ticket_new.html", context, status=503)
        else:
            if ticket.is_emergency:
                messages.warning(request, f"EMERGENCY {ticket.ref} filed; it runs now and must be reviewed.")
            elif ticket.is_standard:
                messages.success(request, f"{ticket.ref} filed; a standard change, approved by its policy.")
            else:
                messages.success(request, f"{ticket.ref} filed; it waits for {ticket.required_approvals} approval(s).")
            return redirect("ticket", pk=ticket.pk)
    return render(request, "approvals/ticket_new.html", context, status=400 if form.errors else 200)


def _visible_ticket(request, pk: int) -> Ticket:
    """The ticket if this person may see it; 404 otherwise, so other people's
    tickets are not even confirmed to exist."""
    return get_object_or_404(selectors.with_decisions(selectors.tickets_visible_to(request.user)), pk=pk)


def _ticket_context(request, ticket: Ticket, *, watching_since: int | None = None) -> dict:
    user = request.user
    decisions = list(ticket.approvals.all())
    decided = any(d.approver_id == user.pk for d in decisions)
    # A succeeded change stays put; only granted access still moves (to revoked).
    settled = ticket.state in FINAL_STATES or (
        ticket.state == TicketState.SUCCEEDED and ticket.kind != TicketKind.ADMIN_ACCESS
    )
    now = int(time_module.time())
    watching_since = watching_since or now
    # Each poll renews the session; a page left open must not keep it alive
    # past the idle timeout, so polling stops after that long.
    watch_over = now - watching_since > settings.SESSION_COOKIE_AGE
    return {
        "watching_since": watching_since,
        "watch_over": watch_over and not settled,
        "polling": not settled and not watch_over,
        "ticket": ticket,
        "decisions": decisions,
        "approvals_given": sum(1 for d in decisions if d.decision == Decision.APPROVE),
        "timeline": list(ticket.audit_entries.order_by("seq")),
        "settled": settled,
        "poll_every": "10s" if ticket.state == TicketState.SUCCEEDED else "2s",
        "may_decide": ticket.state == TicketState.PENDING
        and not decided
        and permissions.can_decide(user, ticket)
        and permissions.conflict_of_interest(user, ticket) is None,
        "config": config_display(ticket) if ticket.kind == TicketKind.CONFIG_CHANGE else None,
        # The policy asks approvers for a one-time password confirmed in this session.
        "otp_needed": ticket.require_otp and not otp.recently_confirmed(request),
        # The policy asks for each approval to be signed with the approver's passkey.
        "passkey_words": passkey_approvals.plain_words(ticket) if ticket.require_passkey else None,
        "has_passkey": ticket.require_passkey and passkey_approvals.active_passkeys(user).exists(),
        "may_cancel": ticket.state in (TicketState.PENDING, TicketState.APPROVED)
        and permissions.can_cancel(user, ticket),
        "emergency": emergencies.review_state(ticket) if ticket.is_emergency else None,
        "may_review": ticket.is_emergency
        and not decided
        and permissions.can_decide(user, ticket)
        and permissions.conflict_of_interest(user, ticket) is None,
        "may_revoke": ticket.kind == TicketKind.ADMIN_ACCESS
        and ticket.state == TicketState.SUCCEEDED
        and permissions.can_revoke(user, ticket),
        # What approvers weigh before deciding: other open tickets on the same objects.
        "conflicts": conflicts.conflicting(ticket) if ticket.state in conflicts.OPEN_STATES else [],
        "held": is_held(ticket),
    }


@login_required
def ticket_detail(request, pk: int, *, reject_form=None, status=200):
    ticket = _visible_ticket(request, pk)
    context = _ticket_context(request, ticket)
    context["reject_form"] = reject_form or RejectForm()
    if ticket.connector_id is not None:  # what the page says of its objects is as current as the inventory
        context["freshness"] = connector_freshness(ticket.connector_id)
    if ticket.kind == TicketKind.VM_CREATE and ticket.requester_id == request.user.pk:
        context["guest_password"] = guest_password_state(ticket)
    return render(request, "approvals/ticket_detail.html", context, status=status)


@require_GET
def ticket_live(request, pk: int):
    """The part of the detail page that changes while a ticket moves: state,
    approvals, execution and timeline. Polled by htmx; when the state differs
    from the one the page shows, the action buttons are sent along too."""
    if not request.user.is_authenticated:
        return HttpResponse(status=HTMX_STOP_POLLING)
    ticket = _visible_ticket(request, pk)
    context = _ticket_context(request, ticket, watching_since=positive_int(request.GET.get("since")))
    context["reject_form"] = RejectForm()
    context["actions_changed"] = request.GET.get("shown") != ticket.state
    return render(request, "approvals/_ticket_live_response.html", context)


def _act(request, pk: int, action) -> Ticket:
    """Run a ticket action, turning refusals into a message on the page."""
    ticket = _visible_ticket(request, pk)
    try:
        action(ticket)
    except (PermissionDenied, StateConflict) as exc:
        messages.error(request, str(exc) or "You may not do that.")
    return ticket


def _passkey_assertion(request) -> dict | None:
    """The passkey assertion the page's script put in the approval form, if any."""
    try:
        value = json.loads(request.POST.get("passkey") or "null")
    except json.JSONDecodeError:
        return {"malformed": True}
    return value if value is None or isinstance(value, dict) else {"malformed": True}


@login_required
@require_POST
def ticket_approve(request, pk: int):
    form = DecisionForm(request.POST)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""

    def approve(ticket):
        services.ticket_approve(
            ticket_id=ticket.pk,
            approver=request.user,
            comment=comment,
            otp_confirmed=otp.recently_confirmed(request),
            passkey_assertion=_passkey_assertion(request),
            origin=passkeys.origin_of(request),
        )
        messages.success(request, f"You approved {ticket.ref}.")

    _act(request, pk, approve)
    return redirect("ticket", pk=pk)


@login_required
@require_POST
def ticket_reject(request, pk: int):
    form = RejectForm(request.POST)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""

    def reject(ticket):
        services.ticket_reject(ticket_id=ticket.pk, approver=request.user, comment=comment)
        messages.success(request, f"You rejected {ticket.ref}.")

    try:
        _act(request, pk, reject)
    except InvalidInput as exc:
        form.add_error("comment", exc.errors.get("comment", ["Say why."]))
        return ticket_detail(request, pk, reject_form=form, status=400)
    return redirect("ticket", pk=pk)


@login_required
@require_POST
def ticket_review(request, pk: int):
    """An approver's post-review of an emergency."""
    form = RejectForm(request.POST)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""

    def review(ticket):
        emergencies.emergency_review(ticket_id=ticket.pk, reviewer=request.user, comment=comment)
        messages.success(request, f"You reviewed {ticket.ref}.")

    try:
        _act(request, pk, review)
    except InvalidInput as exc:
        messages.error(request, " ".join(exc.errors.get("comment", ["Say what you found."])))
    return redirect("ticket", pk=pk)


@login_required
@require_POST
def ticket_cancel(request, pk: int):
    def cancel(ticket):
        services.ticket_cancel(ticket_id=ticket.pk, user=request.user)
        messages.success(request, f"{ticket.ref} is cancelled.")

    _act(request, pk, cancel)
    return redirect("ticket", pk=pk)


@login_required
@require_POST
def ticket_revoke(request, pk: int):
    def revoke(ticket):
        services.access_revoke(ticket_id=ticket.pk, user=request.user)
        messages.success(request, f"Access of {ticket.ref} is being removed.")

    _act(request, pk, revoke)
    return redirect("ticket", pk=pk)


@login_required
@require_POST
def ticket_guest_password(request, pk: int):
    """The new VM's administrator password, shown on this one response (never
    cached) and destroyed; a second try says it is gone."""
    ticket = _visible_ticket(request, pk)
    try:
        password = guest_password_reveal(ticket_id=ticket.pk, user=request.user)
    except (PermissionDenied, StateConflict) as exc:
        messages.error(request, str(exc) or "You may not do that.")
        return redirect("ticket", pk=pk)
    response = render(request, "approvals/guest_password.html", {"ticket": ticket, "password": password})
    response["Cache-Control"] = "no-store"
    return response

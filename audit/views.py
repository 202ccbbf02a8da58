"""The audit pages: the log, the chain check and the findings (auditors and
approvers read them; approvers acknowledge findings)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from approvals.models import Ticket
from audit import rules as audit_rules
from audit import selectors as audit_selectors
from audit.filters import AuditLogFilter, FindingFilter
from audit.models import Finding
from audit.services import finding_acknowledge
from audit.verify import verify_chain
from portal.errors import InvalidInput, StateConflict, describe_errors
from portal.paging import page_number, positive_int, query_with


def _require_audit_reader(user) -> None:
    if not audit_rules.can_read_audit(user):
        raise PermissionDenied("Only auditors and approvers read the audit log and the findings.")


AUDIT_PAGE_SIZE = 50
CHAIN_REPORT_KEY = "audit:chain-report"
# A full check reads every entry, which takes a while on a long log, so the
# page shows the last one (and when it ran) for this long.
CHAIN_REPORT_SECONDS = 300
CHAIN_CHECK_LOCK = "audit:chain-checking"
# Longer than a check of a million entries takes (about 15 s).
CHAIN_CHECK_LOCK_SECONDS = 120


@login_required
def audit_log(request):
    _require_audit_reader(request.user)
    filters = AuditLogFilter(request.GET or None, queryset=audit_selectors.audit_entries())
    entries = filters.qs
    before = positive_int(request.GET.get("before"))
    if before:
        entries = entries.filter(seq__lt=before)
    # Pages by sequence number: each costs the same however deep it is.
    rows = list(entries[: AUDIT_PAGE_SIZE + 1])
    # Every entry of an emergency is marked, not only those that say so.
    shown_tickets = {e.ticket_id for e in rows if e.ticket_id}
    emergency_ids = (
        set(Ticket.objects.filter(pk__in=shown_tickets, is_emergency=True).values_list("pk", flat=True))
        if shown_tickets
        else set()
    )
    export_query = request.GET.copy()
    export_query.pop("before", None)
    return render(
        request,
        "audit/audit_log.html",
        {
            "filters": filters,
            "entries": rows[:AUDIT_PAGE_SIZE],
            "emergency_ids": emergency_ids,
            "newest_query": export_query.urlencode() if before else None,
            "older_query": query_with(request, before=rows[AUDIT_PAGE_SIZE - 1].seq)
            if len(rows) > AUDIT_PAGE_SIZE
            else None,
            "export_query": export_query.urlencode(),
        },
    )


@login_required
@require_GET
def audit_chain(request):
    """Whether the audit chain holds: the last full check, or a new one when
    asked for (or when none is recent). One check runs at a time; others
    asking meanwhile are told to look again shortly."""
    _require_audit_reader(request.user)
    report = None if request.GET.get("again") else cache.get(CHAIN_REPORT_KEY)
    if report is None:
        if not cache.add(CHAIN_CHECK_LOCK, True, CHAIN_CHECK_LOCK_SECONDS):
            return render(request, "audit/_chain_status.html", {"checking": True})
        try:
            checked_at = timezone.now()
            result = verify_chain()
            report = {
                "ok": result.ok,
                "checked": result.checked,
                "first_broken": result.first_broken,
                "reason": result.reason,
                "checked_at": checked_at,
            }
            cache.set(CHAIN_REPORT_KEY, report, CHAIN_REPORT_SECONDS)
        finally:
            cache.delete(CHAIN_CHECK_LOCK)
    return render(request, "audit/_chain_status.html", {"report": report})


FINDINGS_PAGE_SIZE = 50


@login_required
def findings(request):
    _require_audit_reader(request.user)
    data = request.GET.copy()
    data.setdefault("state", "open")
    filters = FindingFilter(data, queryset=audit_selectors.findings())
    page = page_number(request)
    offset = (page - 1) * FINDINGS_PAGE_SIZE
    rows = list(filters.qs[offset : offset + FINDINGS_PAGE_SIZE + 1])
    return render(
        request,
        "audit/findings.html",
        {
            "filters": filters,
            "findings": rows[:FINDINGS_PAGE_SIZE],
            "may_acknowledge": audit_rules.can_acknowledge_findings(request.user),
            "page": page,
            "previous_query": query_with(request, page=page - 1) if page > 1 else None,
            "next_query": query_with(request, page=page + 1) if len(rows) > FINDINGS_PAGE_SIZE else None,
        },
    )


@login_required
@require_POST
def finding_acknowledge_view(request, pk: int):
    _require_audit_reader(request.user)
    try:
        finding = finding_acknowledge(finding_id=pk, user=request.user, comment=request.POST.get("comment", ""))
    except Finding.DoesNotExist as exc:
        raise Http404("No such finding.") from exc
    except InvalidInput as exc:
        messages.error(request, " ".join(exc.errors.get("comment", [])) or describe_errors(exc.errors))
    except (PermissionDenied, StateConflict) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Finding {finding.pk} acknowledged.")
    return redirect("findings")

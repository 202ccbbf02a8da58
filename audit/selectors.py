"""Reads of the audit log and the findings."""

from django.db.models import QuerySet

from audit.models import AuditEntry, Finding


def audit_entries() -> QuerySet[AuditEntry]:
    """Newest first; the list shows names and ids, so no joins."""
    return AuditEntry.objects.order_by("-seq")


def findings() -> QuerySet[Finding]:
    return Finding.objects.select_related("connector", "acknowledged_by").order_by("-first_seen", "-id")


def open_findings() -> QuerySet[Finding]:
    """Findings no approver has acknowledged yet, newest first."""
    return findings().filter(acknowledged_at__isnull=True)

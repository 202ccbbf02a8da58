"""Writes on findings. Raising them is drift detection's (audit.drift)."""

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from audit import rules
from audit.models import Finding
from audit.writer import record
from portal.errors import InvalidInput, StateConflict


def finding_acknowledge(*, finding_id: int, user, comment: str) -> Finding:
    """An approver takes note of a finding, saying why it is acceptable or
    what was done. It stays on record and leaves the open list."""
    if not rules.can_acknowledge_findings(user):
        raise PermissionDenied("Only approvers acknowledge findings.")
    comment = (comment or "").strip()
    if not comment:
        raise InvalidInput({"comment": ["Say why this finding is acceptable or what was done about it."]})
    with transaction.atomic():
        finding = Finding.objects.select_for_update(of=("self",)).select_related("connector").get(pk=finding_id)
        if not finding.is_open:
            raise StateConflict(f"Finding {finding.pk} was acknowledged already.")
        finding.acknowledged_at = timezone.now()
        finding.acknowledged_by = user
        finding.ack_comment = comment
        finding.save(update_fields=["acknowledged_at", "acknowledged_by", "ack_comment"])
        record(
            "finding.acknowledged",
            actor=user,
            obj=finding,
            details={
                "connector": finding.connector.name,
                "kind": finding.kind,
                "object_ref": finding.object_ref,
                "comment": comment,
            },
        )
    return finding

"""Images that stay vetted: a catalogue entry holds only until its expiry,
and only for the template as it was when vetted (its fingerprint). The
submission judges the entry; the worker's re-check also reads the template
live and compares, raising a finding when it changed."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals.models import CatalogueTemplate
from audit.models import Finding, FindingKind
from audit.writer import record
from connectors.base import TemplateImage, customization_family


def vetting_problem(entry: CatalogueTemplate, *, now=None) -> str | None:
    """Why this catalogue entry does not vouch for its template now, in
    words, or None: never vetted, expired, or a guest that cannot be
    customized (a new VM would keep the template's password)."""
    now = now or timezone.now()
    if not entry.fingerprint or entry.vetted_until is None:
        return (
            f"{entry.name} has not been vetted (no fingerprint or expiry); a portal admin must file a vetting request."
        )
    if entry.vetted_until <= now:
        return (
            f"The vetting of {entry.name} expired on {entry.vetted_until:%Y-%m-%d %H:%M} UTC; "
            "a portal admin must re-vet it."
        )
    guest = entry.fingerprint.get("guest_id", "")
    if customization_family(guest) is None:
        return (
            f"{entry.name} runs a guest ({guest or 'unknown'}) that the hypervisor cannot customize, so a new VM "
            "would keep the template's administrator password; only Linux and Windows templates can be cloned."
        )
    return None


def fingerprint_problem(entry: CatalogueTemplate, image: TemplateImage, *, actor_name: str) -> str | None:
    """Compare the template read live with its vetted fingerprint. A change
    raises one open finding per template (and is audited); returns the
    refusal in words, or None when the template is as vetted."""
    seen = image.fingerprint()
    if seen == entry.fingerprint:
        return None
    words = f"{entry.name} changed after it was vetted"
    now = timezone.now()
    ref = f"template:{entry.template_id}"
    details = {"template": entry.name, "template_id": entry.template_id, "problem": words}
    with transaction.atomic():
        record("catalogue.template_changed", actor_name=actor_name, obj=entry, details={**details, "seen": seen})
        known = Finding.objects.filter(
            connector=entry.connector, kind=FindingKind.TEMPLATE_CHANGED, object_ref=ref, acknowledged_at=None
        )
        if not known.update(last_seen=now, observed=seen):
            try:
                with transaction.atomic():
                    finding = Finding.objects.create(
                        connector=entry.connector,
                        kind=FindingKind.TEMPLATE_CHANGED,
                        object_ref=ref,
                        observed={**seen, "problem": words},
                        expected=entry.fingerprint,
                        first_seen=now,
                        last_seen=now,
                    )
            except IntegrityError:  # another worker raised it a moment ago
                finding = None
            if finding is not None:
                record(
                    "finding.raised",
                    actor_name=actor_name,
                    obj=finding,
                    details={"kind": finding.kind, "object_ref": ref, "observed": finding.observed, **details},
                )
    return f"{words}: it is no longer the image that was vetted; a portal admin must re-vet it."

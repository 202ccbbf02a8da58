"""Presentation helpers for the portal's templates: the navigation, ticket
summaries, timeline entries in words and the small tickets chart."""

import json

from django import forms, template
from django.forms.utils import flatatt
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from approvals import permissions
from approvals.kinds import KINDS
from audit import rules as audit_rules

register = template.Library()


@register.simple_tag(takes_context=True)
def nav_links(context) -> list[dict]:
    """The sections this person may open, the current one marked."""
    request = context["request"]
    user = request.user
    if not user.is_authenticated:
        return []
    links = [("home", "Dashboard"), ("tickets", "Tickets")]
    if permissions.can_file_tickets(user):
        links.append(("ticket-new", "New ticket"))
    if audit_rules.can_read_audit(user):
        links += [("audit", "Audit log"), ("findings", "Findings")]
    if permissions.can_read_configuration(user):
        links.append(("config", "Configuration"))
    items = []
    for name, label in links:
        url = reverse(name)
        current = request.path == url if name == "home" else request.path.startswith(url)
        if name == "tickets" and request.path.startswith(reverse("ticket-new")):
            current = False
        items.append({"url": url, "label": label, "current": current})
    if permissions.can_manage_configuration(user) and user.is_staff:
        items.append({"url": reverse("admin:index"), "label": "Admin", "current": False})
    return items


@register.filter
def ticket_summary(ticket) -> str:
    """One line saying what the ticket changes, by the names approvers saw."""
    if ticket.kind == "config_change":
        p = ticket.params or {}
        return f"{p.get('action')} {p.get('target')} {p.get('label')}"
    return KINDS[ticket.kind].summary(ticket)


@register.filter
def bound_objects(ticket) -> list[dict]:
    """The objects a ticket binds, each with its field, type, id and path, for
    the detail page (a network list or map gives one row per network)."""
    rows = []
    for field, value in ((ticket.params or {}).get("objects") or {}).items():
        for i, ref in enumerate(value if isinstance(value, list) else [value]):
            label = f"{field} {i + 1}" if isinstance(value, list) else field
            if "from" in ref:
                rows.append({"field": f"{label}: from", **ref["from"]})
                rows.append({"field": f"{label}: to", **ref["to"]})
            else:
                rows.append({"field": label, **ref})
    return rows


def _approvals(details: dict) -> str:
    if "given" in details and "required" in details:
        return f" ({details['given']} of {details['required']})"
    return ""


def _sentence(words: str) -> str:
    return words[:1].upper() + words[1:]


@register.filter
def timeline_title(entry) -> str:
    """What an audit entry of a ticket means, in words."""
    d, who = entry.details or {}, entry.actor_name
    titles = {
        "ticket.submitted": f"Filed by {who}",
        "ticket.approval": f"Approved by {who}{_approvals(d)}",
        "ticket.approved": "Approved: queued for a worker",
        "ticket.running": "Running" + (f", attempt {d['attempt']}" if d.get("attempt") else ""),
        "hypervisor.task_started": f"Hypervisor task {d.get('task_id', '')} started",
        "hypervisor.retry": f"Hypervisor not reachable, retrying (attempt {d.get('attempt')} of {d.get('of')})",
        "hypervisor.operation": "Hypervisor: permission removed"
        if d.get("operation") == "remove_permission"
        else "Hypervisor: done",
        "hypervisor.revoke_failed": "Removing the permission failed; the sweeper tries again",
        "ticket.succeeded": "Succeeded",
        "ticket.failed": "Failed",
        "ticket.rejected": f"Rejected by {who}",
        "ticket.cancelled": f"Cancelled by {who}",
        "ticket.expired": "Expired",
        "ticket.revoke_requested": f"Revocation asked by {who}",
        "ticket.revoked": "Access revoked",
        "ticket.objects_renamed": "Renamed since approval (the same objects, by identity)",
        "ticket.decision_refused": f"Decision refused for {who}",
        "ticket.held": _sentence(str(d.get("reason") or "held")),
        "ticket.freeze_overridden": f"Emergency: runs inside freeze {d.get('freeze', '')}",
        "notification.chat_failed": f"Chat notification to {d.get('webhook', '')} failed",
    }
    if entry.action == "ticket.approved" and d.get("from") == "running":
        return "Queued again"
    return titles.get(entry.action, entry.action)


@register.filter
def timeline_detail(entry) -> str:
    """The entry's comment, result or error, if any."""
    d = entry.details or {}
    if entry.action == "ticket.submitted":
        return f"Needs {d.get('required_approvals')} approval(s) from {d.get('approver_group')}." if d else ""
    if entry.action in ("ticket.approval", "ticket.rejected"):
        return d.get("comment", "")
    if entry.action == "ticket.succeeded":
        result = d.get("result") or {}
        return result.get("summary", "") if isinstance(result, dict) else str(result)
    if entry.action == "hypervisor.operation":
        return str(d.get("result") or "")
    if entry.action in ("ticket.failed", "hypervisor.retry", "hypervisor.revoke_failed"):
        return str(d.get("error") or "")
    if entry.action == "ticket.running":
        return f"Worker {d.get('worker') or entry.actor_name}"
    if entry.action in ("ticket.expired", "ticket.approved"):
        return str(d.get("reason") or "")
    if entry.action == "ticket.revoked":
        return str(d.get("result") or "")
    if entry.action == "ticket.objects_renamed":
        return "; ".join(f"{v.get('id')}: {v.get('from')} → {v.get('to')}" for v in d.values() if isinstance(v, dict))
    if entry.action == "ticket.decision_refused":
        return str(d.get("reason") or "")
    return ""


CHART_WIDTH, CHART_HEIGHT, CHART_TOP = 300, 80, 4


@register.inclusion_tag("approvals/_chart.html")
def tickets_chart(daily: list[tuple], as_of=None) -> dict:
    """Bars of tickets filed per day, drawn on the server as SVG."""
    peak = max((n for _, n in daily), default=0) or 1
    step = CHART_WIDTH / max(len(daily), 1)
    bars = []
    for i, (day, n) in enumerate(daily):
        height = (CHART_HEIGHT - CHART_TOP) * n / peak
        # Geometry as text: numbers in templates go through locale formatting.
        bars.append(
            {
                "x": f"{i * step + 1:.1f}",
                "y": f"{CHART_HEIGHT - height:.1f}",
                "width": f"{step - 2:.1f}",
                "height": f"{height:.1f}",
                "label": f"{day:%b} {day.day}: {n}",
            }
        )
    return {
        "bars": bars,
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "total": sum(n for _, n in daily),
        "peak": peak if any(n for _, n in daily) else 0,
        "first": daily[0][0] if daily else None,
        "last": daily[-1][0] if daily else None,
        "as_of": as_of,
    }


@register.filter
def details_text(details, limit: int = 200) -> str:
    """An audit entry's details as compact JSON, cut at `limit` characters."""
    text = json.dumps(details, ensure_ascii=False, separators=(", ", ": "), sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@register.filter
def field_label(name: str) -> str:
    """`target_host` → `Target host`."""
    return FIELD_LABELS.get(name) or str(name).replace("_", " ").capitalize()


FIELD_LABELS = {"vm": "VM", "cpus": "CPUs", "memory_mb": "Memory (MB)", "duration_minutes": "Duration (minutes)"}


# List pages format dozens of times each; the `date` filter's general
# machinery costs far more than a strftime.


@register.filter
def when(value) -> str:
    """A moment as `2026-11-27 09:59` in the portal's time zone."""
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M") if value else ""


@register.filter
def when_seconds(value) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else ""


@register.filter
def age(value) -> str:
    """How long ago: `40 min`, `5 h 20 min`, `3 days`."""
    if not value:
        return ""
    minutes = max(0, int((timezone.now() - value).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes // (24 * 60)} days"


@register.filter
def iso(value) -> str:
    """A moment as ISO 8601, for <time datetime>."""
    return value.isoformat() if value else ""


@register.simple_tag
def filter_input(bound) -> str:
    """A filter form's field as plain HTML: a text, date or time input, or a
    select. Django's per-widget templates are the costliest part of a list
    page, and these fields need none of what they offer."""
    widget = bound.field.widget
    attrs = {"id": bound.auto_id, "name": bound.html_name}
    described = []
    if bound.help_text:
        described.append(f"{bound.auto_id}_helptext")
    if bound.errors:
        attrs["aria-invalid"] = "true"
        described.append(f"{bound.auto_id}_error")
    if described:
        attrs["aria-describedby"] = " ".join(described)
    value = bound.value()
    value = "" if value is None else str(value)
    if isinstance(widget, forms.Select):
        options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            ((str(choice), " selected" if str(choice) == value else "", text) for choice, text in bound.field.choices),
        )
        return format_html("<select{}>{}</select>", flatatt(attrs), options)
    attrs["type"] = widget.attrs.get("type") or getattr(widget, "input_type", "text")
    if value:
        attrs["value"] = value
    return format_html("<input{}>", flatatt(attrs))

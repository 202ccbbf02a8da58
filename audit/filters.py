"""Filters for the audit log and the findings, shared by the API and the
browser pages."""

import re

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Subquery, Value
from django.db.models.functions import Coalesce

from audit.models import AuditEntry, Finding, FindingKind
from portal.filters import UTCIsoDateTimeFilter

_TICKET = re.compile(r"(?:CHG-)?0*(\d{1,12})", re.IGNORECASE)
_AFTER_LAST_SEQ = 2**62


class TicketRefField(forms.CharField):
    """A ticket's id (42) or reference (CHG-000042), cleaned to the id."""

    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return None
        match = _TICKET.fullmatch(value.strip())
        if not match:
            raise ValidationError("Give a ticket id (42) or reference (CHG-000042).", code="invalid")
        return int(match.group(1))


class TicketRefFilter(django_filters.Filter):
    field_class = TicketRefField


def _first_seq_at_or_after(moment):
    """The seq of the first entry written at or after `moment`. Entry times
    never decrease along the chain, so a time bound is a seq bound, which the
    seq indexes serve in O(page) however long the log is."""
    return Subquery(AuditEntry.objects.filter(created_at__gte=moment).order_by("created_at", "seq").values("seq")[:1])


class AuditEntryFilter(django_filters.FilterSet):
    actor = django_filters.CharFilter(field_name="actor_name", label="Actor (user name, or worker / system name)")
    action = django_filters.CharFilter(
        method="filter_action", label="Action, e.g. ticket.approval; ending in '.' or '*' matches a prefix"
    )
    ticket = TicketRefFilter(field_name="ticket_id", label="Ticket id or reference (CHG-000042)")
    object_type = django_filters.CharFilter(label="Object type, e.g. approvals.ticket")
    object_id = django_filters.CharFilter(label="Object id")
    since = UTCIsoDateTimeFilter(method="filter_since", label="Written at or after (ISO 8601)")
    until = UTCIsoDateTimeFilter(method="filter_until", label="Written before (ISO 8601)")

    class Meta:
        model = AuditEntry
        fields = ["actor", "action", "ticket", "object_type", "object_id", "since", "until"]

    def filter_action(self, queryset, name, value):
        if value.endswith(("*", ".")):
            return queryset.filter(action__startswith=value.rstrip("*"))
        return queryset.filter(action=value)

    def filter_since(self, queryset, name, value):
        return queryset.filter(created_at__gte=value, seq__gte=_first_seq_at_or_after(value))

    def filter_until(self, queryset, name, value):
        bound = Coalesce(_first_seq_at_or_after(value), Value(_AFTER_LAST_SEQ))
        return queryset.filter(created_at__lt=value, seq__lt=bound)


class FindingFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(
        choices=[("open", "open"), ("acknowledged", "acknowledged")], method="filter_state"
    )
    kind = django_filters.ChoiceFilter(choices=FindingKind.choices)

    class Meta:
        model = Finding
        fields = ["connector", "kind", "state"]

    def filter_state(self, queryset, name, value):
        return queryset.filter(acknowledged_at__isnull=(value == "open"))


class AuditLogFilter(AuditEntryFilter):
    """The API's audit filters, with short labels and time pickers for the page."""

    LABELS = {
        "actor": "Actor",
        "action": "Action",
        "ticket": "Ticket",
        "object_type": "Object type",
        "object_id": "Object id",
        "since": "From",
        "until": "Before",
    }
    HELP = {
        "action": "e.g. ticket.approval; end with * for a prefix",
        "ticket": "CHG-000042 or 42",
        "object_type": "e.g. approvals.ticket",
    }

    @property
    def form(self):
        if not hasattr(self, "_form"):
            form = super().form
            for name, field in form.fields.items():
                field.label = self.LABELS.get(name, field.label)
                field.help_text = self.HELP.get(name, "")
            for name in ("since", "until"):
                form.fields[name].widget = forms.DateTimeInput(attrs={"type": "datetime-local"})
        return self._form

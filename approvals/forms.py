"""The portal's forms. They shape input and fill choices from the
connector's inventory; every rule stays in the services, whose field errors
the forms show next to the fields."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import django_filters
from django import forms
from django.utils import timezone

from approvals.api.views import TicketFilter
from approvals.choices import TicketKind, TicketState
from approvals.kinds import KINDS
from connectors.models import Connector

# Each kind's form lives in its module; the pages take them from here.
FORMS_BY_KIND = {name: kind.form for name, kind in KINDS.items()}


class DecisionForm(forms.Form):
    comment = forms.CharField(max_length=4000, required=False, widget=forms.Textarea(attrs={"rows": 2}))


class RejectForm(forms.Form):
    # Not required here: the service insists on a comment and its words show.
    comment = forms.CharField(
        max_length=4000, required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Why reject?"
    )


class TicketListFilter(TicketFilter):
    """The API's ticket filters, with date pickers for the page."""

    state = django_filters.ChoiceFilter(choices=TicketState.choices, empty_label="Any state")
    kind = django_filters.ChoiceFilter(choices=TicketKind.choices, empty_label="Any kind")
    # Filled per form with (id, name) pairs, read once: a model choice field
    # would read whole rows (encrypted password included) through a
    # server-side cursor, again for every pass over its choices.
    connector = django_filters.ChoiceFilter(choices=(), empty_label="Any connector")
    created_after = django_filters.DateFilter(
        method="filed_from", label="Filed from", widget=forms.DateInput(attrs={"type": "date"})
    )
    created_before = django_filters.DateFilter(
        method="filed_until", label="Filed until", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["connector"].extra["choices"] = list(Connector.objects.order_by("name").values_list("pk", "name"))

    # Whole days in the portal's time zone, as ranges the created_at index serves.
    def filed_from(self, queryset, name, value):
        return queryset.filter(created_at__gte=_day_start(value))

    def filed_until(self, queryset, name, value):
        return queryset.filter(created_at__lt=_day_start(value + timedelta(days=1)))

    class Meta(TicketFilter.Meta):
        pass


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))

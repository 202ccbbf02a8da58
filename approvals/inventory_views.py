"""The inventory search behind the ticket forms' object pickers
(approvals.kinds.picker): an htmx fragment of the objects a field may name."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from approvals import permissions
from approvals.errors import InventoryUnavailable
from approvals.forms import FORMS_BY_KIND
from approvals.inventory import StoredIndex
from approvals.kinds.picker import ObjectPickerField, search_options
from connectors.models import Connector

OPTIONS = "approvals/_picker_options.html"


@login_required
@require_GET
def inventory_search(request, connector: int):
    """`?ticket_kind=vm_migrate&field=vm&vm=web`: the objects that field may
    name matching what was typed (the query comes under the field's own name,
    as htmx sends the input; `q` works too)."""
    user = request.user
    if not (permissions.can_file_tickets(user) or permissions.can_file_emergency(user)):
        raise PermissionDenied("Only requesters search the inventory for a ticket.")
    connector = get_object_or_404(Connector, pk=connector)
    ticket_kind, name = request.GET.get("ticket_kind", ""), request.GET.get("field", "")
    form_class = FORMS_BY_KIND.get(ticket_kind)
    field = form_class.base_fields.get(name) if form_class else None
    context = {"field_id": f"id_{name}"}
    if not isinstance(field, ObjectPickerField):
        context["error"] = f"No ticket kind {ticket_kind!r} has an object field {name!r}."
        return render(request, OPTIONS, context, status=400)
    query = request.GET.get(name, request.GET.get("q", ""))
    if len(query) > field.max_length:
        context["error"] = f"Type at most {field.max_length} characters."
        return render(request, OPTIONS, context, status=400)
    try:
        index = StoredIndex.for_connector(connector)
    except InventoryUnavailable as exc:
        context["error"] = f"The inventory cannot be searched now: {exc}"
        return render(request, OPTIONS, context, status=503)
    context.update(search_options(index, field, query), query=query)
    return render(request, OPTIONS, context)

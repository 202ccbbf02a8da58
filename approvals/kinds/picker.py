"""The ticket forms' object fields: a searchable picker instead of a select of
the whole inventory.

An `ObjectPickerField` is a text field whose value names one object the way
the services resolve it (an id, an inventory path, or a unique name). In
the browser, `static/portal/picker.js` turns it into a combobox: typing asks
the inventory search (approvals.inventory_views.inventory_search) for the
matching objects of the field's kinds, with their zone and path, and
choosing one writes its path, which the submission resolves exactly. Without
JavaScript the field is a plain text input the services still resolve."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.urls import reverse

from approvals.inventory.rules import KIND_WORDS

# How many matches one search shows; more are announced, not listed.
SEARCH_LIMIT = 20


def own_zone(index, kind: str, obj):
    """The zone an object is in as a ticket's target: a VM's host's, a host's
    own or its cluster's, a cluster's, a datastore's, a network's; for other
    containers the most trusted zone beneath them."""
    if kind in ("cluster", "host"):
        return index.placement_zone(kind, obj)
    return index.entity_zone(kind, obj)


def describe(index, kind: str, obj, zone_of: Callable = own_zone) -> str:
    """What an option says beside the object's name and path: its kind, its
    zone, and for a VM its power state."""
    words = [KIND_WORDS[kind], f"zone {zone_of(index, kind, obj).label}"]
    if kind == "vm":
        words.append(obj.power_state or "power state unknown")
    return " · ".join(words)


def describe_reach(index, kind: str, obj) -> str:
    """describe(), with the zone a permission on the object reaches (a
    container: the most trusted zone beneath it)."""
    return describe(index, kind, obj, zone_of=lambda index, kind, obj: index.entity_zone(kind, obj))


class ObjectPickerWidget(forms.TextInput):
    template_name = "approvals/widgets/object_picker.html"

    def __init__(self, attrs=None):
        super().__init__({"autocomplete": "off", "spellcheck": "false", **(attrs or {})})
        self.search_url = ""  # set by bind(); empty: a plain text input

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        context["widget"]["search_url"] = self.search_url
        return context


class ObjectPickerField(forms.CharField):
    """One object of `kinds` (approvals.inventory.index.KIND_WORDS keys),
    picked by search. `describe` says what an option shows beside its name
    and path."""

    widget = ObjectPickerWidget

    def __init__(self, *, kinds: tuple[str, ...], describe: Callable = describe, **kwargs):
        kwargs.setdefault("max_length", 1000)
        help_text = kwargs.pop("help_text", "")
        hint = "Type part of a name, or a path from its start, to search; an id works too."
        kwargs["help_text"] = f"{help_text} {hint}".strip()
        super().__init__(**kwargs)
        self.kinds = kinds
        self.describe = describe

    def bind(self, *, connector_id: int, ticket_kind: str, field_name: str) -> None:
        """Point the widget at the inventory search for this field."""
        self.widget.search_url = (
            reverse("inventory-search", args=[connector_id]) + f"?ticket_kind={ticket_kind}&field={field_name}"
        )


def search_options(index, field: ObjectPickerField, query: str) -> dict:
    """The options a search shows: up to SEARCH_LIMIT matches of the field's
    kinds, and whether there are more."""
    found, more = index.search(field.kinds, query.strip(), limit=SEARCH_LIMIT)
    return {
        "options": [
            {
                "value": obj.path,
                "name": obj.name,
                "path": obj.path,
                "id": obj.id,
                "about": field.describe(index, kind, obj),
            }
            for kind, obj in found
        ],
        "more": more,
        "limit": SEARCH_LIMIT,
    }

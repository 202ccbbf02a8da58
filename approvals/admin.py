"""Connectors, zones, catalogue, policies and tickets in the Django admin,
read-only for everyone: configuration changes are requests a second portal
admin approves, and tickets change only through their services."""

from django.contrib import admin

from accounts.readonly_admin import ReadOnlyAdmin
from approvals.models import CatalogueTemplate, Policy, Ticket, Zone
from connectors.models import Connector


@admin.register(Connector)
class ConnectorAdmin(ReadOnlyAdmin):
    """The stored password is never shown, not even encrypted."""

    list_display = ["name", "kind", "url", "username", "verify_tls", "updated_at"]
    list_filter = ["kind", "verify_tls"]
    search_fields = ["name", "url", "username"]
    fields = ["name", "kind", "url", "username", "verify_tls", "baseline_taken_at", "created_at", "updated_at"]


@admin.register(Zone)
class ZoneAdmin(ReadOnlyAdmin):
    list_display = ["name", "connector", "trust_level"]
    list_filter = ["connector"]
    search_fields = ["name"]


@admin.register(CatalogueTemplate)
class CatalogueTemplateAdmin(ReadOnlyAdmin):
    list_display = ["name", "connector", "description"]
    list_filter = ["connector"]
    search_fields = ["name", "description"]


@admin.register(Policy)
class PolicyAdmin(ReadOnlyAdmin):
    list_display = ["kind", "zone", "required_approvals", "approver_group", "require_otp"]
    list_filter = ["kind", "require_otp", "approver_group"]


@admin.register(Ticket)
class TicketAdmin(ReadOnlyAdmin):
    list_display = ["ref", "kind", "state", "requester", "created_at"]
    list_filter = ["state", "kind"]
    search_fields = ["requester__username", "justification"]
    date_hierarchy = "created_at"

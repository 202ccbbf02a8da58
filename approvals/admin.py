from django import forms
from django.contrib import admin

from approvals.models import CatalogueTemplate, Policy, Ticket, Zone
from approvals.services.configuration import config_save
from connectors.models import Connector


class AuditedAdmin(admin.ModelAdmin):
    """Configuration saved through the admin is audited like any other change."""

    def save_model(self, request, obj, form, change):
        config_save(actor=request.user, instance=obj, data={f: form.cleaned_data[f] for f in form.changed_data})


class ConnectorForm(forms.ModelForm):
    password = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text="Write-only. Leave empty to keep the stored password.",
    )

    class Meta:
        model = Connector
        fields = ["name", "kind", "url", "username", "verify_tls"]

    def clean(self):
        cleaned = super().clean()
        if not self.instance.pk and not cleaned.get("password"):
            self.add_error("password", "Required for a new connector.")
        return cleaned


@admin.register(Connector)
class ConnectorAdmin(AuditedAdmin):
    form = ConnectorForm
    list_display = ["name", "kind", "url", "username", "verify_tls"]

    def save_model(self, request, obj, form, change):
        from approvals.services.configuration import connector_register, connector_update

        data = {f: form.cleaned_data[f] for f in form.changed_data if f != "password"}
        password = form.cleaned_data.get("password") or None
        if change:
            connector_update(actor=request.user, connector=obj, data=data, password=password)
        else:
            saved = connector_register(
                actor=request.user,
                password=password,
                **{f: form.cleaned_data[f] for f in ["name", "kind", "url", "username", "verify_tls"]},
            )
            obj.pk = saved.pk


@admin.register(Zone)
class ZoneAdmin(AuditedAdmin):
    list_display = ["name", "connector", "trust_level"]


@admin.register(CatalogueTemplate)
class CatalogueTemplateAdmin(AuditedAdmin):
    list_display = ["name", "connector", "description"]


@admin.register(Policy)
class PolicyAdmin(AuditedAdmin):
    list_display = ["kind", "zone", "required_approvals", "approver_group", "require_otp"]


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    """Read-only: tickets change only through their services."""

    list_display = ["ref", "kind", "state", "requester", "created_at"]
    list_filter = ["state", "kind"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

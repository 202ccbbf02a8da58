"""Forms of the configuration pages. They only shape input into the
`changes` a configuration request carries; every rule is the service's, and
its field errors are shown on the form."""

import json

from django import forms
from django.contrib.auth.models import Group

from approvals.choices import Role, TicketKind
from approvals.models import ChatHook, Policy, Zone
from connectors.models import Connector


def _names(text: str) -> list[str]:
    return [name.strip() for name in (text or "").replace("\n", ",").split(",") if name.strip()]


class RequestForm(forms.Form):
    """A configuration request: the object's fields, then why."""

    create_only: tuple[str, ...] = ()
    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000)

    def __init__(self, *args, creating: bool, **kwargs):
        super().__init__(*args, **kwargs)
        if not creating:
            for name in self.create_only:
                self.fields.pop(name, None)
        # Justification last.
        self.fields["justification"] = self.fields.pop("justification")

    def changes(self) -> dict:
        return {k: v for k, v in self.cleaned_data.items() if k != "justification" and k in self.changed_data}

    def add_service_errors(self, errors: dict) -> None:
        for field, messages in errors.items():
            if isinstance(messages, dict):
                messages = [f"{k}: {v}" for k, v in messages.items()]
            self.add_error(field if field in self.fields else None, messages)


class UserForm(RequestForm):
    create_only = ("username",)
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)
    roles = forms.MultipleChoiceField(choices=Role.choices, required=False, widget=forms.CheckboxSelectMultiple)
    hypervisor_principal = forms.CharField(
        max_length=200, required=False, help_text="Their own account on the hypervisor, e.g. CORP\\alice."
    )

    def changes(self):
        changes = super().changes()
        if "roles" in changes:
            changes["roles"] = list(changes["roles"])
        return changes


class PolicyForm(RequestForm):
    create_only = ("kind", "zone")
    kind = forms.ChoiceField(choices=TicketKind.choices)
    zone = forms.ModelChoiceField(queryset=Zone.objects.all(), required=False, empty_label="any zone")
    required_approvals = forms.IntegerField(min_value=1, max_value=10)
    approver_group = forms.ModelChoiceField(queryset=Group.objects.filter(name__in=Role.values), to_field_name="name")
    pending_ttl_minutes = forms.IntegerField(min_value=1)
    max_duration_minutes = forms.IntegerField(min_value=1)
    max_cpus = forms.IntegerField(min_value=1)
    max_memory_mb = forms.IntegerField(min_value=128)
    max_nics = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=10,
        label="Max network cards",
        help_text="vm_reconfigure only: the network cards a VM may have (left empty: unchanged).",
    )
    require_otp = forms.BooleanField(required=False, label="Approvers confirm a one-time password")
    require_passkey = forms.BooleanField(required=False, label="Approvers sign with their passkey")
    grantable_roles = forms.CharField(
        required=False, help_text="admin_access only: the hypervisor roles it grants, comma-separated."
    )
    top_level_entities = forms.CharField(
        required=False,
        help_text="admin_access only: the root folder or datacenters (by id) access may be granted on, comma-separated.",
    )
    allowed_zone_pairs = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text='JSON, e.g. [{"source": "dev", "target": "prod", "required_approvals": 2}]',
    )

    standard_scope = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Standard change",
        help_text='JSON; tickets that fit are approved by the policy at submission. vm_migrate {"zone": "dev"}; '
        'vm_create {"zone": "dev", "template": "tpl-debian12", "max_cpus": 2, "max_memory_mb": 4096}; '
        'admin_access {"role": "ReadOnly", "max_minutes": 30}. Empty: none.',
    )

    def clean_standard_scope(self):
        text = self.cleaned_data["standard_scope"].strip()
        try:
            scope = json.loads(text) if text else {}
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not JSON: {exc.msg}.") from exc
        if not isinstance(scope, dict):
            raise forms.ValidationError('A JSON object, like {"zone": "dev"}.')
        return scope

    def clean_allowed_zone_pairs(self):
        text = self.cleaned_data["allowed_zone_pairs"].strip()
        try:
            return json.loads(text) if text else []
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not JSON: {exc.msg}.") from exc

    def changes(self):
        changes = super().changes()
        if "zone" in changes:
            changes["zone"] = changes["zone"].pk if changes["zone"] else None
        if "approver_group" in changes:
            changes["approver_group"] = changes["approver_group"].name
        for field in ("grantable_roles", "top_level_entities"):
            if field in changes:
                changes[field] = _names(changes[field])
        if changes.get("max_nics", 0) is None:
            del changes["max_nics"]
        return changes


class ZoneForm(RequestForm):
    create_only = ("connector",)
    connector = forms.ModelChoiceField(queryset=Connector.objects.all())
    name = forms.SlugField(max_length=64)
    trust_level = forms.IntegerField(min_value=0, max_value=1000, help_text="Higher is more trusted.")
    clusters = forms.CharField(required=False, help_text="Comma-separated names.")
    hosts = forms.CharField(required=False, help_text="Comma-separated names.")
    networks = forms.CharField(required=False, help_text="Comma-separated names.")

    def changes(self):
        changes = super().changes()
        for field in ("clusters", "hosts", "networks"):
            if field in changes:
                changes[field] = _names(changes[field])
        if "connector" in changes:
            changes["connector"] = changes["connector"].pk
        return changes


class TemplateForm(RequestForm):
    create_only = ("connector",)
    connector = forms.ModelChoiceField(queryset=Connector.objects.all())
    name = forms.CharField(max_length=80, help_text="The template VM's name in the inventory.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def changes(self):
        changes = super().changes()
        if "connector" in changes:
            changes["connector"] = changes["connector"].pk
        return changes


class ConnectorForm(RequestForm):
    create_only = ("kind",)
    name = forms.SlugField(max_length=64)
    kind = forms.ChoiceField(choices=Connector.Kind.choices)
    url = forms.URLField(max_length=300)
    username = forms.CharField(max_length=150)
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Needed for a new connector and for any change of URL, username or TLS setting. "
        "It is sealed for the worker at once; nobody can read it back.",
    )
    verify_tls = forms.BooleanField(required=False, label="Verify the TLS certificate")

    def changes(self):
        changes = super().changes()
        if not changes.get("password"):
            changes.pop("password", None)
        return changes


class FreezeForm(RequestForm):
    create_only = ("connector",)
    connector = forms.ModelChoiceField(queryset=Connector.objects.all())
    name = forms.SlugField(max_length=64)
    zone = forms.SlugField(max_length=64, required=False, help_text="A zone of the connector; empty: all of it.")
    starts_at = forms.DateTimeField(help_text="UTC, e.g. 2026-12-24 00:00.")
    ends_at = forms.DateTimeField(help_text="UTC. A recurring freeze: the first occurrence's end.")
    rrule = forms.CharField(
        max_length=500, required=False, label="Recurrence", help_text="An iCalendar RRULE, e.g. FREQ=WEEKLY;BYDAY=FR."
    )
    reason = forms.CharField(max_length=300, required=False)

    def changes(self):
        changes = super().changes()
        if "connector" in changes:
            changes["connector"] = changes["connector"].pk
        for field in ("starts_at", "ends_at"):
            if field in changes:
                changes[field] = changes[field].isoformat()
        return changes


class ChatHookForm(RequestForm):
    name = forms.SlugField(max_length=64)
    service = forms.ChoiceField(choices=ChatHook.Service.choices)
    url = forms.URLField(
        max_length=1000,
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="The incoming webhook URL. Sealed for the worker at once; nobody can read it back. "
        "Needed for a new webhook.",
    )
    policy = forms.ModelChoiceField(queryset=Policy.objects.all(), required=False, empty_label="no policy")
    zone = forms.ModelChoiceField(queryset=Zone.objects.all(), required=False, empty_label="no zone")

    def changes(self):
        changes = super().changes()
        if not changes.get("url"):
            changes.pop("url", None)
        for field in ("policy", "zone"):
            if field in changes:
                changes[field] = changes[field].pk if changes[field] else None
        return changes


class ActionForm(forms.Form):
    """Delete, deactivate, reactivate, reset an authenticator: only why."""

    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000)


FORMS = {
    "user": UserForm,
    "policy": PolicyForm,
    "zone": ZoneForm,
    "template": TemplateForm,
    "connector": ConnectorForm,
    "freeze": FreezeForm,
    "chat_hook": ChatHookForm,
}

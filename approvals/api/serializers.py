from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from approvals import conflicts
from approvals.choices import HYPERVISOR_KINDS, Role
from approvals.config.policies import FIELDS as POLICY_FIELDS
from approvals.inventory.listing import TYPES as INVENTORY_TYPES
from approvals.models import Approval, CatalogueTemplate, ChatHook, FreezeWindow, Policy, Ticket, Zone
from approvals.services import emergencies
from approvals.services.config_requests import public_params
from approvals.services.holds import is_held
from connectors.models import Connector


class ConnectorSerializer(serializers.ModelSerializer):
    """A connector as everyone reads it: never the password."""

    class Meta:
        model = Connector
        fields = [
            "id",
            "name",
            "kind",
            "url",
            "username",
            "verify_tls",
            "instance_uuid",
            "tls_fingerprint",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ZoneSerializer(serializers.ModelSerializer):
    class Meta:
        model = Zone
        fields = ["id", "name", "trust_level", "connector", "clusters", "hosts", "networks"]
        read_only_fields = fields


class CatalogueTemplateSerializer(serializers.ModelSerializer):
    class Meta:
        model = CatalogueTemplate
        fields = ["id", "connector", "name", "description", "vetted_by", "vetted_at", "vetted_until", "fingerprint"]
        read_only_fields = fields


class PolicySerializer(serializers.ModelSerializer):
    approver_group = serializers.CharField(source="approver_group.name", read_only=True)

    class Meta:
        model = Policy
        # What a policy request may set (approvals.config.policies) is what the API shows.
        fields = ["id", *POLICY_FIELDS]
        read_only_fields = fields


class FreezeWindowSerializer(serializers.ModelSerializer):
    class Meta:
        model = FreezeWindow
        fields = ["id", "connector", "name", "zone", "starts_at", "ends_at", "rrule", "reason"]
        read_only_fields = fields


class ChatHookSerializer(serializers.ModelSerializer):
    """A chat webhook as everyone reads it: its hint, never the URL."""

    class Meta:
        model = ChatHook
        fields = ["id", "name", "service", "url_hint", "policy", "zone"]
        read_only_fields = fields


class UserSerializer(serializers.ModelSerializer):
    roles = serializers.SerializerMethodField()
    hypervisor_principal = serializers.SerializerMethodField()

    class Meta:
        model = get_user_model()
        fields = ["id", "username", "email", "first_name", "last_name", "roles", "hypervisor_principal", "is_active"]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_roles(self, user) -> list[str]:
        return sorted(g.name for g in user.groups.all() if g.name in Role.values)

    @extend_schema_field(serializers.CharField())
    def get_hypervisor_principal(self, user) -> str:
        state = getattr(user, "account_state", None)
        return state.hypervisor_principal if state else ""


class InventoryQuerySerializer(serializers.Serializer):
    """The inventory API's query: what to list, and which page."""

    refresh = serializers.BooleanField(required=False, default=False)
    type = serializers.ChoiceField(choices=INVENTORY_TYPES, required=False, default="")
    q = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    zone = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)
    page = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False, default=1)


class JustificationSerializer(serializers.Serializer):
    justification = serializers.CharField(max_length=4000, help_text="Why this change is needed.")


class ConfigRequestBody(JustificationSerializer):
    """The fields to set (those of the object, plus `password` for
    connectors, write-only) and a justification; the change is filed as a
    configuration request (202) that another portal admin approves."""

    def to_representation(self, instance):  # schema only
        return super().to_representation(instance)


class ApprovalSerializer(serializers.ModelSerializer):
    approver = serializers.CharField(source="approver.username")

    class Meta:
        model = Approval
        fields = ["approver", "decision", "comment", "created_at"]


class TicketSerializer(serializers.ModelSerializer):
    ref = serializers.CharField(read_only=True)
    requester = serializers.CharField(source="requester.username", read_only=True)
    connector_name = serializers.CharField(source="connector.name", read_only=True, default=None)
    approver_group = serializers.CharField(source="approver_group.name", read_only=True)
    approvals = ApprovalSerializer(many=True, read_only=True)
    approvals_given = serializers.SerializerMethodField()
    execution = serializers.SerializerMethodField()
    params = serializers.SerializerMethodField()
    standard = serializers.SerializerMethodField()
    emergency = serializers.SerializerMethodField()

    class Meta:
        model = Ticket
        fields = [
            "id",
            "ref",
            "kind",
            "state",
            "connector",
            "connector_name",
            "requester",
            "justification",
            "params",
            "not_before",
            "not_after",
            "zone",
            "required_approvals",
            "approvals_given",
            "approver_group",
            "approvals",
            "execution",
            "is_standard",
            "standard",
            "is_emergency",
            "emergency",
            "content_hash",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.DictField())
    def get_standard(self, ticket) -> dict:
        """Whether the ticket was a standard change of its policy, and why (or why not)."""
        return ticket.standard_verdict or {}

    @extend_schema_field(serializers.DictField(allow_null=True))
    def get_emergency(self, ticket) -> dict | None:
        """For an emergency: its reason and the state of its post-review."""
        return emergencies.review_state(ticket) if ticket.is_emergency else None

    @extend_schema_field(serializers.DictField())
    def get_params(self, ticket) -> dict:
        return public_params(ticket)

    @extend_schema_field(serializers.IntegerField())
    def get_approvals_given(self, ticket) -> int:
        return sum(1 for a in ticket.approvals.all() if a.decision == "approve")

    @extend_schema_field(serializers.DictField())
    def get_execution(self, ticket) -> dict:
        return {
            "attempts": ticket.attempts,
            "queued_at": ticket.queued_at,
            "started_at": ticket.started_at,
            "finished_at": ticket.finished_at,
            "hypervisor_task_id": ticket.hypervisor_task_id,
            "progress": ticket.progress,
            "result": ticket.result,
            "error": ticket.error,
            "access_expires_at": ticket.access_expires_at,
        }


class TimelineEntrySerializer(serializers.Serializer):
    at = serializers.DateTimeField(source="created_at")
    action = serializers.CharField()
    actor = serializers.CharField(source="actor_name")
    details = serializers.DictField()


class ConflictSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    ref = serializers.CharField()
    kind = serializers.CharField()
    state = serializers.CharField()


class TicketDetailSerializer(TicketSerializer):
    timeline = serializers.SerializerMethodField()
    conflicts = serializers.SerializerMethodField()
    held = serializers.SerializerMethodField()

    class Meta(TicketSerializer.Meta):
        fields = TicketSerializer.Meta.fields + ["conflicts", "held", "timeline"]
        read_only_fields = fields

    @extend_schema_field(ConflictSerializer(many=True))
    def get_conflicts(self, ticket) -> list:
        """Other open tickets that change one of this ticket's objects."""
        if ticket.state not in conflicts.OPEN_STATES:
            return []
        return ConflictSerializer(conflicts.conflicting(ticket), many=True).data

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_held(self, ticket) -> str | None:
        """Why the worker holds this approved ticket back (a freeze, a
        conflict), in words; None when it does not."""
        return ticket.progress if is_held(ticket) else None

    @extend_schema_field(TimelineEntrySerializer(many=True))
    def get_timeline(self, ticket) -> list:
        entries = ticket.audit_entries.order_by("seq")
        return TimelineEntrySerializer(entries, many=True).data


class TicketCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=HYPERVISOR_KINDS)
    connector = serializers.PrimaryKeyRelatedField(queryset=Connector.objects.all())
    justification = serializers.CharField(max_length=4000)
    params = serializers.DictField()
    not_before = serializers.DateTimeField(required=False, allow_null=True)
    not_after = serializers.DateTimeField(required=False, allow_null=True)
    emergency = serializers.BooleanField(
        required=False, default=False, help_text="Break-glass (break_glass holders only): runs at once, reviewed after."
    )
    emergency_reason = serializers.CharField(required=False, allow_blank=True, max_length=4000, default="")


class CommentSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=4000, default="")


class ApproveSerializer(CommentSerializer):
    otp = serializers.RegexField(
        r"^[0-9]{6,8}$",
        required=False,
        help_text="A current code from your authenticator, where the policy asks for one.",
    )
    passkey = serializers.JSONField(
        required=False,
        help_text="Where the policy requires passkeys: the PublicKeyCredential (JSON, base64url) your "
        "authenticator returned for the challenge from passkey-challenge.",
    )


class PasskeyChallengeSerializer(serializers.Serializer):
    publicKey = serializers.DictField(help_text="Options for navigator.credentials.get (base64url).")  # noqa: N815
    statement = serializers.DictField(help_text="What the challenge is the SHA-256 of (canonical JSON).")
    words = serializers.ListField(child=serializers.CharField(), help_text="The statement in plain words.")


class RejectSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=4000)

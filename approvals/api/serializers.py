from django.contrib.auth.models import Group
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from approvals.choices import TicketKind
from approvals.models import Approval, CatalogueTemplate, Policy, Ticket, Zone
from connectors.models import Connector


class ConnectorSerializer(serializers.ModelSerializer):
    password = serializers.CharField(
        write_only=True, required=True, trim_whitespace=False, max_length=500, style={"input_type": "password"}
    )

    class Meta:
        model = Connector
        fields = ["id", "name", "kind", "url", "username", "password", "verify_tls", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance is not None:
            self.fields["password"].required = False


def _names(max_items=500):
    return serializers.ListField(child=serializers.CharField(max_length=80), required=False, max_length=max_items)


class ZoneSerializer(serializers.ModelSerializer):
    clusters = _names()
    hosts = _names()
    networks = _names()

    class Meta:
        model = Zone
        fields = ["id", "name", "trust_level", "connector", "clusters", "hosts", "networks"]

    def validate(self, attrs):
        from approvals.inventory import InventoryIndex

        connector = attrs.get("connector") or self.instance.connector
        index = InventoryIndex.for_connector(connector, refresh=True)
        errors = {}
        for field, kind in (("clusters", "cluster"), ("hosts", "host"), ("networks", "network")):
            missing = [name for name in attrs.get(field, []) if index.find(kind, name) is None]
            if missing:
                errors[field] = [f"Not in the inventory: {', '.join(missing)}."]
            others = Zone.objects.filter(connector=connector)
            if self.instance is not None:
                others = others.exclude(pk=self.instance.pk)
            taken = {name for zone in others for name in getattr(zone, field)}
            clash = sorted(set(attrs.get(field, [])) & taken)
            if clash:
                errors.setdefault(field, []).append(f"Already labelled with another zone: {', '.join(clash)}.")
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class CatalogueTemplateSerializer(serializers.ModelSerializer):
    class Meta:
        model = CatalogueTemplate
        fields = ["id", "connector", "name", "description"]

    def validate(self, attrs):
        from approvals.inventory import InventoryIndex

        connector = attrs.get("connector") or self.instance.connector
        name = attrs.get("name") or self.instance.name
        if InventoryIndex.for_connector(connector, refresh=True).find("template", name) is None:
            raise serializers.ValidationError({"name": [f"No template VM named {name!r} in the inventory."]})
        return attrs


class ZonePairSerializer(serializers.Serializer):
    source = serializers.CharField(max_length=64)
    target = serializers.CharField(max_length=64)
    required_approvals = serializers.IntegerField(min_value=1, max_value=10, default=2)


class GroupNameField(serializers.SlugRelatedField):
    """A group by name; a NUL character is refused before it reaches PostgreSQL."""

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value="(contains a NUL character)")
        return super().to_internal_value(data)


class PolicySerializer(serializers.ModelSerializer):
    approver_group = GroupNameField(slug_field="name", queryset=Group.objects.all())
    allowed_zone_pairs = ZonePairSerializer(many=True, required=False)
    required_approvals = serializers.IntegerField(min_value=1, max_value=10, required=False)

    class Meta:
        model = Policy
        fields = [
            "id",
            "kind",
            "zone",
            "required_approvals",
            "approver_group",
            "pending_ttl_minutes",
            "max_duration_minutes",
            "max_cpus",
            "max_memory_mb",
            "require_otp",
            "allowed_zone_pairs",
        ]

    def validate_allowed_zone_pairs(self, pairs):
        names = set(Zone.objects.values_list("name", flat=True))
        unknown = sorted({p[k] for p in pairs for k in ("source", "target")} - names)
        if unknown:
            raise serializers.ValidationError(f"Unknown zones: {', '.join(unknown)}.")
        return [dict(p) for p in pairs]


class ApprovalSerializer(serializers.ModelSerializer):
    approver = serializers.CharField(source="approver.username")

    class Meta:
        model = Approval
        fields = ["approver", "decision", "comment", "created_at"]


class TicketSerializer(serializers.ModelSerializer):
    ref = serializers.CharField(read_only=True)
    requester = serializers.CharField(source="requester.username", read_only=True)
    connector_name = serializers.CharField(source="connector.name", read_only=True)
    approver_group = serializers.CharField(source="approver_group.name", read_only=True)
    approvals = ApprovalSerializer(many=True, read_only=True)
    approvals_given = serializers.SerializerMethodField()
    execution = serializers.SerializerMethodField()

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
            "content_hash",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

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


class TicketDetailSerializer(TicketSerializer):
    timeline = serializers.SerializerMethodField()

    class Meta(TicketSerializer.Meta):
        fields = TicketSerializer.Meta.fields + ["timeline"]
        read_only_fields = fields

    @extend_schema_field(TimelineEntrySerializer(many=True))
    def get_timeline(self, ticket) -> list:
        entries = ticket.audit_entries.order_by("seq")
        return TimelineEntrySerializer(entries, many=True).data


class TicketCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=TicketKind.choices)
    connector = serializers.PrimaryKeyRelatedField(queryset=Connector.objects.all())
    justification = serializers.CharField(max_length=4000)
    params = serializers.DictField()
    not_before = serializers.DateTimeField(required=False, allow_null=True)
    not_after = serializers.DateTimeField(required=False, allow_null=True)


class CommentSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=4000, default="")


class ApproveSerializer(CommentSerializer):
    otp = serializers.RegexField(
        r"^[0-9]{6,8}$",
        required=False,
        help_text="A current code from your authenticator, where the policy asks for one.",
    )


class RejectSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=4000)

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit.models import AuditEntry, Finding


class AuditEntrySerializer(serializers.ModelSerializer):
    """An entry with every hashed field and its hash."""

    actor = serializers.CharField(source="actor_name", read_only=True)
    actor_id = serializers.IntegerField(read_only=True, allow_null=True)
    ticket_id = serializers.IntegerField(read_only=True, allow_null=True)
    ticket_ref = serializers.CharField(read_only=True)

    class Meta:
        model = AuditEntry
        fields = [
            "seq",
            "created_at",
            "actor",
            "actor_id",
            "action",
            "ticket_id",
            "ticket_ref",
            "object_type",
            "object_id",
            "source_ip",
            "details",
            "prev_hash",
            "hash",
        ]
        read_only_fields = fields


class ExportedEntrySerializer(serializers.Serializer):
    """One entry of a JSON export (for the schema: exports are streamed)."""

    seq = serializers.IntegerField()
    created_at = serializers.CharField(help_text="ISO 8601, as hashed")
    actor_id = serializers.IntegerField(allow_null=True)
    actor_name = serializers.CharField(allow_blank=True)
    action = serializers.CharField()
    ticket_id = serializers.IntegerField(allow_null=True)
    ticket_ref = serializers.CharField(allow_blank=True)
    object_type = serializers.CharField(allow_blank=True)
    object_id = serializers.CharField(allow_blank=True)
    source_ip = serializers.CharField(allow_null=True)
    details = serializers.DictField()
    prev_hash = serializers.CharField(allow_blank=True)
    hash = serializers.CharField()


class ChainReportSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    checked = serializers.IntegerField()
    first_broken = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    witness = serializers.CharField(help_text='"checked", "not configured", or why the witness could not be asked')
    witnessed_seq = serializers.IntegerField(allow_null=True, help_text="the newest checkpoint the witness cosigned")
    witnessed_at = serializers.CharField(allow_null=True)


class AfterQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(min_value=0, max_value=2**62, default=0)


class LinksQuerySerializer(AfterQuerySerializer):
    upto = serializers.IntegerField(min_value=0, max_value=2**62, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=5000, default=5000)


class CheckpointSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    hash = serializers.CharField()
    signed_at = serializers.CharField(help_text="ISO 8601, as signed")
    public_key = serializers.CharField(help_text="the portal's Ed25519 public key, url-safe base64")
    signature = serializers.CharField(help_text="Ed25519 over audit.signing.checkpoint_message, url-safe base64")


class CheckpointListSerializer(serializers.Serializer):
    public_key = serializers.CharField(allow_blank=True)
    checkpoints = CheckpointSerializer(many=True)


class LinksSerializer(serializers.Serializer):
    links = serializers.ListField(
        # [seq (integer), prev_hash, hash]: mixed types, so each item is any JSON value.
        child=serializers.ListField(child=serializers.JSONField(), min_length=3, max_length=3),
        help_text="[seq, prev_hash, hash], oldest first",
    )


class FindingSerializer(serializers.ModelSerializer):
    connector_name = serializers.CharField(source="connector.name", read_only=True)
    kind_display = serializers.CharField(source="get_kind_display", read_only=True)
    state = serializers.SerializerMethodField()
    acknowledged_by = serializers.CharField(source="acknowledged_by.username", read_only=True, default=None)

    class Meta:
        model = Finding
        fields = [
            "id",
            "connector",
            "connector_name",
            "kind",
            "kind_display",
            "state",
            "object_ref",
            "observed",
            "expected",
            "first_seen",
            "last_seen",
            "acknowledged_at",
            "acknowledged_by",
            "ack_comment",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=["open", "acknowledged"]))
    def get_state(self, finding) -> str:
        return "open" if finding.is_open else "acknowledged"


class AcknowledgeSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=4000)

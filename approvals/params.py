"""The shape of each ticket kind's parameters. Shared by the service (which
validates every submission with them), the API schema and the forms."""

from rest_framework import serializers

from approvals.choices import TicketKind

VM_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$"
PRINCIPAL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]*([\\@][A-Za-z0-9][A-Za-z0-9._\-]*)?$"


class VmCreateParams(serializers.Serializer):
    name = serializers.RegexField(
        VM_NAME_PATTERN, max_length=80, error_messages={"invalid": "Use letters, digits, '.', '_' or '-' (max 80)."}
    )
    template = serializers.CharField(max_length=80)
    cluster = serializers.CharField(max_length=80, required=False, allow_blank=True)
    host = serializers.CharField(max_length=80, required=False, allow_blank=True)
    datastore = serializers.CharField(max_length=80)
    network = serializers.CharField(max_length=80)
    cpus = serializers.IntegerField(min_value=1, max_value=256)
    memory_mb = serializers.IntegerField(min_value=128, max_value=4 * 1024 * 1024)

    def validate(self, attrs):
        if bool(attrs.get("cluster")) == bool(attrs.get("host")):
            raise serializers.ValidationError({"host": ["Give either a cluster or a host, not both."]})
        return attrs


class VmMigrateParams(serializers.Serializer):
    vm = serializers.CharField(max_length=80)
    target_host = serializers.CharField(max_length=80)
    target_datastore = serializers.CharField(max_length=80, required=False, allow_blank=True)


class AdminAccessParams(serializers.Serializer):
    principal = serializers.RegexField(
        PRINCIPAL_PATTERN,
        max_length=120,
        error_messages={"invalid": "A user or group like 'DOMAIN\\\\name' or 'name@domain'."},
    )
    role = serializers.CharField(max_length=80)
    entity = serializers.CharField(max_length=80)
    duration_minutes = serializers.IntegerField(min_value=1)


PARAMS_BY_KIND = {
    TicketKind.VM_CREATE: VmCreateParams,
    TicketKind.VM_MIGRATE: VmMigrateParams,
    TicketKind.ADMIN_ACCESS: AdminAccessParams,
}

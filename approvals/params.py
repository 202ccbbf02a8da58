"""The shape of each ticket kind's parameters. Shared by the service (which
validates every submission with them), the API schema and the forms."""

from rest_framework import serializers

from approvals.choices import TicketKind

VM_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$"
PRINCIPAL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]*([\\@][A-Za-z0-9][A-Za-z0-9._\-]*)?$"


class ObjectField(serializers.CharField):
    """An object of the inventory: its managed-object id ("vm-42"), its
    inventory path ("/lab/vm/prod-vms/web-01") or its name when that is
    unique. Resolved to one identity at submission (approvals.inventory)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 300)
        super().__init__(**kwargs)


class VmCreateParams(serializers.Serializer):
    name = serializers.RegexField(
        VM_NAME_PATTERN, max_length=80, error_messages={"invalid": "Use letters, digits, '.', '_' or '-' (max 80)."}
    )
    template = ObjectField()
    cluster = ObjectField(required=False, allow_blank=True)
    host = ObjectField(required=False, allow_blank=True)
    datastore = ObjectField()
    # One network per network card of the template, in its order, or one for every card.
    networks = serializers.ListField(child=ObjectField(), min_length=1, max_length=10, required=False)
    network = ObjectField(required=False, allow_blank=True, help_text="One network for every card (or use networks).")
    cpus = serializers.IntegerField(min_value=1, max_value=256)
    memory_mb = serializers.IntegerField(min_value=128, max_value=4 * 1024 * 1024)

    def validate(self, attrs):
        if bool(attrs.get("cluster")) == bool(attrs.get("host")):
            raise serializers.ValidationError({"host": ["Give either a cluster or a host, not both."]})
        if attrs.get("network") and attrs.get("networks"):
            raise serializers.ValidationError({"networks": ["Give networks or network, not both."]})
        if attrs.get("network"):
            attrs["networks"] = [attrs.pop("network")]
        attrs.pop("network", None)
        return attrs


class VmMigrateParams(serializers.Serializer):
    vm = ObjectField()
    target_host = ObjectField()
    target_datastore = ObjectField(required=False, allow_blank=True)
    # {a network the VM's cards are on now: the network they move to}
    network_map = serializers.DictField(child=ObjectField(), required=False, allow_empty=True)


class AdminAccessParams(serializers.Serializer):
    principal = serializers.RegexField(
        PRINCIPAL_PATTERN,
        max_length=120,
        error_messages={"invalid": "A user or group like 'DOMAIN\\\\name' or 'name@domain'."},
    )
    role = serializers.CharField(max_length=80)
    entity = ObjectField()
    duration_minutes = serializers.IntegerField(min_value=1)


PARAMS_BY_KIND = {
    TicketKind.VM_CREATE: VmCreateParams,
    TicketKind.VM_MIGRATE: VmMigrateParams,
    TicketKind.ADMIN_ACCESS: AdminAccessParams,
}

"""Shapes the ticket kinds share (each kind's own serializer is in its module
in approvals.kinds): names, principals and inventory objects."""

from rest_framework import serializers

VM_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$"
PRINCIPAL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]*([\\@][A-Za-z0-9][A-Za-z0-9._\-]*)?$"


class ObjectField(serializers.CharField):
    """An object of the inventory: its managed-object id ("vm-42"), its
    inventory path ("/lab/vm/prod-vms/web-01") or its name when that is
    unique. Resolved to one identity at submission (approvals.inventory)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 300)
        super().__init__(**kwargs)

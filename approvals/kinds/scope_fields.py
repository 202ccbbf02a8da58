"""Fields that several kinds' standard-change scopes share
(approvals/standard.py)."""

from __future__ import annotations

from rest_framework import serializers

from approvals.inventory import ZoneLabel
from approvals.models import Zone


class ZoneNames(serializers.ListField):
    """Zones by name, each one a portal admin has labelled somewhere; stored
    sorted, once each."""

    def __init__(self, **kwargs):
        kwargs.setdefault("child", serializers.SlugField(max_length=64))
        kwargs.setdefault("min_length", 1)
        kwargs.setdefault("max_length", 20)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        names = sorted(set(super().to_internal_value(data)))
        unknown = sorted(set(names) - set(Zone.objects.filter(name__in=names).values_list("name", flat=True)))
        if unknown:
            raise serializers.ValidationError(f"Unknown zones: {', '.join(unknown)}.")
        return names


def outside_zones(what: str, zone: ZoneLabel, zones: list[str]) -> list[str]:
    """The misfit of an object outside the scope's zones, as a list of words."""
    if zone.name in zones:
        return []
    return [f"{what} is in zone {zone.label}, not {' or '.join(zones)}"]

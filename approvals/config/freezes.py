"""Freeze windows: blackout periods on a connector or one of its zones,
one-off or recurring by an iCalendar RRULE, in UTC or on the wall clock of
the zone a leading DTSTART;TZID= names (see approvals/freezes.py)."""

from __future__ import annotations

from datetime import UTC

from rest_framework import serializers

from approvals.config.base import ConfigTarget
from approvals.errors import InvalidInput
from approvals.freezes import parse_rule
from approvals.models import FreezeWindow, Zone
from connectors.models import Connector

FIELDS = ("connector", "name", "zone", "starts_at", "ends_at", "rrule", "reason")


class FreezeShape(serializers.Serializer):
    connector = serializers.PrimaryKeyRelatedField(queryset=Connector.objects.all())
    name = serializers.SlugField(max_length=64)
    zone = serializers.SlugField(max_length=64, allow_blank=True, required=False)
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    rrule = serializers.CharField(max_length=500, allow_blank=True, required=False)
    reason = serializers.CharField(max_length=300, allow_blank=True, required=False)


class FreezeTarget(ConfigTarget):
    name = "freeze"
    title = "freeze window"
    model = FreezeWindow
    shape = FreezeShape
    create_only = ("connector",)

    def snapshot(self, freeze) -> dict:
        return {
            "connector": freeze.connector_id,
            "name": freeze.name,
            "zone": freeze.zone,
            "starts_at": freeze.starts_at.astimezone(UTC).isoformat(),
            "ends_at": freeze.ends_at.astimezone(UTC).isoformat(),
            "rrule": freeze.rrule,
            "reason": freeze.reason,
        }

    def after(self, *, action, instance, before, changes, requester):
        if action == "create":
            before = {"zone": "", "rrule": "", "reason": ""}
        changes = {k: v for k, v in changes.items() if k in FIELDS}
        return super().after(action=action, instance=instance, before=before, changes=changes, requester=requester)

    def plain(self, validated, *, raw, before):
        plain = super().plain(validated, raw=raw, before=before)
        for field in ("starts_at", "ends_at"):
            if field in plain:
                plain[field] = plain[field].astimezone(UTC).isoformat()
        if "rrule" in plain:
            plain["rrule"] = plain["rrule"].strip()
        return plain

    def rules(self, *, action, instance, before, after, requester):
        from django.utils.dateparse import parse_datetime

        errors: dict[str, list[str]] = {}
        starts_at, ends_at = parse_datetime(after["starts_at"]), parse_datetime(after["ends_at"])
        if ends_at <= starts_at:
            errors["ends_at"] = ["Must be after starts_at."]
        if after["rrule"]:
            try:
                parse_rule(after["rrule"], starts_at)
            except ValueError as exc:
                errors["rrule"] = [str(exc)]
        connector = Connector.objects.get(pk=after["connector"])
        if after["zone"] and not Zone.objects.filter(connector=connector, name=after["zone"]).exists():
            errors["zone"] = [f"{connector.name} has no zone {after['zone']!r}."]
        others = FreezeWindow.objects.filter(connector=connector, name=after["name"])
        if instance is not None:
            others = others.exclude(pk=instance.pk)
        if others.exists():
            errors["name"] = [f"{connector.name} has a freeze named {after['name']!r} already."]
        if errors:
            raise InvalidInput(errors)

    def apply(self, *, action, instance, after, actor_name):
        if action == "delete":
            instance.delete()
            return None
        freeze = instance or FreezeWindow()
        freeze.connector_id = after["connector"]
        for field in FIELDS[1:]:
            setattr(freeze, field, after[field])
        freeze.full_clean()
        freeze.save()
        return freeze


TARGET = FreezeTarget()

"""Security zones: which clusters, hosts, datastores (and datastore
clusters) and networks of a connector carry which trust level. Labels are
given by name, id or path and stored as managed-object ids, so a later
rename or a namesake elsewhere changes nothing."""

from __future__ import annotations

from rest_framework import serializers

from approvals.config.base import ConfigTarget
from approvals.errors import InvalidInput
from approvals.models import Zone
from connectors.models import Connector

LABELLED = (
    ("clusters", ("cluster",)),
    ("hosts", ("host",)),
    ("datastores", ("datastore", "datastore_cluster")),
    ("networks", ("network",)),
)


def _names():
    return serializers.ListField(child=serializers.CharField(max_length=80), required=False, max_length=500)


class ZoneShape(serializers.Serializer):
    connector = serializers.PrimaryKeyRelatedField(queryset=Connector.objects.all())
    name = serializers.SlugField(max_length=64)
    trust_level = serializers.IntegerField(min_value=0, max_value=1000)
    clusters = _names()
    hosts = _names()
    datastores = _names()
    networks = _names()


class ZoneTarget(ConfigTarget):
    name = "zone"
    title = "zone"
    model = Zone
    shape = ZoneShape
    create_only = ("connector",)

    def snapshot(self, zone) -> dict:
        return {
            "connector": zone.connector_id,
            "name": zone.name,
            "trust_level": zone.trust_level,
            "clusters": list(zone.clusters),
            "hosts": list(zone.hosts),
            "datastores": list(zone.datastores),
            "networks": list(zone.networks),
        }

    def after(self, *, action, instance, before, changes, requester):
        if action == "create":
            before = {"clusters": [], "hosts": [], "datastores": [], "networks": []}
        return super().after(action=action, instance=instance, before=before, changes=changes, requester=requester)

    def plain(self, validated, *, raw, before):
        """Labels as managed-object ids (resolved by name, id or path)."""
        from approvals.inventory import StoredIndex

        plain = super().plain(validated, raw=raw, before=before)
        if not any(field in plain for field, _ in LABELLED):
            return plain
        connector = validated.get("connector") or Connector.objects.get(pk=before["connector"])
        index = StoredIndex.for_connector(connector, refresh=True)
        errors: dict[str, list[str]] = {}
        for field, kinds in LABELLED:
            if field in plain:
                ids = []
                for value in plain[field]:
                    found = index.resolve_field(errors, field, kinds, value)
                    if found:
                        ids.append(found[1].id)
                plain[field] = sorted(set(ids))
        if errors:
            raise InvalidInput(errors)
        return plain

    def rules(self, *, action, instance, before, after, requester):
        from approvals.inventory import StoredIndex

        connector = Connector.objects.get(pk=after["connector"])
        others = Zone.objects.filter(connector=connector)
        if instance is not None:
            others = others.exclude(pk=instance.pk)
        errors: dict[str, list[str]] = {}
        if others.filter(name=after["name"]).exists():
            errors["name"] = [f"{connector.name} has a zone named {after['name']!r} already."]
        index = StoredIndex.for_connector(connector, refresh=True)
        for field, kinds in LABELLED:
            missing = [value for value in after[field] if index.get(value, kinds) is None]
            if missing:
                errors[field] = [f"Not in the inventory: {', '.join(missing)}."]
            taken = {name for zone in others for name in getattr(zone, field)}
            clash = sorted(set(after[field]) & taken)
            if clash:
                errors.setdefault(field, []).append(f"Already labelled with another zone: {', '.join(clash)}.")
        if errors:
            raise InvalidInput(errors)

    def check_delete(self, zone) -> None:
        if zone.policies.exists():
            raise InvalidInput({"object_id": [f"Policies name zone {zone.name}; change or delete them first."]})
        if zone.chat_hooks.exists():
            raise InvalidInput({"object_id": [f"Chat webhooks name zone {zone.name}; change or delete them first."]})

    def apply(self, *, action, instance, after, actor_name):
        if action == "delete":
            instance.delete()
            return None
        zone = instance or Zone()
        zone.connector_id = after["connector"]
        for field in ("name", "trust_level", "clusters", "hosts", "datastores", "networks"):
            setattr(zone, field, after[field])
        zone.full_clean()
        zone.save()
        return zone


TARGET = ZoneTarget()

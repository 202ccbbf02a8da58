"""The template catalogue: the vetted images vm_create may clone."""

from __future__ import annotations

from rest_framework import serializers

from approvals.config.base import ConfigTarget
from approvals.errors import InvalidInput
from approvals.models import CatalogueTemplate
from connectors.models import Connector


class TemplateShape(serializers.Serializer):
    connector = serializers.PrimaryKeyRelatedField(queryset=Connector.objects.all())
    name = serializers.CharField(max_length=80)
    description = serializers.CharField(max_length=2000, allow_blank=True, required=False)


class TemplateTarget(ConfigTarget):
    name = "template"
    title = "catalogue template"
    model = CatalogueTemplate
    shape = TemplateShape
    create_only = ("connector",)

    def snapshot(self, template) -> dict:
        return {
            "connector": template.connector_id,
            "name": template.name,
            "template_id": template.template_id,
            "description": template.description,
        }

    def after(self, *, action, instance, before, changes, requester):
        if action == "create":
            before = {"description": "", "template_id": ""}
        changes = {k: v for k, v in changes.items() if k != "template_id"}
        return super().after(action=action, instance=instance, before=before, changes=changes, requester=requester)

    def plain(self, validated, *, raw, before):
        """The entry names one template VM: resolved now (by name, id or
        path; an ambiguous name is refused) and kept by its id."""
        from approvals.inventory import InventoryIndex
        from approvals.inventory.index import Unresolved

        plain = super().plain(validated, raw=raw, before=before)
        if "name" in plain:
            connector = validated.get("connector") or Connector.objects.get(pk=before["connector"])
            try:
                _, template = InventoryIndex.for_connector(connector, refresh=True).resolve(
                    ("template",), plain["name"]
                )
            except Unresolved as exc:
                raise InvalidInput({"name": [str(exc)]}) from exc
            plain["name"], plain["template_id"] = template.name, template.id
        return plain

    def rules(self, *, action, instance, before, after, requester):
        from approvals.inventory import InventoryIndex

        connector = Connector.objects.get(pk=after["connector"])
        others = CatalogueTemplate.objects.filter(connector=connector, name=after["name"])
        if instance is not None:
            others = others.exclude(pk=instance.pk)
        if others.exists():
            raise InvalidInput({"name": [f"{after['name']!r} is in the catalogue already."]})
        template = InventoryIndex.for_connector(connector, refresh=True).get(after.get("template_id"), ("template",))
        if template is None:
            raise InvalidInput(
                {"name": [f"No template VM {after['name']!r} ({after.get('template_id')}) in the inventory."]}
            )

    def apply(self, *, action, instance, after, actor_name):
        if action == "delete":
            instance.delete()
            return None
        template = instance or CatalogueTemplate()
        template.connector_id = after["connector"]
        template.name = after["name"]
        template.template_id = after["template_id"]
        template.description = after["description"]
        template.full_clean()
        template.save()
        return template


TARGET = TemplateTarget()

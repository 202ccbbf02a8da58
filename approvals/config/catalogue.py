"""The template catalogue: the vetted images vm_create may clone. An entry
vouches for one template VM (by id), until its expiry, as it was when the
worker applied the vetting: the fingerprint (approvals.images) is read live
then. A create, a change of name or expiry, and the `revet` action are
vettings: the requester vouches, the worker takes a fresh fingerprint."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from approvals.config.base import CREATE, DELETE, UPDATE, ConfigTarget
from approvals.errors import InvalidInput
from approvals.models import CatalogueTemplate
from connectors.models import Connector

REVET = "revet"
# Set by the vetting itself, never by a request.
VETTING_FIELDS = ("template_id", "vetted_by", "vetted_at", "fingerprint")
NEW_ENTRY = {
    "description": "",
    "template_id": "",
    "vetted_by": "",
    "vetted_at": None,
    "vetted_until": None,
    "fingerprint": {},
}


class TemplateShape(serializers.Serializer):
    connector = serializers.PrimaryKeyRelatedField(queryset=Connector.objects.all())
    name = serializers.CharField(max_length=80)
    description = serializers.CharField(max_length=2000, allow_blank=True, required=False)
    vetted_until = serializers.DateTimeField(
        required=False, help_text="When the vetting ends; by default CATALOGUE_VETTING_DAYS from now."
    )


def _iso(value) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


class TemplateTarget(ConfigTarget):
    name = "template"
    title = "catalogue template"
    model = CatalogueTemplate
    shape = TemplateShape
    actions = (CREATE, UPDATE, DELETE, REVET)
    create_only = ("connector",)

    def snapshot(self, template) -> dict:
        return {
            "connector": template.connector_id,
            "name": template.name,
            "template_id": template.template_id,
            "description": template.description,
            "vetted_by": template.vetted_by,
            "vetted_at": _iso(template.vetted_at),
            "vetted_until": _iso(template.vetted_until),
            "fingerprint": template.fingerprint,
        }

    def after(self, *, action, instance, before, changes, requester):
        if action == CREATE:
            before = {**NEW_ENTRY}
        changes = {k: v for k, v in changes.items() if k not in VETTING_FIELDS}
        vetting = action in (CREATE, REVET) or any(
            k in changes and changes[k] != before.get(k) for k in ("name", "vetted_until")
        )
        after = super().after(
            action=UPDATE if action == REVET else action,
            instance=instance,
            before=before,
            changes=changes,
            requester=requester,
        )
        if action == DELETE or not vetting:
            return after
        if action == CREATE and not after.get("vetted_until"):
            after["vetted_until"] = (timezone.now() + timedelta(days=settings.CATALOGUE_VETTING_DAYS)).isoformat()
        # Who vouches; when and for what image is taken when the worker applies it.
        after.update(vetted_by=requester.get_username(), vetted_at=None, fingerprint={})
        self._check_expiry(after)
        return after

    @staticmethod
    def _check_expiry(after: dict) -> None:
        until = parse_datetime(after["vetted_until"]) if after.get("vetted_until") else None
        if until is None or until <= timezone.now():
            raise InvalidInput({"vetted_until": ["A vetting must end in the future."]})

    def plain(self, validated, *, raw, before):
        """The entry names one template VM: resolved now (by name, id or
        path; an ambiguous name is refused) and kept by its id."""
        from approvals.inventory import StoredIndex
        from approvals.inventory.index import Unresolved

        plain = {k: _iso(v) for k, v in super().plain(validated, raw=raw, before=before).items()}
        if "name" in plain:
            connector = validated.get("connector") or Connector.objects.get(pk=before["connector"])
            try:
                _, template = StoredIndex.for_connector(connector, refresh=True).resolve(("template",), plain["name"])
            except Unresolved as exc:
                raise InvalidInput({"name": [str(exc)]}) from exc
            plain["name"], plain["template_id"] = template.name, template.id
        return plain

    def rules(self, *, action, instance, before, after, requester):
        from approvals.inventory import StoredIndex

        connector = Connector.objects.get(pk=after["connector"])
        others = CatalogueTemplate.objects.filter(connector=connector, name=after["name"])
        if instance is not None:
            others = others.exclude(pk=instance.pk)
        if others.exists():
            raise InvalidInput({"name": [f"{after['name']!r} is in the catalogue already."]})
        template = StoredIndex.for_connector(connector, refresh=True).get(after.get("template_id"), ("template",))
        if template is None:
            raise InvalidInput(
                {"name": [f"No template VM {after['name']!r} ({after.get('template_id')}) in the inventory."]}
            )
        if after.get("vetted_by") and not after.get("fingerprint"):  # a vetting still to be applied
            self._check_expiry(after)

    def apply(self, *, action, instance, after, actor_name):
        """Write the entry; a vetting reads the template live (this runs in
        the worker, the only process that reaches the hypervisor)."""
        from connectors.registry import connector_for

        if action == DELETE:
            instance.delete()
            return None
        template = instance or CatalogueTemplate()
        template.connector_id = after["connector"]
        template.name = after["name"]
        template.template_id = after["template_id"]
        template.description = after["description"]
        template.vetted_until = parse_datetime(after["vetted_until"]) if after.get("vetted_until") else None
        if after.get("vetted_by") and not after.get("fingerprint"):
            connector = Connector.objects.get(pk=after["connector"])
            image = connector_for(connector.kind, connector.connection_config()).read_template(template.template_id)
            template.vetted_by, template.vetted_at, template.fingerprint = (
                after["vetted_by"],
                timezone.now(),
                image.fingerprint(),
            )
        template.full_clean()
        template.save()
        return template

    def display(self, state: dict) -> dict:
        if state and "fingerprint" in state and not state.get("fingerprint"):
            return {**state, "vetted_at": "when applied", "fingerprint": "read from the template when applied"}
        return state


TARGET = TemplateTarget()

"""Hypervisor connections. A password given in a request is sealed at once
to the worker's public key: the web never holds it in the clear after the
request, and only the worker, applying an approved request, opens it. A new
URL, username or TLS setting needs the password again, so the stored one is
never sent anywhere new."""

from __future__ import annotations

from rest_framework import serializers

from approvals.config.base import ConfigTarget
from approvals.errors import InvalidInput
from connectors.models import Connector

# Changing any of these points the stored password at something new.
ENDPOINT_FIELDS = ("url", "username", "verify_tls")
SEALED = "(new password, sealed for the worker)"


class ConnectorShape(serializers.Serializer):
    name = serializers.SlugField(max_length=64)
    kind = serializers.ChoiceField(choices=Connector.Kind.choices, required=False)
    url = serializers.URLField(max_length=300)
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=500, trim_whitespace=False, required=False, write_only=True)
    verify_tls = serializers.BooleanField(required=False)


class ConnectorTarget(ConfigTarget):
    name = "connector"
    title = "connector"
    model = Connector
    shape = ConnectorShape
    create_only = ("kind",)

    def snapshot(self, connector) -> dict:
        return {
            "name": connector.name,
            "kind": connector.kind,
            "url": connector.url,
            "username": connector.username,
            "verify_tls": connector.verify_tls,
        }

    def after(self, *, action, instance, before, changes, requester):
        if action == "create":
            before = {"kind": Connector.Kind.VSPHERE, "verify_tls": True}
        return super().after(action=action, instance=instance, before=before, changes=changes, requester=requester)

    def plain(self, validated, *, raw, before):
        from connectors import credentials

        plain = dict(validated)
        if plain.get("password"):
            plain["password"] = credentials.seal(plain["password"])
        else:
            plain.pop("password", None)
        return plain

    def rules(self, *, action, instance, before, after, requester):
        errors: dict[str, list[str]] = {}
        others = Connector.objects.filter(name=after["name"])
        if instance is not None:
            others = others.exclude(pk=instance.pk)
        if others.exists():
            errors["name"] = [f"A connector named {after['name']!r} exists already."]
        moved = [f for f in ENDPOINT_FIELDS if instance is not None and after.get(f) != before.get(f)]
        if "password" not in after and (instance is None or moved):
            errors["password"] = [
                "Give the password: a new connector needs it, and so does a change of "
                f"{', '.join(moved) if moved else 'url, username or TLS setting'}."
            ]
        if errors:
            raise InvalidInput(errors)

    def check_delete(self, connector) -> None:
        used = [
            what
            for what, exists in (
                ("tickets", connector.tickets.exists()),
                ("zones", connector.zones.exists()),
                ("catalogue templates", connector.templates.exists()),
                ("findings", connector.findings.exists()),
                ("freeze windows", connector.freezes.exists()),
            )
            if exists
        ]
        if used:
            raise InvalidInput({"object_id": [f"{connector.name} is still referenced by {', '.join(used)}."]})

    def apply(self, *, action, instance, after, actor_name):
        from approvals.services.connectors import connector_register, connector_update

        if action == "delete":
            instance.delete()
            return None
        if action == "create":
            return connector_register(
                actor_name=actor_name,
                name=after["name"],
                kind=after["kind"],
                url=after["url"],
                username=after["username"],
                verify_tls=after["verify_tls"],
                sealed_password=after["password"],
            )
        current = self.snapshot(instance)
        data = {f: after[f] for f in current if after[f] != current[f]}
        return connector_update(
            actor_name=actor_name, connector=instance, data=data, sealed_password=after.get("password")
        )

    def display(self, state: dict) -> dict:
        return {**state, "password": SEALED} if "password" in state else state


TARGET = ConnectorTarget()

"""Chat webhooks (Slack, Mattermost, Microsoft Teams) per policy, per zone
or for every ticket. Whoever holds a webhook URL can post to the channel, so
it is sealed to the worker's key the moment a request names it, like a
connector password: pages, the API and the audit log show only its hint
(scheme and host); only the worker, delivering, opens it."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from rest_framework import serializers

from approvals.config.base import ConfigTarget
from approvals.errors import InvalidInput
from approvals.models import ChatHook, Policy, Zone

SEALED = "(sealed for the worker)"


def url_hint(url: str) -> str:
    """What people may see of a webhook URL: scheme and host."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/…"


class ChatHookShape(serializers.Serializer):
    name = serializers.SlugField(max_length=64)
    service = serializers.ChoiceField(choices=ChatHook.Service.choices)
    url = serializers.URLField(max_length=1000, write_only=True, required=False)
    policy = serializers.PrimaryKeyRelatedField(queryset=Policy.objects.all(), allow_null=True, required=False)
    zone = serializers.PrimaryKeyRelatedField(queryset=Zone.objects.all(), allow_null=True, required=False)


class ChatHookTarget(ConfigTarget):
    name = "chat_hook"
    title = "chat webhook"
    model = ChatHook
    shape = ChatHookShape

    def snapshot(self, hook) -> dict:
        return {
            "name": hook.name,
            "service": hook.service,
            "url": hook.url_sealed,
            "url_hint": hook.url_hint,
            "policy": hook.policy_id,
            "zone": hook.zone_id,
        }

    def after(self, *, action, instance, before, changes, requester):
        if action == "create":
            before = {"policy": None, "zone": None}
        changes = {k: v for k, v in changes.items() if k in ChatHookShape().fields}
        return super().after(action=action, instance=instance, before=before, changes=changes, requester=requester)

    def plain(self, validated, *, raw, before):
        from connectors import credentials

        plain = super().plain(validated, raw=raw, before=before)
        if plain.get("url"):
            url = plain["url"]
            if urlsplit(url).scheme != "https" and not settings.CHAT_WEBHOOK_ALLOW_HTTP:
                raise InvalidInput({"url": ["A webhook URL must be https."]})
            plain["url_hint"] = url_hint(url)
            plain["url"] = credentials.seal(url)
        return plain

    def rules(self, *, action, instance, before, after, requester):
        errors: dict[str, list[str]] = {}
        if not after.get("url"):
            errors["url"] = ["Give the webhook URL."]
        if after.get("policy") and after.get("zone"):
            errors["zone"] = ["Name a policy or a zone, not both (neither: every ticket)."]
        others = ChatHook.objects.filter(name=after["name"])
        if instance is not None:
            others = others.exclude(pk=instance.pk)
        if others.exists():
            errors["name"] = [f"A chat webhook named {after['name']!r} exists already."]
        if errors:
            raise InvalidInput(errors)

    def apply(self, *, action, instance, after, actor_name):
        if action == "delete":
            instance.delete()
            return None
        hook = instance or ChatHook()
        hook.name, hook.service = after["name"], after["service"]
        hook.url_sealed, hook.url_hint = after["url"], after["url_hint"]
        hook.policy_id, hook.zone_id = after["policy"], after["zone"]
        hook.full_clean()
        hook.save()
        return hook

    def display(self, state: dict) -> dict:
        return {**state, "url": SEALED} if "url" in state else state


TARGET = ChatHookTarget()

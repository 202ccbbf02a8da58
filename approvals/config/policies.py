"""Approval policies. Who approves is fixed by kind: configuration changes
go to portal admins, hypervisor changes to approvers; no policy can route
approvals to a group of someone's choosing."""

from __future__ import annotations

from django.contrib.auth.models import Group
from rest_framework import serializers

from approvals import standard
from approvals.choices import Role, TicketKind
from approvals.config.base import ConfigTarget
from approvals.errors import InvalidInput
from approvals.inventory.index import looks_like_moid
from approvals.models import CatalogueTemplate, Policy, Zone

# A VM removed is not got back: two approvals unless a policy says otherwise.
DECOMMISSION_APPROVALS = 2


def approver_roles_for(kind: str) -> tuple[str, ...]:
    """The role groups that may approve tickets of `kind`."""
    return (Role.PORTAL_ADMIN,) if kind == TicketKind.CONFIG_CHANGE else (Role.APPROVER,)


class ZonePairShape(serializers.Serializer):
    source = serializers.CharField(max_length=64)
    target = serializers.CharField(max_length=64)
    required_approvals = serializers.IntegerField(min_value=1, max_value=10, default=2)


class PolicyShape(serializers.Serializer):
    kind = serializers.ChoiceField(choices=TicketKind.choices)
    zone = serializers.PrimaryKeyRelatedField(queryset=Zone.objects.all(), allow_null=True, required=False)
    required_approvals = serializers.IntegerField(min_value=1, max_value=10, required=False)
    approver_group = serializers.SlugRelatedField(slug_field="name", queryset=Group.objects.all(), required=False)
    pending_ttl_minutes = serializers.IntegerField(min_value=1, max_value=90 * 24 * 60, required=False)
    max_duration_minutes = serializers.IntegerField(min_value=1, max_value=30 * 24 * 60, required=False)
    max_cpus = serializers.IntegerField(min_value=1, max_value=256, required=False)
    max_memory_mb = serializers.IntegerField(min_value=128, max_value=4 * 1024 * 1024, required=False)
    max_nics = serializers.IntegerField(min_value=1, max_value=10, required=False)
    require_otp = serializers.BooleanField(required=False)
    require_passkey = serializers.BooleanField(required=False)
    allowed_zone_pairs = ZonePairShape(many=True, required=False)
    grantable_roles = serializers.ListField(child=serializers.CharField(max_length=80), max_length=50, required=False)
    top_level_entities = serializers.ListField(
        child=serializers.CharField(max_length=80), max_length=20, required=False
    )
    # Checked against the kind's own scope fields in rules() (approvals/standard.py).
    standard_scope = serializers.DictField(required=False, allow_empty=True)

    def to_internal_value(self, data):
        group = data.get("approver_group") if isinstance(data, dict) else None
        if isinstance(group, str) and "\x00" in group:
            raise serializers.ValidationError({"approver_group": ["Contains a NUL character."]})
        return super().to_internal_value(data)


FIELDS = (
    "kind",
    "zone",
    "required_approvals",
    "approver_group",
    "pending_ttl_minutes",
    "max_duration_minutes",
    "max_cpus",
    "max_memory_mb",
    "max_nics",
    "require_otp",
    "require_passkey",
    "allowed_zone_pairs",
    "grantable_roles",
    "top_level_entities",
    "standard_scope",
)


class PolicyTarget(ConfigTarget):
    name = "policy"
    title = "policy"
    model = Policy
    shape = PolicyShape
    create_only = ("kind", "zone")

    def label(self, state: dict) -> str:
        zone = Zone.objects.filter(pk=state.get("zone")).values_list("name", flat=True).first() if state else None
        return f"{state.get('kind', '')} ({zone or 'any zone'})"

    def snapshot(self, policy) -> dict:
        return {
            "kind": policy.kind,
            "zone": policy.zone_id,
            "required_approvals": policy.required_approvals,
            "approver_group": policy.approver_group.name,
            "pending_ttl_minutes": policy.pending_ttl_minutes,
            "max_duration_minutes": policy.max_duration_minutes,
            "max_cpus": policy.max_cpus,
            "max_memory_mb": policy.max_memory_mb,
            "max_nics": policy.max_nics,
            "require_otp": policy.require_otp,
            "require_passkey": policy.require_passkey,
            "allowed_zone_pairs": list(policy.allowed_zone_pairs),
            "grantable_roles": list(policy.grantable_roles),
            "top_level_entities": list(policy.top_level_entities),
            "standard_scope": dict(policy.standard_scope or {}),
        }

    def after(self, *, action, instance, before, changes, requester):
        if action == "create":
            defaults = {f.name: f.get_default() for f in Policy._meta.fields if f.name in FIELDS and f.has_default()}
            kind = changes.get("kind")
            before = {
                **defaults,
                "zone": None,
                "allowed_zone_pairs": [],
                "grantable_roles": [],
                "top_level_entities": [],
                "standard_scope": {},
                "approver_group": approver_roles_for(kind)[0] if kind in TicketKind.values else "",
            }
            if kind == TicketKind.VM_DECOMMISSION:
                before["required_approvals"] = DECOMMISSION_APPROVALS
        changes = {k: v for k, v in changes.items() if k in FIELDS}
        return super().after(action=action, instance=instance, before=before, changes=changes, requester=requester)

    def plain(self, validated, *, raw, before):
        plain = super().plain(validated, raw=raw, before=before)
        if "approver_group" in plain:
            plain["approver_group"] = validated["approver_group"].name
        if "allowed_zone_pairs" in plain:
            plain["allowed_zone_pairs"] = [dict(p) for p in validated["allowed_zone_pairs"]]
        return plain

    def rules(self, *, action, instance, before, after, requester):
        errors: dict[str, list[str]] = {}
        allowed = approver_roles_for(after["kind"])
        if after["approver_group"] not in allowed:
            errors["approver_group"] = [
                f"{after['kind']} tickets are approved by {' or '.join(allowed)}; not {after['approver_group']!r}."
            ]
        if after["kind"] == TicketKind.CONFIG_CHANGE and after.get("zone"):
            errors["zone"] = ["Configuration changes have no zone."]
        if after["kind"] != TicketKind.ADMIN_ACCESS:
            for field in ("grantable_roles", "top_level_entities"):
                if after.get(field):
                    errors[field] = ["Only admin_access policies grant roles."]
        for entity in after.get("top_level_entities", []):
            if not looks_like_moid(entity):
                errors.setdefault("top_level_entities", []).append(
                    f"{entity!r}: name the root folder or a datacenter by its managed-object id."
                )
        names = set(Zone.objects.values_list("name", flat=True))
        self._standard_rules(errors, after, names)
        unknown = sorted({p[k] for p in after.get("allowed_zone_pairs", []) for k in ("source", "target")} - names)
        if unknown:
            errors["allowed_zone_pairs"] = [f"Unknown zones: {', '.join(unknown)}."]
        others = Policy.objects.filter(kind=after["kind"], zone_id=after.get("zone"))
        if instance is not None:
            others = others.exclude(pk=instance.pk)
        if others.exists():
            errors["kind"] = [f"A policy for {after['kind']} in this zone exists already; change that one."]
        if errors:
            raise InvalidInput(errors)

    def check_delete(self, policy) -> None:
        if policy.chat_hooks.exists():
            raise InvalidInput({"object_id": ["Chat webhooks name this policy; change or delete them first."]})

    def _standard_rules(self, errors: dict, after: dict, zone_names: set[str]) -> None:
        """A standard-change scope holds the kind's own fields, names zones
        that exist, and stays inside the policy's own limits."""
        scope = after.get("standard_scope") or {}
        if not scope:
            return
        if after["kind"] == TicketKind.CONFIG_CHANGE:
            errors["standard_scope"] = ["Configuration changes are never standard."]
            return
        problem = standard.scope_errors(after["kind"], scope)
        if problem:
            errors["standard_scope"] = (
                problem
                if isinstance(problem, list)
                else [f"{field}: {'; '.join(words)}" for field, words in problem.items()]
            )
            return
        scope = standard.clean_scope(after["kind"], scope)
        words = []
        if scope.get("zone") and scope["zone"] not in zone_names:
            words.append(f"Unknown zone {scope['zone']!r}.")
        if "role" in scope and scope["role"] not in (after.get("grantable_roles") or []):
            words.append(f"The policy does not grant {scope['role']!r} at all.")
        if scope.get("max_minutes", 0) > after.get("max_duration_minutes", 0):
            words.append("max_minutes is above the policy's max_duration_minutes.")
        if scope.get("max_cpus", 0) > after.get("max_cpus", 0):
            words.append("max_cpus is above the policy's max_cpus.")
        if scope.get("max_memory_mb", 0) > after.get("max_memory_mb", 0):
            words.append("max_memory_mb is above the policy's max_memory_mb.")
        if "template" in scope and not CatalogueTemplate.objects.filter(name=scope["template"]).exists():
            words.append(f"{scope['template']!r} is not in the template catalogue.")
        if after.get("require_otp") or after.get("require_passkey"):
            words.append("A policy that asks approvers for a one-time password or passkey has no standard change.")
        if words:
            errors["standard_scope"] = words

    def apply(self, *, action, instance, after, actor_name):
        if action == "delete":
            instance.delete()
            return None
        policy = instance or Policy()
        for field in FIELDS:
            value = after[field]
            if field == "approver_group":
                policy.approver_group = Group.objects.get(name=value)
            elif field == "zone":
                policy.zone_id = value
            elif field == "standard_scope":
                policy.standard_scope = standard.clean_scope(after["kind"], value or {})
            else:
                setattr(policy, field, value)
        policy.full_clean()
        policy.save()
        return policy

    def applied(self, instance) -> dict:
        # What the worker holds a standard change's policy to: the digest
        # of the policy as this approved request left it.
        return {"digest": instance.digest()} if instance is not None else {}


TARGET = PolicyTarget()

"""The shape every kind of configuration object shares: what a request about
it may change, how its current state is read (the "before" an approver sees
and the worker compares), the rules a change must meet, and how the worker
applies it. Rules live here, so the API, the pages and the worker's re-check
enforce the same ones."""

from __future__ import annotations

from typing import Any, ClassVar

from django.core.exceptions import PermissionDenied
from rest_framework import serializers

from approvals.errors import InvalidInput

CREATE, UPDATE, DELETE = "create", "update", "delete"


def shape_errors(serializer: serializers.Serializer) -> dict:
    def words(errors):
        if isinstance(errors, dict):
            return {field: words(value) for field, value in errors.items()}
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return {str(i): words(e) for i, e in enumerate(errors) if e}
        return [str(e) for e in errors]

    return words(serializer.errors)


class ConfigTarget:
    """One kind of configuration object. Subclasses set the class attributes
    and may override `rules`, `changed`, `apply_*`."""

    name: ClassVar[str]
    title: ClassVar[str]
    model: ClassVar[type]
    shape: ClassVar[type[serializers.Serializer]]
    actions: ClassVar[tuple[str, ...]] = (CREATE, UPDATE, DELETE)
    # Fields a create must name and an update may not change.
    create_only: ClassVar[tuple[str, ...]] = ()

    def get(self, object_id) -> Any:
        try:
            return self.model.objects.get(pk=int(object_id))
        except (TypeError, ValueError, self.model.DoesNotExist) as exc:
            raise InvalidInput({"object_id": [f"No {self.title} with id {object_id!r}."]}) from exc

    def label(self, state: dict) -> str:
        return str(state.get("name", ""))

    def snapshot(self, instance) -> dict:
        """The object as plain JSON: what an approver sees as "before"."""
        raise NotImplementedError

    def after(self, *, action: str, instance, before: dict, changes: dict, requester) -> dict:
        """The object as it would be after the change, checked against every
        rule. Raises InvalidInput (field errors) or PermissionDenied."""
        if action not in self.actions:
            raise InvalidInput({"action": [f"A {self.title} takes {', '.join(self.actions)}; not {action!r}."]})
        if action == DELETE:
            self.check_delete(instance)
            return {}
        if action in (CREATE, UPDATE):
            changes = self.normalise(changes)
            if action == UPDATE:
                fixed = sorted(set(changes) & set(self.create_only))
                fixed = [f for f in fixed if changes[f] != before.get(f)]
                if fixed:
                    raise InvalidInput({f: ["Cannot be changed once created."] for f in fixed})
            shape = self.shape(data=changes, partial=action == UPDATE)
            if not shape.is_valid():
                raise InvalidInput(shape_errors(shape))
            after = {**before, **self.plain(shape.validated_data, raw=changes, before=before)}
        else:
            after = self.other_action(action=action, instance=instance, before=before)
        self.rules(action=action, instance=instance, before=before, after=after, requester=requester)
        return after

    def normalise(self, changes: dict) -> dict:
        return dict(changes)

    def plain(self, validated: dict, *, raw: dict, before: dict) -> dict:
        """Validated values as JSON (objects by id or name)."""
        return {k: (v.pk if hasattr(v, "pk") else v) for k, v in validated.items()}

    def other_action(self, *, action: str, instance, before: dict) -> dict:
        raise InvalidInput({"action": [f"Unknown action {action!r}."]})

    def rules(self, *, action: str, instance, before: dict, after: dict, requester) -> None:
        """Rules across fields and objects; raise InvalidInput."""

    def check_delete(self, instance) -> None:
        """Raise InvalidInput when the object is still needed."""

    def changed(self, before: dict, after: dict) -> dict:
        """{field: {"from": ..., "to": ...}} for what moves."""
        return {k: {"from": before.get(k), "to": v} for k, v in after.items() if before.get(k) != v}

    def apply(self, *, action: str, instance, after: dict, actor_name: str):
        """Write the change (inside the caller's transaction); returns the object."""
        raise NotImplementedError

    def applied(self, instance) -> dict:
        """What the audit entry of an applied request adds about the object
        as it now is (for a policy, its digest)."""
        return {}

    def display(self, state: dict) -> dict:
        """`state` as approvers and the API see it (no secrets)."""
        return state


def refuse_self(requester, user) -> None:
    if user is not None and requester is not None and user.pk == requester.pk:
        raise PermissionDenied("Nobody files a request about their own account or roles; ask another portal admin.")

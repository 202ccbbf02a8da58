"""People and their roles. The service refuses a request about the
requester's own account; the rules here hold for everyone."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.db.models.functions import Lower
from rest_framework import serializers

from accounts.models import AccountState
from accounts.role_log import ROLE_GROUPS
from accounts.services import password_bind, password_bound
from approvals.choices import Role
from approvals.config.base import CREATE, UPDATE, ConfigTarget
from approvals.errors import InvalidInput
from approvals.params import PRINCIPAL_PATTERN

DEACTIVATE, REACTIVATE, OTP_RESET = "deactivate", "reactivate", "otp_reset"
# A portal admin decides who may act; holding a ticket role as well would let
# one person shape the rules and then use them (break_glass above all: it
# acts without approvals).
EXCLUSIVE_WITH_PORTAL_ADMIN = frozenset({Role.APPROVER, Role.REQUESTER, Role.BREAK_GLASS})
# An auditor watches emergencies and changes nothing; one who could also
# break the glass would watch their own.
EXCLUSIVE_WITH_AUDITOR = frozenset({Role.BREAK_GLASS})


def role_conflict(roles) -> str | None:
    roles = set(roles)
    if Role.PORTAL_ADMIN in roles and roles & EXCLUSIVE_WITH_PORTAL_ADMIN:
        clash = ", ".join(sorted(roles & EXCLUSIVE_WITH_PORTAL_ADMIN))
        return f"A portal admin cannot also hold {clash}."
    if Role.AUDITOR in roles and roles & EXCLUSIVE_WITH_AUDITOR:
        return "An auditor cannot also hold break_glass."
    return None


def unlogged_roles(user, held: list[str]) -> str | None:
    """Why the roles `user` holds in the database are not the ones the audit
    log gives them, in words, or None. A request about such a person would
    carry the database's roles into its applied entry, which the worker
    believes: two admins approving, say, a new e-mail address would adopt a
    membership someone wrote with SQL without seeing it."""
    from approvals.services.memberships import read_roles

    problem, people = read_roles()
    if problem:
        return f"The audit log cannot be read for roles ({problem}); no request about a person until it can."
    entry = people.get(user.pk)
    logged = set(entry.groups) if entry is not None and entry.username == user.get_username() else set()
    if logged == set(held):
        return None
    return (
        f"{user.get_username()} holds {', '.join(sorted(held)) or 'no role'} in the database, but the audit log "
        f"gives them {', '.join(sorted(logged)) or 'no role'}; someone with shell access must check this "
        f"(manage.py attest_roles --user {user.get_username()}) before any request about them."
    )


def principal_of(user) -> str:
    state = AccountState.objects.filter(user=user).values_list("hypervisor_principal", flat=True).first()
    return state or ""


def directory_rules(*, action, instance, before, after) -> None:
    """With a directory configured, people and their roles come from it: no
    request creates an account or changes anyone's roles, and the
    directory's own fields of its accounts (names, e-mail) are its to change.
    The hypervisor account, deactivation and authenticator resets remain
    requests."""
    from accounts.directory import directory_configured
    from accounts.directory.services import directory_user

    if not directory_configured():
        return
    if action == CREATE:
        raise InvalidInput(
            {"username": ["People come from the directory: they sign in through it and their account follows."]}
        )
    errors = {}
    if sorted(after.get("roles", [])) != sorted(before.get("roles", [])):
        errors["roles"] = ["Roles come from the directory's groups; ask its owners to change the groups."]
    if instance is not None and directory_user(instance):
        for field in ("email", "first_name", "last_name"):
            if after.get(field) != before.get(field):
                errors[field] = ["Comes from the directory; it changes there."]
    if errors:
        raise InvalidInput(errors)


class UserShape(serializers.Serializer):
    username = serializers.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    email = serializers.EmailField(max_length=254, allow_blank=True, required=False)
    first_name = serializers.CharField(max_length=150, allow_blank=True, required=False)
    last_name = serializers.CharField(max_length=150, allow_blank=True, required=False)
    roles = serializers.ListField(child=serializers.ChoiceField(choices=Role.values), max_length=4, required=False)
    hypervisor_principal = serializers.RegexField(
        PRINCIPAL_PATTERN,
        max_length=200,
        allow_blank=True,
        required=False,
        error_messages={"invalid": "A user like 'DOMAIN\\\\name' or 'name@domain'."},
    )


class UserTarget(ConfigTarget):
    name = "user"
    title = "user"
    shape = UserShape
    actions = (CREATE, UPDATE, DEACTIVATE, REACTIVATE, OTP_RESET)
    create_only = ("username",)

    @property
    def model(self):
        return get_user_model()

    def label(self, state: dict) -> str:
        return str(state.get("username", ""))

    def snapshot(self, user) -> dict:
        from django_otp.plugins.otp_totp.models import TOTPDevice

        return {
            "username": user.username,
            "email": user.email,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "roles": sorted(g for g in user.groups.values_list("name", flat=True) if g in Role.values),
            "hypervisor_principal": principal_of(user),
            "is_active": user.is_active,
            "otp_enrolled": TOTPDevice.objects.filter(user=user, confirmed=True).exists(),
        }

    def after(self, *, action, instance, before, changes, requester):
        if action == CREATE:
            before = {
                "email": "",
                "first_name": "",
                "last_name": "",
                "roles": [],
                "hypervisor_principal": "",
                "is_active": True,
                "otp_enrolled": False,
            }
            changes = {k: v for k, v in changes.items() if k in UserShape().fields}
        elif action == UPDATE:
            changes = {k: v for k, v in changes.items() if k in UserShape().fields}
        return super().after(action=action, instance=instance, before=before, changes=changes, requester=requester)

    def plain(self, validated, *, raw, before):
        plain = dict(validated)
        if "roles" in plain:
            plain["roles"] = sorted(set(plain["roles"]))
        return plain

    def applied(self, instance) -> dict:
        groups = getattr(instance, "role_groups_applied", None)
        if groups is None:  # an authenticator reset leaves the roles as they are
            return {}
        return {"username": instance.get_username(), ROLE_GROUPS: groups}

    def other_action(self, *, action, instance, before):
        if action == DEACTIVATE:
            if not before["is_active"]:
                raise InvalidInput({"action": [f"{instance.username} is already deactivated."]})
            return {**before, "is_active": False}
        if action == REACTIVATE:
            if before["is_active"]:
                raise InvalidInput({"action": [f"{instance.username} is active."]})
            return {**before, "is_active": True}
        if not before["otp_enrolled"]:
            raise InvalidInput({"action": [f"{instance.username} has no authenticator to reset."]})
        return {**before, "otp_enrolled": False}

    def rules(self, *, action, instance, before, after, requester):
        directory_rules(action=action, instance=instance, before=before, after=after)
        errors: dict[str, list[str]] = {}
        users = self.model.objects.all()
        if instance is not None:
            users = users.exclude(pk=instance.pk)
        if action == CREATE and users.filter(username__iexact=after["username"]).exists():
            errors["username"] = [f"A user named {after['username']!r} exists already."]
        conflict = role_conflict(after.get("roles", []))
        if conflict:
            errors["roles"] = [conflict]
        unlogged = instance is not None and unlogged_roles(instance, before.get("roles", []))
        if unlogged:
            errors.setdefault("roles", []).append(unlogged)
        principal = after.get("hypervisor_principal", "")
        if (
            principal
            and AccountState.objects.filter(user__in=users)
            .annotate(p=Lower("hypervisor_principal"))
            .filter(p=principal.lower())
            .exists()
        ):
            errors["hypervisor_principal"] = ["Another person already has this hypervisor account."]
        if errors:
            raise InvalidInput(errors)

    def apply(self, *, action, instance, after, actor_name):
        from accounts.lifecycle import account_disable, activation_issue
        from approvals.roles import ensure_roles

        groups = ensure_roles()
        user = instance
        if action == CREATE:
            user = self.model(username=after["username"])
            user.set_unusable_password()  # the person sets it through their activation link
        if action == OTP_RESET:
            from accounts.otp import otp_reset

            otp_reset(user=user, actor_name=actor_name)
            return user
        # A password and address the portal bound stay bound under the new
        # address; one written into the table stays unbound.
        rebind = action != CREATE and user.has_usable_password() and password_bound(user)
        for field in ("email", "first_name", "last_name", "is_active"):
            setattr(user, field, after[field])
        user.is_staff = Role.PORTAL_ADMIN in after["roles"]
        user.full_clean(exclude=["password"])
        user.save()
        if rebind:
            password_bind(user)
        user.groups.set([groups[r] for r in after["roles"]])
        # What the applied entry says the person holds: the worker believes
        # roles from these entries only (approvals/services/memberships.py).
        user.role_groups_applied = {r: groups[r].pk for r in after["roles"]}
        AccountState.objects.update_or_create(
            user=user, defaults={"hypervisor_principal": after["hypervisor_principal"]}
        )
        if action == CREATE:
            activation_issue(user=user, actor_name=actor_name)
        if action == DEACTIVATE:
            account_disable(user=user, actor_name=actor_name)
        return user


TARGET = UserTarget()

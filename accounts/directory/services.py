"""The writes a directory causes: accounts it brings in, the roles its
groups map to, people it disabled or dropped. Each in one transaction with
its audit entry (before and after); the sign-in backends and the sync call
these, never the other way round."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from accounts import bindings, role_log
from accounts.directory import LDAP, OIDC, directory_configured
from accounts.models import AccountState, DirectoryGrant
from accounts.roles import Role
from audit.writer import record

USERNAME_UNSAFE = re.compile(r"[^\w.@+-]")


@dataclass(frozen=True)
class DirectoryEntry:
    """A person as the directory describes them, in plain data: `groups` are
    normalised DNs (LDAP) or group names (OIDC)."""

    kind: str
    directory_id: str
    username: str
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    groups: frozenset[str] = frozenset()
    disabled: bool = False


@dataclass
class Outcome:
    """What a sign-in or a sync did to one account, for the page to say."""

    user: object | None
    roles: tuple[str, ...] = ()
    refused_roles: tuple[str, ...] = ()
    refusal: str = ""
    problem: str = ""
    changed: dict = field(default_factory=dict)
    warning: str = ""


class DirectoryRefused(Exception):
    """The directory's person cannot have an account here (words inside)."""


def role_map(kind: str) -> dict[str, tuple[str, ...]]:
    name = "TWOKEY_LDAP_ROLE_GROUPS" if kind == LDAP else "TWOKEY_OIDC_ROLE_GROUPS"
    return getattr(settings, name, {})


def roles_from_groups(kind: str, groups) -> tuple[set[str], set[str], str]:
    """(granted, refused, why) for a person in `groups`. A portal admin never
    also holds approver or requester: when the directory maps someone into
    such a pair, none of the roles in the pair is granted — the directory's
    owners must decide which one the person should have."""
    from approvals.config.users import EXCLUSIVE_WITH_PORTAL_ADMIN, role_conflict

    groups = set(groups)
    mapped = {role for role, names in role_map(kind).items() if groups & set(names)}
    conflict = role_conflict(mapped)
    if not conflict:
        return mapped, set(), ""
    refused = {Role.PORTAL_ADMIN.value} | (mapped & {r.value for r in EXCLUSIVE_WITH_PORTAL_ADMIN})
    return mapped - refused, refused, conflict


def _role_groups() -> dict[str, Group]:
    groups = {g.name: g for g in Group.objects.filter(name__in=Role.values)}
    if len(groups) < len(Role.values):
        from approvals.roles import ensure_roles

        groups = ensure_roles()
    return groups


def held_roles(user) -> set[str]:
    return set(user.groups.filter(name__in=Role.values).values_list("name", flat=True))


def _set_roles(
    *, user, roles: set[str], kind: str, actor_name: str, when: str, source_ip=None, reason: str = ""
) -> dict:
    """Make `user` hold exactly `roles` (other groups untouched); audit the
    change with before and after (and `reason`, when the directory's groups
    are not the cause). Returns {"from", "to"} or {}."""
    from approvals.services.memberships import logged_roles

    before = held_roles(user)
    if before == roles:
        logged = logged_roles(user)
        if logged == roles or (not roles and logged is None):
            return {}
        # The database agrees with the directory but the audit log, which the
        # worker believes, does not (a row written outside the portal, or an
        # account from before roles were logged): the directory vouches. Not
        # a change of roles.
        details = {"directory": kind, "when": when, "roles": {"from": sorted(before), "to": sorted(roles)}}
        details["reason"] = "the audit log did not show the roles the directory grants"
        record(
            "directory.roles_changed",
            actor_name=actor_name,
            obj=user,
            source_ip=source_ip,
            details={**details, **role_log.granted(user)},
        )
        return {}
    groups = _role_groups()
    # Removals first: the database refuses a moment with a forbidden pair.
    user.groups.remove(*[groups[r] for r in before - roles])
    user.groups.add(*[groups[r] for r in roles - before])
    staff = Role.PORTAL_ADMIN in roles
    if user.is_staff != staff:
        user.is_staff = staff
        user.save(update_fields=["is_staff"])
    change = {"from": sorted(before), "to": sorted(roles)}
    details = {"directory": kind, "when": when, "roles": change, **role_log.granted(user)}
    if reason:
        details["reason"] = reason
    record("directory.roles_changed", actor_name=actor_name, obj=user, source_ip=source_ip, details=details)
    return change


def _free_username(wanted: str, entry: DirectoryEntry) -> str:
    """A username for a new account from a provider: its preferred name where
    free (and safe), else that name with a short digest of the subject."""
    User = get_user_model()
    base = USERNAME_UNSAFE.sub("", wanted)[:120] or "oidc"
    if not User.objects.filter(username__iexact=base).exists():
        return base
    suffix = hashlib.sha256(f"{entry.kind}:{entry.directory_id}".encode()).hexdigest()[:8]
    return f"{base}-{suffix}"


def _bound_name(user) -> str | None:
    """The username under which the audit log shows the portal last bound a
    directory identity to `user`, or None if it never did."""
    from audit.models import AuditEntry

    entry = (
        AuditEntry.objects.filter(
            action__in=("directory.account_bound", "directory.account_created"),
            object_type=user._meta.label_lower,
            object_id=str(user.pk),
        )
        .order_by("-seq")
        .only("details")
        .first()
    )
    return entry.details.get("username") if entry is not None else None


def _refuse_forged(user, entry: DirectoryEntry, source_ip, problem: str):
    """Audit a directory identity the table was changed around, and refuse
    the sign-in (DirectoryRefused)."""
    bindings.forged(
        credential="directory_identity",
        user=user,
        source_ip=source_ip,
        directory=entry.kind,
        identity=entry.directory_id,
        problem=problem,
    )
    raise DirectoryRefused(
        f"The {entry.kind} identity {entry.directory_id} is not bound to the account {user.username} "
        "by the portal: the table was changed. Ask the portal's administrators."
    )


def _require_bound(state, entry: DirectoryEntry, source_ip) -> None:
    """Refuse (and audit) an account whose directory identity the portal did
    not bind to it."""
    if not bindings.holds(state.identity_binding, bindings.of_identity(state)):
        _refuse_forged(
            state.user, entry, source_ip, "the account's directory identity was not bound to it by the portal"
        )


def _account_for(entry: DirectoryEntry, *, actor_name: str, source_ip=None):
    """The account of the directory's person: bound to their identity, else
    (LDAP only) the local account of the same name, which the directory
    takes over; else a new one. Never a break-glass account, never one
    another directory brought in. Raises DirectoryRefused."""
    User = get_user_model()
    state = (
        AccountState.objects.select_related("user")
        .filter(directory=entry.kind, directory_id=entry.directory_id)
        .first()
    )
    if state is not None:
        _require_bound(state, entry, source_ip)
        return state.user, state
    user = None
    if entry.kind == LDAP:
        # The provider's preferred_username is not an identity (people may
        # choose it); an LDAP login name is the directory's own key.
        user = User.objects.filter(username__iexact=entry.username).first()
    if user is not None:
        state, _ = AccountState.objects.get_or_create(user=user)
        if state.break_glass:
            raise DirectoryRefused(
                f"{user.username} is a break-glass account of this portal; the directory's {entry.username} "
                "cannot sign in until that account is renamed or removed on the server's shell."
            )
        if state.directory and state.directory != entry.kind:
            raise DirectoryRefused(f"{user.username} signs in through {state.directory}, not {entry.kind}.")
        # A person the directory moved keeps their account, but only from an
        # identity the portal bound, under the name it bound it to: the portal
        # neither unbinds identities nor renames accounts, so an account the
        # log shows bound that lost its identity row, or has another name,
        # was changed in the table (a writer clearing the way to take it over).
        bound_as = _bound_name(user)
        if bound_as is not None and not state.directory:
            _refuse_forged(user, entry, source_ip, "the account's directory identity was removed outside the portal")
        if bound_as is not None and bound_as != user.username:
            _refuse_forged(user, entry, source_ip, f"the account bound as {bound_as} was renamed outside the portal")
        if state.directory:
            _require_bound(state, entry, source_ip)
        before = {"directory": state.directory, "directory_id": state.directory_id}
        state.directory, state.directory_id = entry.kind, entry.directory_id
        state.identity_binding = bindings.bind(bindings.of_identity(state))
        state.save(update_fields=["directory", "directory_id", "identity_binding"])
        record(
            "directory.account_bound",
            actor_name=actor_name,
            obj=user,
            source_ip=source_ip,
            details={"directory": entry.kind, "username": user.username, "before": before, "after": entry.directory_id},
        )
        return user, state
    username = entry.username.lower() if entry.kind == LDAP else _free_username(entry.username, entry)
    user = User(username=username)
    user.set_unusable_password()  # a directory account never signs in with a local password
    user.save()
    state = AccountState(user=user, directory=entry.kind, directory_id=entry.directory_id)
    state.identity_binding = bindings.bind(bindings.of_identity(state))
    state.save(force_insert=True)
    record(
        "directory.account_created",
        actor_name=actor_name,
        obj=user,
        source_ip=source_ip,
        details={"directory": entry.kind, "username": username, "identity": entry.directory_id},
    )
    return user, state


def _disable(*, user, state, kind: str, reason: str, actor_name: str, when: str) -> None:
    from accounts.lifecycle import account_disable

    # The provider's grant goes too: a later sign-in brings a new one.
    DirectoryGrant.objects.filter(user=user).delete()
    user.is_active = False
    user.save(update_fields=["is_active"])
    state.directory_disabled = True
    state.save(update_fields=["directory_disabled"])
    record(
        "directory.account_disabled",
        actor_name=actor_name,
        obj=user,
        details={"directory": kind, "username": user.username, "reason": reason, "when": when},
    )
    account_disable(user=user, actor_name=actor_name)


def entry_apply(
    *, user, state, entry: DirectoryEntry | None, kind: str, actor_name: str, when: str, source_ip=None
) -> Outcome:
    """Make one account what the directory says (`entry` None: the directory
    no longer has the person). Call inside a transaction."""
    if entry is None or entry.disabled:
        reason = "not found in the directory" if entry is None else "disabled in the directory"
        return account_drop(user=user, state=state, kind=kind, reason=reason, actor_name=actor_name, when=when)
    profile = {"email": entry.email, "first_name": entry.first_name, "last_name": entry.last_name}
    moved = [f for f, v in profile.items() if v and getattr(user, f) != v]
    for name in moved:
        setattr(user, name, profile[name][: user._meta.get_field(name).max_length])
    if not user.is_active and state.directory_disabled:
        user.is_active = True
        state.directory_disabled = False
        state.save(update_fields=["directory_disabled"])
        moved.append("is_active")
        record(
            "directory.account_enabled",
            actor_name=actor_name,
            obj=user,
            source_ip=source_ip,
            details={"directory": kind, "username": user.username, "when": when},
        )
    if moved:
        user.save(update_fields=moved)
    granted, refused, why = roles_from_groups(kind, entry.groups)
    changed = _set_roles(user=user, roles=granted, kind=kind, actor_name=actor_name, when=when, source_ip=source_ip)
    if refused and (changed or when == "sign-in"):
        record(
            "directory.roles_refused",
            actor_name=actor_name,
            obj=user,
            source_ip=source_ip,
            details={"directory": kind, "username": user.username, "refused": sorted(refused), "reason": why},
        )
    return Outcome(
        user=user,
        roles=tuple(sorted(granted)),
        refused_roles=tuple(sorted(refused)),
        refusal=why,
        problem="" if user.is_active else "deactivated in this portal",
        changed=changed,
    )


def account_drop(*, user, state, kind: str, reason: str, actor_name: str, when: str) -> Outcome:
    """The directory no longer vouches for the person (`reason` in words):
    no roles, and the account deactivated (sessions ended, API tokens
    revoked), each audited. Call inside a transaction."""
    changed = _set_roles(user=user, roles=set(), kind=kind, actor_name=actor_name, when=when, reason=reason)
    if user.is_active:
        _disable(user=user, state=state, kind=kind, reason=reason, actor_name=actor_name, when=when)
    return Outcome(user=user, problem=reason, changed=changed)


def roles_withdraw(*, user, kind: str, reason: str, actor_name: str) -> dict:
    """No roles for `user` until the directory can be asked about them again
    (`reason` in words, audited with before and after); the account stays
    active. Returns the change, or {}."""
    with transaction.atomic():
        DirectoryGrant.objects.filter(user=user).delete()
        return _set_roles(user=user, roles=set(), kind=kind, actor_name=actor_name, when="sync", reason=reason)


NO_GRANT_WARNING = (
    "Your sign-in provider gave the portal no refresh token, so the background check cannot ask it about you: "
    "your roles end at the next check, within {minutes} minutes, until you sign in again. Ask the provider's "
    "owners to let this portal's client use refresh tokens (offline_access)."
)


def _grant_keep(*, user, refresh_token: str | None, subject: str, source_ip=None) -> str:
    """Keep the provider's refresh token, sealed to the worker's public key
    (one grant per account; a new sign-in replaces the old one). Returns a
    warning in words when there is none to keep. Call inside a transaction."""
    from connectors.credentials import CredentialsUnavailable, seal

    reason = "the provider gave no refresh token"
    if refresh_token:
        try:
            sealed = seal(refresh_token)
        except CredentialsUnavailable as exc:
            reason = f"it cannot be sealed here ({exc})"
        else:
            DirectoryGrant.objects.update_or_create(
                user=user,
                defaults={
                    "issuer": settings.TWOKEY_OIDC_ISSUER,
                    "subject": subject,
                    "sealed_refresh_token": sealed,
                    "refreshed_at": None,
                },
            )
            return ""
    if DirectoryGrant.objects.filter(user=user, issuer=settings.TWOKEY_OIDC_ISSUER, subject=subject).exists():
        return ""  # the grant of an earlier sign-in still serves
    record(
        "directory.grant_missing",
        actor_name=f"directory:{OIDC}",
        obj=user,
        source_ip=source_ip,
        details={"directory": OIDC, "username": user.username, "reason": reason},
    )
    return NO_GRANT_WARNING.format(minutes=max(1, round(settings.DIRECTORY_SYNC_SECONDS / 60)))


def grant_rotate(*, grant: DirectoryGrant, refresh_token: str | None) -> None:
    """After a refresh: the new refresh token the provider returned (sealed),
    and when. Not audited: a rotation changes no one's access, and beat
    would write an entry per person every few minutes. Call inside a
    transaction."""
    from django.utils import timezone

    from connectors.credentials import seal

    fields = ["refreshed_at"]
    grant.refreshed_at = timezone.now()
    if refresh_token:
        grant.sealed_refresh_token = seal(refresh_token)
        fields.append("sealed_refresh_token")
    grant.save(update_fields=fields)


def directory_sign_in(
    *, entry: DirectoryEntry, source_ip: str | None = None, refresh_token: str | None = None
) -> Outcome:
    """A person the directory vouched for (password bound, or the provider's
    signed token checked): their account, brought in line with the
    directory. `outcome.user` is None, with `problem` in words, when they
    may not sign in. For OpenID Connect, `refresh_token` (kept sealed) lets
    the background sync ask the provider about them again."""
    actor_name = f"directory:{entry.kind}"
    with transaction.atomic():
        try:
            user, state = _account_for(entry, actor_name=actor_name, source_ip=source_ip)
        except DirectoryRefused as exc:
            record(
                "directory.sign_in_refused",
                actor_name=actor_name,
                source_ip=source_ip,
                details={"directory": entry.kind, "username": entry.username[:150], "reason": str(exc)},
            )
            return Outcome(user=None, problem=str(exc))
        outcome = entry_apply(
            user=user,
            state=state,
            entry=entry,
            kind=entry.kind,
            actor_name=actor_name,
            when="sign-in",
            source_ip=source_ip,
        )
        if entry.kind == OIDC and outcome.user.is_active:
            outcome.warning = _grant_keep(
                user=user, refresh_token=refresh_token, subject=entry.directory_id, source_ip=source_ip
            )
    if not outcome.user.is_active:
        outcome.user = None
    return outcome


def local_roles_strip(*, actor_name: str) -> int:
    """With a directory configured, a local account that is not break-glass
    holds no role (it cannot sign in either): roles only come from the
    directory. Returns how many accounts lost roles."""
    if not directory_configured():
        return 0
    User = get_user_model()
    local = (
        User.objects.filter(groups__name__in=Role.values)
        .exclude(account_state__break_glass=True)
        .exclude(account_state__directory__in=[LDAP, OIDC])
        .distinct()
    )
    count = 0
    for user in local:
        with transaction.atomic():
            if _set_roles(user=user, roles=set(), kind="local", actor_name=actor_name, when="sync"):
                count += 1
    return count


def is_break_glass(user) -> bool:
    return AccountState.objects.filter(user=user, break_glass=True).exists()


def directory_user(user) -> bool:
    return AccountState.objects.filter(user=user).exclude(directory="").exists()

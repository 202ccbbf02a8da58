"""LDAP and Active Directory sign-in through django-auth-ldap: the person's
password is checked by binding as them; the portal's own bind account
searches for them and their groups. Their account and roles are then set
by accounts.directory.services, as at every sync."""

from __future__ import annotations

import ldap
from django.db import transaction
from django.dispatch import receiver
from django_auth_ldap.backend import LDAPBackend, ldap_error
from django_auth_ldap.config import LDAPSettings

from accounts.directory import LDAP, ldap_configured
from accounts.directory.config import normalize_dn
from accounts.directory.services import DirectoryEntry, Outcome, directory_sign_in

# The server cannot be reached (down, refused, timed out): said so in words.
UNREACHABLE = (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.CONNECT_ERROR)
# OpenLDAP's ppolicy marks an account an administrator locked for good so.
PERMANENT_LOCK = "000001010000Z"
AD_ACCOUNT_DISABLED = 0x2


class DirectoryUnavailable(Exception):
    """The directory could not be asked (words inside); nothing was changed."""


def directory_problem(exc: Exception) -> str:
    if isinstance(exc, UNREACHABLE):
        return "unreachable"
    return "error"


def _attrs(raw: dict) -> dict[str, list[str]]:
    return {k.lower(): [v.decode() if isinstance(v, bytes) else str(v) for v in values] for k, values in raw.items()}


def entry_disabled(attrs: dict[str, list[str]]) -> bool:
    """Whether the directory says the account is disabled: locked for good
    (OpenLDAP ppolicy), ACCOUNTDISABLE (Active Directory), nsAccountLock
    (389 Directory Server, FreeIPA)."""
    if PERMANENT_LOCK in attrs.get("pwdaccountlockedtime", []):
        return True
    for value in attrs.get("useraccountcontrol", []):
        if value.isdigit() and int(value) & AD_ACCOUNT_DISABLED:
            return True
    return any(v.lower() == "true" for v in attrs.get("nsaccountlock", []))


def entry_from(*, dn: str, attrs: dict, username: str, groups) -> DirectoryEntry:
    attrs = _attrs(attrs)

    def first(name):
        return (attrs.get(name.lower()) or [""])[0]

    return DirectoryEntry(
        kind=LDAP,
        directory_id=normalize_dn(dn),
        username=username.lower(),
        email=first("mail"),
        first_name=first("givenName"),
        last_name=first("sn"),
        groups=frozenset(normalize_dn(g) for g in groups),
        disabled=entry_disabled(attrs),
    )


class DirectoryLDAPBackend(LDAPBackend):
    """django-auth-ldap, with TwoKey's rules on top: an account is bound to
    its entry's DN; break-glass accounts and accounts of another directory
    are never taken over; roles come from LDAP_ROLE_GROUPS. Does nothing
    unless LDAP_SERVER_URI is set."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if not ldap_configured() or username is None or not password:
            return None
        # A user who is not found and one whose password is wrong look the same.
        return super().authenticate(request, username=username, password=password, **kwargs)

    def get_user(self, user_id):
        user = super().get_user(user_id)
        return user if user is not None and user.is_active else None

    def get_or_build_user(self, username, ldap_user):
        # django-auth-ldap would create a Django user by name before we are
        # asked. Hand it one it never saves (not "built", and
        # AUTH_LDAP_ALWAYS_UPDATE_USER off); authenticate_ldap_user decides,
        # in one transaction with the audit.
        return self.get_user_model()(username=username.lower()), False

    def authenticate_ldap_user(self, ldap_user, password):
        # Binds as the person (the password check), loads their entry and groups.
        checked = super().authenticate_ldap_user(ldap_user, password)
        if checked is None:
            return None
        request = ldap_user._request
        entry = entry_from(
            dn=ldap_user.dn, attrs=ldap_user.attrs or {}, username=ldap_user._username, groups=ldap_user.group_dns
        )
        outcome = directory_sign_in(entry=entry, source_ip=_source_ip(request))
        if request is not None:
            request.twokey_directory_outcome = outcome
        return outcome.user


def _source_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") if request is not None else None


@receiver(ldap_error, sender=DirectoryLDAPBackend)
def _remember_directory_problem(sender, context, user, request, exception, **kwargs):
    """django-auth-ldap swallows the error and reports no user; keep what
    went wrong on the request, so the sign-in page can say it in words."""
    if request is not None:
        request.twokey_directory_problem = directory_problem(exception)


# --- The background sync: the bind account asks about each person. ---------


class _Subject:
    """What django-auth-ldap's group types need of a person."""

    def __init__(self, dn, attrs, connection):
        self.dn, self.attrs, self.connection = dn, attrs, connection


def ldap_connect():
    """A connection bound as LDAP_BIND_DN. Raises DirectoryUnavailable."""
    config = LDAPSettings()
    try:
        connection = ldap.initialize(config.SERVER_URI, bytes_mode=False)
        for option, value in config.CONNECTION_OPTIONS.items():
            connection.set_option(option, value)
        if config.START_TLS:
            connection.start_tls_s()
        connection.simple_bind_s(config.BIND_DN, config.BIND_PASSWORD)
    except ldap.LDAPError as exc:
        what = "cannot be reached" if directory_problem(exc) == "unreachable" else "refused the portal's bind account"
        raise DirectoryUnavailable(f"The LDAP directory {what} ({type(exc).__name__}).") from exc
    return connection, config


def ldap_lookup(connection, config, username: str) -> DirectoryEntry | None:
    """The directory's entry for `username`, or None when it has none (or
    more than one). Raises DirectoryUnavailable."""
    try:
        results = config.USER_SEARCH.execute(connection, {"user": username})
        if len(results) != 1:
            return None
        dn, attrs = results[0]
        groups = config.GROUP_TYPE.user_groups(_Subject(dn, attrs, connection), config.GROUP_SEARCH)
    except ldap.LDAPError as exc:
        raise DirectoryUnavailable(
            f"The LDAP directory failed while looking up {username} ({type(exc).__name__})."
        ) from exc
    return entry_from(dn=dn, attrs=attrs, username=username, groups=[g for g, _ in groups])


def ldap_sync(*, actor_name: str) -> list[Outcome]:
    """Bring every account the LDAP directory brought in (and every local,
    not break-glass account holding a role whose name the directory knows)
    in line with the directory. Raises DirectoryUnavailable before changing
    anything when the directory cannot be asked; a failure half-way leaves
    the accounts already synced as they now are, each consistent."""
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    from accounts.directory.services import DirectoryRefused, _account_for, entry_apply
    from accounts.models import AccountState
    from accounts.roles import Role

    connection, config = ldap_connect()
    outcomes = []
    users = (
        get_user_model()
        .objects.filter(
            Q(account_state__directory=LDAP)
            | (
                Q(groups__name__in=Role.values)
                & ~Q(account_state__directory__gt="")
                & ~Q(account_state__break_glass=True)
            )
        )
        .distinct()
        .order_by("pk")
    )
    try:
        for user in users:
            entry = ldap_lookup(connection, config, user.username)
            with transaction.atomic():
                state, _ = AccountState.objects.select_for_update().get_or_create(user=user)
                if entry is None:
                    if state.directory == LDAP:
                        outcomes.append(
                            entry_apply(
                                user=user, state=state, entry=None, kind=LDAP, actor_name=actor_name, when="sync"
                            )
                        )
                    continue  # a local account the directory does not know: see local_roles_strip
                try:
                    # The same account, unless the entry moved (a new DN: bound anew).
                    user, state = _account_for(entry, actor_name=actor_name)
                except DirectoryRefused:
                    continue
                outcomes.append(
                    entry_apply(user=user, state=state, entry=entry, kind=LDAP, actor_name=actor_name, when="sync")
                )
    finally:
        connection.unbind_s()
    return outcomes

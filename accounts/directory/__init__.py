"""Sign-in through a directory another team runs: LDAP / Active Directory
(django-auth-ldap) and OpenID Connect (mozilla-django-oidc). With one
configured, people and their roles come from the directory's groups: set at
every sign-in, re-synced by beat, and no path in the portal grants a role
the directory did not. Local passwords then work only for break-glass
accounts made on the server's shell."""

from django.conf import settings

LDAP, OIDC = "ldap", "oidc"


def configured_kinds() -> tuple[str, ...]:
    return tuple(getattr(settings, "TWOKEY_DIRECTORY", ()))


def directory_configured() -> bool:
    return bool(configured_kinds())


def ldap_configured() -> bool:
    return LDAP in configured_kinds()


def oidc_configured() -> bool:
    return OIDC in configured_kinds()

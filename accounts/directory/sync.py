"""The background sync: every DIRECTORY_SYNC_SECONDS (beat) and on demand
(`manage.py sync_directory`), each account the directory brought in is
brought in line with it: roles from its groups now, deactivated when the
directory disabled or dropped the person. LDAP people are looked up with
the portal's bind account; OpenID Connect people through the refresh grant
their last sign-in brought (accounts.directory.oidc_sync). Roles are read
from groups at every request, so sessions and API tokens stop granting a
role the moment the sync takes it away, and the worker's re-check stops
counting approvals their holder gave in that role."""

from __future__ import annotations

from accounts.directory import LDAP, OIDC, ldap_configured, oidc_configured
from accounts.directory.services import local_roles_strip
from audit.writer import record


def _failed(kind: str, exc: Exception, actor_name: str) -> dict:
    record("directory.sync_failed", actor_name=actor_name, details={"directory": kind, "reason": str(exc)})
    return {"error": str(exc)}


def directory_sync(*, actor_name: str = "directory-sync") -> dict:
    """Sync every configured directory; returns what was done. A directory
    that cannot be asked changes nothing (and the failure is audited)."""
    summary: dict = {}
    if ldap_configured():
        from accounts.directory.ldap_backend import DirectoryUnavailable, ldap_sync

        try:
            outcomes = ldap_sync(actor_name=actor_name)
        except DirectoryUnavailable as exc:
            summary[LDAP] = _failed(LDAP, exc, actor_name)
        else:
            summary[LDAP] = {
                "accounts": len(outcomes),
                "roles_changed": sum(1 for o in outcomes if o.changed),
                "inactive": sum(1 for o in outcomes if o.problem),
            }
    if oidc_configured():
        from accounts.directory.oidc import ProviderUnavailable
        from accounts.directory.oidc_sync import NO_GRANT, oidc_sync
        from connectors.credentials import CredentialsUnavailable

        try:
            outcomes = oidc_sync(actor_name=actor_name)
        except (ProviderUnavailable, CredentialsUnavailable) as exc:
            summary[OIDC] = _failed(OIDC, exc, actor_name)
        else:
            summary[OIDC] = {
                "accounts": len(outcomes),
                "roles_changed": sum(1 for o in outcomes if o.changed),
                "deactivated": sum(1 for o in outcomes if not o.user.is_active),
                "without_grant": sum(1 for o in outcomes if o.problem == NO_GRANT),
            }
    summary["local_roles_removed"] = local_roles_strip(actor_name=actor_name)
    return summary

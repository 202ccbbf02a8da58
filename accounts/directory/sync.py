"""The background sync: every DIRECTORY_SYNC_SECONDS (beat) and on demand
(`manage.py sync_directory`), each account the directory brought in is
brought in line with it: roles from its groups now, deactivated when the
directory disabled or dropped the person. Roles are read from groups at
every request, so sessions and API tokens stop granting a role the moment
the sync takes it away, and the worker's re-check stops counting approvals
their holder gave in that role."""

from __future__ import annotations

from accounts.directory import ldap_configured
from accounts.directory.services import local_roles_strip
from audit.writer import record


def directory_sync(*, actor_name: str = "directory-sync") -> dict:
    """Sync every configured directory; returns what was done. A directory
    that cannot be asked changes nothing (and the failure is audited)."""
    from accounts.directory.ldap_backend import DirectoryUnavailable, ldap_sync

    summary: dict = {}
    if ldap_configured():
        try:
            outcomes = ldap_sync(actor_name=actor_name)
        except DirectoryUnavailable as exc:
            record("directory.sync_failed", actor_name=actor_name, details={"directory": "ldap", "reason": str(exc)})
            summary["ldap"] = {"error": str(exc)}
        else:
            summary["ldap"] = {
                "accounts": len(outcomes),
                "roles_changed": sum(1 for o in outcomes if o.changed),
                "inactive": sum(1 for o in outcomes if o.problem),
            }
    summary["local_roles_removed"] = local_roles_strip(actor_name=actor_name)
    return summary

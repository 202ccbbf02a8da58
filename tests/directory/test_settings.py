"""Directory settings: read from the environment, and a setting that cannot
work stops the portal at start with words naming the part that is wrong."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from accounts.directory.config import ROLES, directory_settings, parse_role_groups
from approvals.choices import Role

ROOT = Path(__file__).resolve().parents[2]
LDAP = {
    "LDAP_SERVER_URI": "ldap://127.0.0.1:1",
    "LDAP_USER_SEARCH_BASE": "ou=people,dc=example,dc=org",
    "LDAP_GROUP_SEARCH_BASE": "ou=groups,dc=example,dc=org",
    "LDAP_ROLE_GROUPS": "requester=cn=vm-admins,ou=groups,dc=example,dc=org;approver=cn=secops,ou=groups,dc=example,dc=org",
}


def test_the_role_names_are_the_portals():
    assert set(ROLES) == set(Role.values)


def test_role_groups_map_each_role_to_one_or_more_groups():
    mapping = parse_role_groups(
        "LDAP_ROLE_GROUPS",
        "approver=CN=SecOps, OU=Groups,DC=example,DC=org|cn=soc,ou=groups,dc=example,dc=org;"
        "approver=cn=night-shift,ou=groups,dc=example,dc=org;auditor=cn=audit,ou=groups,dc=example,dc=org;",
        dns=True,
    )
    assert mapping == {
        "approver": (
            "cn=secops,ou=groups,dc=example,dc=org",
            "cn=soc,ou=groups,dc=example,dc=org",
            "cn=night-shift,ou=groups,dc=example,dc=org",
        ),
        "auditor": ("cn=audit,ou=groups,dc=example,dc=org",),
    }
    assert parse_role_groups("OIDC_ROLE_GROUPS", "approver=secops|soc", dns=False) == {"approver": ("secops", "soc")}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "aprover=cn=secops,dc=example,dc=org",
            "part 1 of 1 ('aprover=cn=secops,dc=example,dc=org'): 'aprover' is not a role",
        ),
        ("approver=cn=secops,dc=org;auditor", "part 2 of 2 ('auditor'): expected role=group"),
        (
            "approver=cn=secops,dc=org;auditor=not a dn",
            "part 2 of 2 ('auditor=not a dn'): 'not a dn' is not a distinguished name",
        ),
        ("approver=cn=secops,dc=org;;auditor=cn=a,dc=org", "part 2 of 3 is empty"),
        ("approver=", "a group for approver is empty"),
        ("", "LDAP_ROLE_GROUPS is required"),
        ("  ;  ", "LDAP_ROLE_GROUPS is empty"),
    ],
)
def test_a_malformed_role_map_names_the_part_that_is_wrong(text, words):
    with pytest.raises(ImproperlyConfigured) as refused:
        directory_settings({**LDAP, "LDAP_ROLE_GROUPS": text})
    assert words in str(refused.value)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"LDAP_USER_FILTER": "(uid=%s)"}, "LDAP_USER_FILTER must be an LDAP filter"),
        ({"LDAP_USER_SEARCH_BASE": ""}, "LDAP_USER_SEARCH_BASE is required"),
        ({"LDAP_START_TLS": "maybe"}, "LDAP_START_TLS must be 1 or 0"),
        ({"LDAP_SERVER_URI": "127.0.0.1"}, "must start with ldap://"),
        ({"LDAP_GROUP_TYPE": "posix"}, "LDAP_GROUP_TYPE must be one of"),
        (
            {"OIDC_ISSUER": "https://sso.example.org", "OIDC_CLIENT_ID": "p", "OIDC_ROLE_GROUPS": "approver=x"},
            "OIDC_CLIENT_SECRET is required",
        ),
    ],
)
def test_other_settings_that_cannot_work_are_refused(change, words):
    with pytest.raises(ImproperlyConfigured, match=words):
        directory_settings({**LDAP, **change})


def test_active_directory_and_defaults():
    found = directory_settings({**LDAP, "LDAP_USER_FILTER": "(sAMAccountName=%(user)s)"})
    assert found["TWOKEY_DIRECTORY"] == ("ldap",)
    assert found["AUTH_LDAP_USER_SEARCH"].filterstr == "(sAMAccountName=%(user)s)"
    assert directory_settings(LDAP)["AUTH_LDAP_USER_SEARCH"].filterstr == "(uid=%(user)s)"
    oidc = directory_settings(
        {
            "OIDC_ISSUER": "https://sso.example.org",
            "OIDC_CLIENT_ID": "p",
            "OIDC_CLIENT_SECRET": "s",
            "OIDC_ROLE_GROUPS": "approver=secops",
        }
    )
    assert oidc["TWOKEY_OIDC_ROLE_CLAIM"] == "groups" and oidc["OIDC_USE_PKCE"] and oidc["OIDC_USE_NONCE"]


def test_oidc_asks_for_a_refresh_token_with_consent_unless_told_otherwise():
    base = {"OIDC_ISSUER": "https://sso.example.org", "OIDC_CLIENT_ID": "p", "OIDC_CLIENT_SECRET": "s"}
    oidc = directory_settings({**base, "OIDC_ROLE_GROUPS": "approver=secops", "OIDC_SCOPES": "openid groups"})
    assert oidc["OIDC_RP_SCOPES"] == "openid groups offline_access"
    assert oidc["OIDC_AUTH_REQUEST_EXTRA_PARAMS"] == {"prompt": "consent"}
    quiet = directory_settings(
        {
            **base,
            "OIDC_ROLE_GROUPS": "approver=secops",
            "OIDC_SCOPES": "openid offline_access",
            "OIDC_PROMPT_CONSENT": "0",
        }
    )
    assert quiet["OIDC_RP_SCOPES"] == "openid offline_access" and quiet["OIDC_AUTH_REQUEST_EXTRA_PARAMS"] == {}
    with pytest.raises(ImproperlyConfigured, match="OIDC_PROMPT_CONSENT must be 1 or 0"):
        directory_settings({**base, "OIDC_ROLE_GROUPS": "approver=secops", "OIDC_PROMPT_CONSENT": "maybe"})


def _start(env):
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("LDAP_", "OIDC_"))}
    return subprocess.run(  # noqa: S603 - this repository's manage.py
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**keep, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_portal_refuses_to_start_on_a_malformed_role_map_and_schedules_the_sync_otherwise():
    bad = _start({**LDAP, "LDAP_ROLE_GROUPS": LDAP["LDAP_ROLE_GROUPS"] + ";portaladmin=cn=x,dc=org"})
    assert bad.returncode != 0
    assert "LDAP_ROLE_GROUPS, part 3 of 3" in bad.stderr and "'portaladmin' is not a role" in bad.stderr
    good = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.CELERY_BEAT_SCHEDULE['sync-directory'])",
        ],
        cwd=ROOT,
        env={**os.environ, **LDAP, "DJANGO_SETTINGS_MODULE": "portal.settings", "DIRECTORY_SYNC_SECONDS": "120"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert good.returncode == 0, good.stderr
    assert "'task': 'accounts.tasks.sync_directory', 'schedule': 120" in good.stdout

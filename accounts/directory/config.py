"""The directory settings, read from the environment by portal/settings.py.

Nothing here touches the database or Django's models: it runs while the
settings load. A setting that cannot work stops the start with words that
name the variable and the part of it that is wrong."""

from __future__ import annotations

from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

# accounts.roles.Role, spelled out: the settings load before any app
# (tests/directory/test_settings.py keeps the two lists equal).
ROLES = ("requester", "approver", "auditor", "portal_admin", "break_glass")
LDAP, OIDC = "ldap", "oidc"
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}

# LDAP_GROUP_TYPE: how a group names its members.
GROUP_TYPES = {
    "groupOfNames": "GroupOfNamesType",
    "groupOfUniqueNames": "GroupOfUniqueNamesType",
    "nestedGroupOfNames": "NestedGroupOfNamesType",
    "activeDirectory": "ActiveDirectoryGroupType",
    "nestedActiveDirectory": "NestedActiveDirectoryGroupType",
}


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name, "1" if default else "0").strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be 1 or 0 (on or off), not {value!r}.")


def _seconds(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, str(default)).strip()
    if not value.isdigit() or int(value) < 1:
        raise ImproperlyConfigured(f"{name} must be a whole number of seconds (1 or more), not {value!r}.")
    return int(value)


def normalize_dn(dn: str) -> str:
    """One spelling per distinguished name: lower case, no spaces around
    separators. Raises ValueError for text that is not a DN."""
    import ldap.dn

    parts = ldap.dn.str2dn(dn.strip().lower())
    if not parts:
        raise ValueError("empty")
    return ldap.dn.dn2str(parts)


def parse_role_groups(name: str, text: str, *, dns: bool) -> dict[str, tuple[str, ...]]:
    """`role=group;role=group|group;…` as {role: (group, …)}. A role may
    also repeat. With `dns`, each group must be a distinguished name (kept
    normalised). ImproperlyConfigured names the part that is wrong."""
    mapping: dict[str, list[str]] = {}
    parts = text.split(";")
    if not any(part.strip() for part in parts):
        raise ImproperlyConfigured(
            f"{name} is empty: map each role to its groups, e.g. approver=cn=secops,ou=groups,dc=example,dc=org"
        )
    for number, raw in enumerate(parts, start=1):
        part = raw.strip()
        where = f"{name}, part {number} of {len(parts)}"
        if not part:
            if number == len(parts):  # a trailing ';' is harmless
                continue
            raise ImproperlyConfigured(f"{where} is empty (two ';' in a row?).")
        if "=" not in part:
            raise ImproperlyConfigured(f"{where} ({part!r}): expected role=group, with no '='.")
        role, groups = (s.strip() for s in part.split("=", 1))
        if role not in ROLES:
            raise ImproperlyConfigured(f"{where} ({part!r}): {role!r} is not a role; roles are {', '.join(ROLES)}.")
        names = [g.strip() for g in groups.split("|")]
        for group in names:
            if not group:
                raise ImproperlyConfigured(f"{where} ({part!r}): a group for {role} is empty.")
            if dns:
                try:
                    group = normalize_dn(group)
                except Exception as exc:  # python-ldap raises DECODING_ERROR or ValueError
                    raise ImproperlyConfigured(
                        f"{where} ({part!r}): {group!r} is not a distinguished name (like cn=secops,ou=groups,dc=example,dc=org)."
                    ) from exc
            mapping.setdefault(role, []).append(group)
    return {role: tuple(dict.fromkeys(groups)) for role, groups in mapping.items()}


def _required(env: Mapping[str, str], name: str, because: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ImproperlyConfigured(f"{name} is required {because}.")
    return value


def ldap_settings(env: Mapping[str, str]) -> dict:
    """django-auth-ldap's settings (AUTH_LDAP_*) and TwoKey's role map, or {}
    when LDAP_SERVER_URI is unset."""
    uri = env.get("LDAP_SERVER_URI", "").strip()
    if not uri:
        return {}
    import ldap
    from django_auth_ldap import config

    because = "when LDAP_SERVER_URI is set"
    for scheme_uri in uri.split():
        if not scheme_uri.startswith(("ldap://", "ldaps://")):
            raise ImproperlyConfigured(f"LDAP_SERVER_URI must start with ldap:// or ldaps://, not {scheme_uri!r}.")
    user_filter = env.get("LDAP_USER_FILTER", "(uid=%(user)s)").strip()
    if "%(user)s" not in user_filter or not (user_filter.startswith("(") and user_filter.endswith(")")):
        raise ImproperlyConfigured(
            f"LDAP_USER_FILTER must be an LDAP filter in parentheses with %(user)s where the name goes, "
            f"e.g. (uid=%(user)s) or (sAMAccountName=%(user)s); not {user_filter!r}."
        )
    try:
        user_filter % {"user": "x"}
    except (KeyError, ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"LDAP_USER_FILTER {user_filter!r}: only %(user)s may follow a '%' (write %% for a '%')."
        ) from exc
    bases = {}
    for name in ("LDAP_USER_SEARCH_BASE", "LDAP_GROUP_SEARCH_BASE"):
        value = _required(env, name, because)
        try:
            bases[name] = normalize_dn(value)
        except Exception as exc:
            raise ImproperlyConfigured(f"{name} {value!r} is not a distinguished name.") from exc
    bind_dn = env.get("LDAP_BIND_DN", "").strip()
    if bind_dn:
        try:
            normalize_dn(bind_dn)
        except Exception as exc:
            raise ImproperlyConfigured(f"LDAP_BIND_DN {bind_dn!r} is not a distinguished name.") from exc
    group_type = env.get("LDAP_GROUP_TYPE", "groupOfNames").strip()
    if group_type not in GROUP_TYPES:
        raise ImproperlyConfigured(f"LDAP_GROUP_TYPE must be one of {', '.join(GROUP_TYPES)}; not {group_type!r}.")
    timeout = _seconds(env, "LDAP_TIMEOUT_SECONDS", 5)
    role_groups = parse_role_groups("LDAP_ROLE_GROUPS", _required(env, "LDAP_ROLE_GROUPS", because), dns=True)
    return {
        "AUTH_LDAP_SERVER_URI": uri,
        "AUTH_LDAP_BIND_DN": bind_dn,
        "AUTH_LDAP_BIND_PASSWORD": env.get("LDAP_BIND_PASSWORD", ""),
        "AUTH_LDAP_START_TLS": _flag(env, "LDAP_START_TLS", False),
        # Operational attributes too ('+'): OpenLDAP's pwdAccountLockedTime says an account is locked.
        "AUTH_LDAP_USER_SEARCH": config.LDAPSearch(
            bases["LDAP_USER_SEARCH_BASE"], ldap.SCOPE_SUBTREE, user_filter, attrlist=["*", "+"]
        ),
        "AUTH_LDAP_GROUP_SEARCH": config.LDAPSearch(
            bases["LDAP_GROUP_SEARCH_BASE"], ldap.SCOPE_SUBTREE, "(objectClass=*)"
        ),
        "AUTH_LDAP_GROUP_TYPE": getattr(config, GROUP_TYPES[group_type])(),
        "AUTH_LDAP_USER_ATTRLIST": ["*", "+"],
        # The backend never writes users itself: accounts.directory.services does.
        "AUTH_LDAP_ALWAYS_UPDATE_USER": False,
        "AUTH_LDAP_CACHE_TIMEOUT": 0,
        "AUTH_LDAP_CONNECTION_OPTIONS": {
            ldap.OPT_NETWORK_TIMEOUT: timeout,
            ldap.OPT_TIMEOUT: timeout * 2,
            ldap.OPT_REFERRALS: 0,
        },
        "TWOKEY_LDAP_ROLE_GROUPS": role_groups,
    }


def oidc_settings(env: Mapping[str, str]) -> dict:
    """mozilla-django-oidc's settings (OIDC_RP_*, …) and TwoKey's role map,
    or {} when OIDC_ISSUER is unset. The provider's endpoints come from its
    discovery document when first needed, so the portal starts while the
    provider is down. The portal always asks for offline_access: the
    background sync refreshes each person's grant."""
    issuer = env.get("OIDC_ISSUER", "").strip()
    if not issuer:
        return {}
    because = "when OIDC_ISSUER is set"
    if not issuer.startswith(("https://", "http://")):
        raise ImproperlyConfigured(f"OIDC_ISSUER must be the provider's https:// address, not {issuer!r}.")
    claim = env.get("OIDC_ROLE_CLAIM", "groups").strip()
    if not claim or any(c.isspace() for c in claim):
        raise ImproperlyConfigured(f"OIDC_ROLE_CLAIM must be a claim name, not {claim!r}.")
    algo = env.get("OIDC_SIGN_ALGO", "RS256").strip()
    if not algo.startswith(("RS", "ES", "PS")):
        raise ImproperlyConfigured(
            f"OIDC_SIGN_ALGO must be an asymmetric algorithm (RS256, ES256, PS256…), not {algo!r}."
        )
    scopes = env.get("OIDC_SCOPES", "openid email profile").split()
    if "openid" not in scopes:
        raise ImproperlyConfigured(f"OIDC_SCOPES must include openid: {' '.join(scopes)!r}.")
    # A refresh token, so the background sync can ask about people between sign-ins.
    if "offline_access" not in scopes:
        scopes.append("offline_access")
    # OpenID Connect gives offline_access only with prompt=consent (some
    # providers, Keycloak and Entra ID among them, need no prompt).
    prompt = {"prompt": "consent"} if _flag(env, "OIDC_PROMPT_CONSENT", True) else {}
    return {
        "TWOKEY_OIDC_ISSUER": issuer,
        "TWOKEY_OIDC_ROLE_CLAIM": claim,
        "TWOKEY_OIDC_ROLE_GROUPS": parse_role_groups(
            "OIDC_ROLE_GROUPS", _required(env, "OIDC_ROLE_GROUPS", because), dns=False
        ),
        "TWOKEY_OIDC_PROVIDER_NAME": env.get("OIDC_PROVIDER_NAME", "your organisation's sign-in").strip(),
        "OIDC_RP_CLIENT_ID": _required(env, "OIDC_CLIENT_ID", because),
        "OIDC_RP_CLIENT_SECRET": _required(env, "OIDC_CLIENT_SECRET", because),
        "OIDC_RP_SIGN_ALGO": algo,
        "OIDC_RP_SCOPES": " ".join(scopes),
        "OIDC_AUTH_REQUEST_EXTRA_PARAMS": prompt,
        "OIDC_USE_PKCE": True,
        "OIDC_PKCE_CODE_CHALLENGE_METHOD": "S256",
        "OIDC_USE_NONCE": True,
        "OIDC_VERIFY_SSL": _flag(env, "OIDC_VERIFY_TLS", True),
        "OIDC_TIMEOUT": _seconds(env, "OIDC_TIMEOUT_SECONDS", 10),
        "OIDC_AUTHENTICATION_CALLBACK_URL": "oidc_callback",
        "OIDC_STORE_ACCESS_TOKEN": False,
        "OIDC_STORE_ID_TOKEN": False,
    }


def directory_settings(env: Mapping[str, str]) -> dict:
    """Every directory setting for portal/settings.py: TWOKEY_DIRECTORY
    names the directories configured (none, ldap, oidc or both)."""
    found = {**ldap_settings(env), **oidc_settings(env)}
    kinds = tuple(k for k, key in ((LDAP, "AUTH_LDAP_SERVER_URI"), (OIDC, "TWOKEY_OIDC_ISSUER")) if key in found)
    return {
        **found,
        "TWOKEY_DIRECTORY": kinds,
        "DIRECTORY_SYNC_SECONDS": _seconds(env, "DIRECTORY_SYNC_SECONDS", 300),
    }

"""What ties a credential to its person, so that a database writer cannot
sign in, call the API or sign an approval as somebody else.

A database writer can read, copy, move and invent rows. Each credential row
therefore carries a binding: an HMAC, under a key derived from SECRET_KEY
(which database administrators do not hold), over the row's owner and what
the credential is checked with. A password hash copied from the writer's
own account, an API token digest of a key they chose, a passkey of theirs
put under someone else, a directory identity moved to another account: none
binds, and each check of a credential refuses it and audits the attempt
(`auth.credential_forged`). Only the portal's own code, at the moment it
sets the credential, computes a binding; nothing rebinds what it finds in
the database, except `bind_credentials` on the server's shell.

Rotating SECRET_KEY keeps the old key in SECRET_KEY_FALLBACKS until
`bind_credentials --all` has bound every row under the new one."""

from __future__ import annotations

from django.conf import settings
from django.utils.crypto import constant_time_compare, salted_hmac

from audit.writer import record

FORGED = "auth.credential_forged"


def bind(parts: tuple, *, secret: str | None = None) -> str:
    """The binding of a credential: `parts` is its kind, its owner's id, and
    what it is checked with (one of the *_parts below)."""
    kind, *values = parts
    value = "\x1f".join(str(part) for part in values)
    return salted_hmac(f"twokey.bindings.{kind}", value, secret=secret, algorithm="sha256").hexdigest()


def holds(stored: str | None, parts: tuple, *, fallbacks: bool = True) -> bool:
    """Whether `stored` binds these parts, under the current key or (unless
    `fallbacks` is off) a fallback one."""
    if not stored:
        return False
    keys = [settings.SECRET_KEY, *(getattr(settings, "SECRET_KEY_FALLBACKS", []) if fallbacks else [])]
    return any(constant_time_compare(stored, bind(parts, secret=key)) for key in keys)


# The parts of each kind of credential. Each takes the row (or its values in
# a migration) and lists what its binding covers.


def password_parts(user_id: int, encoded: str, email: str) -> tuple:
    # The address a reset link goes to is part of what signs a local account
    # in: an address changed in the table refuses sign-in and resets alike.
    return ("password", user_id, encoded, email)


def token_parts(user_id: int, digest: str) -> tuple:
    return ("api-token", user_id, digest)


def passkey_parts(user_id, credential_id, public_key, alg, rp_id, *, active: bool) -> tuple:
    # A removed or flagged passkey binds only as retired: clearing its
    # removed_at or flagged_at in the table does not bring it back.
    return ("passkey", user_id, credential_id, public_key, alg, rp_id, "active" if active else "retired")


def identity_parts(user_id: int, directory: str, directory_id: str) -> tuple:
    return ("directory-identity", user_id, directory, directory_id)


def of_passkey(passkey) -> tuple:
    active = passkey.removed_at is None and passkey.flagged_at is None
    return passkey_parts(
        passkey.user_id, passkey.credential_id, passkey.public_key, passkey.alg, passkey.rp_id, active=active
    )


def of_token(token) -> tuple:
    return token_parts(token.user_id, token.digest)


def of_identity(state) -> tuple:
    return identity_parts(state.user_id, state.directory, state.directory_id)


def bind_rows(*, users, passwords, tokens, passkeys, states) -> dict[int, list[str]]:
    """Bind, under the current key, every credential of `users` (a user
    queryset) that does not bind now; {user id: kinds bound}. The model
    classes are passed in, so a migration's historical ones serve too. Only
    the upgrade and `bind_credentials` on the server's shell call this: it
    adopts what the tables hold."""
    from django.contrib.auth.hashers import is_password_usable

    bound: dict[int, list[str]] = {}
    held = dict(passwords.objects.filter(user__in=users).values_list("user_id", "binding"))
    for user_id, encoded, email in users.values_list("pk", "password", "email").iterator():
        parts = password_parts(user_id, encoded, email)
        if is_password_usable(encoded) and not holds(held.get(user_id), parts, fallbacks=False):
            passwords.objects.update_or_create(user_id=user_id, defaults={"binding": bind(parts)})
            bound.setdefault(user_id, []).append("password")
    for rows, parts_of, field, kind in (
        (tokens.objects.filter(user__in=users), of_token, "binding", "api_token"),
        (passkeys.objects.filter(user__in=users), of_passkey, "binding", "passkey"),
        (
            states.objects.filter(user__in=users).exclude(directory=""),
            of_identity,
            "identity_binding",
            "directory_identity",
        ),
    ):
        for row in rows.iterator():
            parts = parts_of(row)
            if not holds(getattr(row, field), parts, fallbacks=False):
                rows.filter(pk=row.pk).update(**{field: bind(parts)})
                bound.setdefault(row.user_id, []).append(kind)
    return bound


def forged(*, credential: str, user, source_ip: str | None = None, **details) -> None:
    """Audit a credential that does not bind to `user`, the account it
    stands for."""
    name = user.get_username()
    record(
        FORGED,
        actor_name=name,
        obj=user,
        source_ip=source_ip,
        details={"credential": credential, "username": name, **details},
    )

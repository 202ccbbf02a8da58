"""Issuing and revoking API tokens, marking generated passwords, changed
passwords, ending sessions. Each audited."""

import secrets

from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone

from accounts import bindings
from accounts.models import AccountState, ApiToken, PasswordBinding, UserSession, token_digest
from audit.writer import record


def token_issue(*, user, actor=None, actor_name: str = "", revoke_others: bool = True) -> str:
    """A new token for `user`; returns the key, which is never stored."""
    key = secrets.token_urlsafe(32)
    with transaction.atomic():
        revoked = 0
        if revoke_others:
            revoked = ApiToken.objects.filter(user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
        digest = token_digest(key)
        token = ApiToken.objects.create(
            user=user, prefix=key[:8], digest=digest, binding=bindings.bind(bindings.token_parts(user.pk, digest))
        )
        record(
            "auth.token_issued",
            actor=actor,
            actor_name=actor_name,
            obj=user,
            details={"token_prefix": token.prefix, "revoked_previous": revoked},
        )
    return key


def token_revoke(*, token_id: int, actor=None, actor_name: str = "") -> ApiToken:
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().get(pk=token_id)
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
            record(
                "auth.token_revoked",
                actor=actor,
                actor_name=actor_name,
                obj=token.user,
                details={"token_prefix": token.prefix},
            )
    return token


def password_bind(user) -> None:
    """Bind the password hash (and reset address) the portal just set for
    `user` (accounts/bindings.py); sign-in and resets refuse what does not
    bind."""
    binding = bindings.bind(bindings.password_parts(user.pk, user.password, user.email))
    PasswordBinding.objects.update_or_create(user_id=user.pk, defaults={"binding": binding})


def password_bound(user) -> bool:
    """Whether `user`'s password hash and address are the ones the portal
    set, not ones written into the table."""
    stored = PasswordBinding.objects.filter(user_id=user.pk).values_list("binding", flat=True).first()
    return bindings.holds(stored, bindings.password_parts(user.pk, user.password, user.email))


def mark_password_generated(user) -> None:
    AccountState.objects.update_or_create(user=user, defaults={"must_change_password": True})


def password_changed(user) -> None:
    AccountState.objects.update_or_create(user=user, defaults={"must_change_password": False})


def own_password_set(*, user, action: str = "auth.password_changed", source_ip: str | None = None) -> None:
    """Audit a password the user set themselves (changed while signed in, or
    through a reset link), with the generated-password mark before and
    after; the mark is cleared. Call in the transaction that saved the
    password. No password or hash reaches the log."""
    with transaction.atomic():
        state, _ = AccountState.objects.get_or_create(user=user)
        before = state.must_change_password
        if before:
            state.must_change_password = False
            state.save(update_fields=["must_change_password"])
        record(
            action,
            actor=user,
            obj=user,
            source_ip=source_ip,
            details={"changed": ["password"], "must_change_password": {"from": before, "to": False}},
        )


def must_change_password(user) -> bool:
    return AccountState.objects.filter(user=user, must_change_password=True).exists()


def sign_out_everywhere(*, user, source_ip: str | None = None) -> int:
    """End every session of `user`, this one included."""
    keys = list(UserSession.objects.filter(user=user).values_list("session_key", flat=True))
    with transaction.atomic():
        Session.objects.filter(session_key__in=keys).delete()
        UserSession.objects.filter(user=user).delete()
        record("auth.signed_out_everywhere", actor=user, obj=user, source_ip=source_ip, details={"sessions": len(keys)})
    return len(keys)

"""An account's life after a configuration request created or deactivated
it. A new account has no password: the person sets one through a one-time
activation link that neither the requester nor the approver of the request
ever sees — it goes by e-mail where a real mail backend is configured, and
otherwise is given on the server's shell (`manage.py activation_link NAME`)."""

from django.conf import settings
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.contrib.sessions.models import Session
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.models import ApiToken, UserSession
from accounts.password_reset import password_reset_enabled
from audit.writer import record


def mail_delivers() -> bool:
    """Whether e-mail reaches people (a real mail backend is configured)."""
    return password_reset_enabled()


class ActivationTokenGenerator(PasswordResetTokenGenerator):
    """Like a password-reset token (it stops working once a password is set
    or after PASSWORD_RESET_TIMEOUT), but never valid as one."""

    key_salt = "twokey.accounts.activation"


activation_tokens = ActivationTokenGenerator()


def activation_link(user) -> str:
    """A one-time link for a person to set their first password. Raises
    ValueError for an account that has a password or is deactivated."""
    if user.has_usable_password():
        raise ValueError(f"{user.username} has a password already; use password reset or changepassword.")
    if not user.is_active:
        raise ValueError(f"{user.username} is deactivated.")
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return f"{settings.PORTAL_URL.rstrip('/')}/accounts/activate/{uid}/{activation_tokens.make_token(user)}/"


def activation_issue(*, user, actor_name: str) -> bool:
    """After an approved request created `user`: e-mail the link where mail
    delivers (after commit), else leave it to the shell. Returns whether it
    was sent."""
    sent = mail_delivers() and bool(user.email)
    record(
        "auth.activation_issued",
        actor_name=actor_name,
        obj=user,
        details={"username": user.username, "delivery": "e-mail" if sent else "server shell"},
    )
    if sent:
        link = activation_link(user)
        transaction.on_commit(
            lambda: send_mail(
                "Your TwoKey account",
                f"An account {user.username} was created for you. Set your password here (the link works once):\n\n"
                f"{link}\n",
                settings.DEFAULT_FROM_EMAIL,
                [user.email],
            )
        )
    return sent


def account_disable(*, user, actor_name: str) -> dict:
    """A deactivated account keeps nothing that grants access: its sessions
    end and its API tokens are revoked."""
    keys = list(UserSession.objects.filter(user=user).values_list("session_key", flat=True))
    Session.objects.filter(session_key__in=keys).delete()
    UserSession.objects.filter(user=user).delete()
    tokens = ApiToken.objects.filter(user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
    record(
        "auth.account_disabled",
        actor_name=actor_name,
        obj=user,
        details={"username": user.username, "sessions_ended": len(keys), "tokens_revoked": tokens},
    )
    return {"sessions": len(keys), "tokens": tokens}

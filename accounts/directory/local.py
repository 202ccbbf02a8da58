"""Local passwords. With a directory configured they sign in break-glass
accounts only (made on the server's shell with `adduser --break-glass`),
and each such sign-in is audited; every other local account neither signs
in nor keeps a session."""

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend

from accounts import bindings
from accounts.directory import directory_configured
from accounts.models import AccountState
from accounts.services import password_bound
from audit.writer import record


class LocalBackend(ModelBackend):
    def _checked(self, request, username, password):
        """ModelBackend's check, with the binding checked before the hash (a
        hash that checks may be rehashed, and so bound, on the spot)."""
        User = get_user_model()
        try:
            user = User._default_manager.get_by_natural_key(username)
        except User.DoesNotExist:
            User().set_password(password)  # the same time as a wrong password
            return None
        if not user.has_usable_password():
            return None
        if not password_bound(user):
            User().set_password(password)
            bindings.forged(
                credential="password",
                user=user,
                source_ip=request.META.get("REMOTE_ADDR") if request is not None else None,
                problem="the password hash or address in the table is not one the portal set for this account",
            )
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None

    def authenticate(self, request, username=None, password=None, **kwargs):
        username = username if username is not None else kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        user = self._checked(request, username, password)
        if user is None:
            return None
        break_glass = AccountState.objects.filter(user=user, break_glass=True).exists()
        if not break_glass:
            # With a directory, the same answer as a wrong password.
            return None if directory_configured() else user
        record(
            "auth.break_glass_sign_in",
            actor=user,
            obj=user,
            source_ip=request.META.get("REMOTE_ADDR") if request is not None else None,
            details={"username": user.username},
        )
        if request is not None:
            request.twokey_break_glass = True
        return user

    def get_user(self, user_id):
        user = super().get_user(user_id)
        if user is not None and directory_configured():
            state = AccountState.objects.filter(user=user).values("break_glass", "directory").first() or {}
            if not (state.get("break_glass") or state.get("directory")):
                return None  # a session from before the directory: signed out
        return user


def token_with_directory(*, token, source_ip: str | None = None) -> None:
    """With a directory configured, an API token works for the directory's
    accounts and for break-glass accounts (each use audited), never for
    another local account. Raises AuthenticationFailed."""
    from rest_framework import exceptions

    state = AccountState.objects.filter(user_id=token.user_id).values("break_glass", "directory").first() or {}
    if state.get("directory"):
        return
    if not state.get("break_glass"):
        raise exceptions.AuthenticationFailed("Local accounts do not sign in while a directory is configured.")
    record(
        "auth.break_glass_token_used",
        actor=token.user,
        obj=token.user,
        source_ip=source_ip,
        details={"token_prefix": token.prefix},
    )

"""Password reset by e-mail. Off unless a real mail backend is configured (a
console or in-memory backend would print the reset link where the wrong
people read it). When on, requests are throttled per address and per client
address, the answer is the same whether an account has the address or not,
and every request and completion is audited (the address, never the link)."""

import hashlib
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.forms import PasswordResetForm
from django.core.cache import cache

from accounts import bindings
from accounts.services import own_password_set, password_bound
from audit.writer import record

# Backends that deliver nothing to a mailbox.
NOT_DELIVERING = frozenset(
    f"django.core.mail.backends.{name}.EmailBackend" for name in ("console", "locmem", "dummy", "filebased")
)
WINDOW_SECONDS = 60 * 60


def password_reset_enabled() -> bool:
    return settings.EMAIL_BACKEND not in NOT_DELIVERING


def _count(scope: str, value: str) -> int:
    """Requests seen for `value` in this hour's window (this one included)."""
    key = f"password-reset:{scope}:{hashlib.sha256(value.encode()).hexdigest()}"
    cache.add(key, 0, timeout=WINDOW_SECONDS)
    try:
        return cache.incr(key)
    except ValueError:  # the key expired between add and incr
        cache.set(key, 1, timeout=WINDOW_SECONDS)
        return 1


def _over_limit(*, address: str, source_ip: str | None) -> str:
    """Which limit this request exceeds ("ip", "address"), or ""."""
    if source_ip and _count("ip", source_ip) > settings.PASSWORD_RESET_IP_LIMIT_PER_HOUR:
        return "ip"
    if _count("address", address) > settings.PASSWORD_RESET_LIMIT_PER_HOUR:
        return "address"
    return ""


class BoundAddressResetForm(PasswordResetForm):
    """Mails only accounts whose address is the one the portal set
    (accounts/bindings.py): an address changed in the table would send the
    reset link to whoever changed it. Those are audited, not mailed."""

    def __init__(self, *args, source_ip: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.source_ip = source_ip

    def get_users(self, email):
        # Asked twice per request (to audit, then to mail): judged once.
        if getattr(self, "_bound", None) is None:
            self._bound = []
            for user in super().get_users(email):
                if password_bound(user):
                    self._bound.append(user)
                    continue
                bindings.forged(
                    credential="password",
                    user=user,
                    source_ip=self.source_ip,
                    problem="a reset was asked for an address the portal did not set for this account; not mailed",
                )
        return iter(self._bound)


def password_reset_request(*, email: str, source_ip: str | None) -> None:
    """Mail a one-time reset link to every active account with address
    `email`, unless a limit is reached. Returns nothing either way, so the
    caller cannot tell the cases apart."""
    address = email.strip().lower()
    limit = _over_limit(address=address, source_ip=source_ip)
    if limit:
        record(
            "auth.password_reset_throttled",
            actor_name="anonymous",
            source_ip=source_ip,
            details={"email": address, "limit": limit},
        )
        return
    form = BoundAddressResetForm({"email": address}, source_ip=source_ip)
    if not form.is_valid():
        return
    accounts = list(form.get_users(address))
    record(
        "auth.password_reset_requested",
        actor_name="anonymous",
        source_ip=source_ip,
        details={"email": address, "accounts": [user.get_username() for user in accounts]},
    )
    # The link names the configured portal address, never the request's Host header.
    portal = urlsplit(settings.PORTAL_URL)
    form.save(
        domain_override=portal.netloc,
        use_https=portal.scheme == "https",
        subject_template_name="registration/password_reset_subject.txt",
        email_template_name="registration/password_reset_email.txt",
        from_email=settings.DEFAULT_FROM_EMAIL,
    )


def password_reset_completed(*, user, source_ip: str | None = None) -> None:
    """Audit a password set through a reset link (call in the transaction
    that saved it)."""
    own_password_set(user=user, action="auth.password_reset_completed", source_ip=source_ip)

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from audit.writer import record


def _source_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") if request is not None else None


@receiver(user_logged_in)
def audit_login(sender, request, user, **kwargs):
    record("auth.login", actor=user, obj=user, source_ip=_source_ip(request))


@receiver(user_logged_out)
def audit_logout(sender, request, user, **kwargs):
    if user is not None:
        record("auth.logout", actor=user, obj=user, source_ip=_source_ip(request))


@receiver(user_login_failed)
def audit_login_failed(sender, credentials, request=None, **kwargs):
    # `credentials` has the password already cleansed by Django; keep the name only.
    record(
        "auth.login_failed",
        actor_name=str(credentials.get("username", ""))[:150],
        source_ip=_source_ip(request),
    )

"""`manage.py check --deploy` fails while any account still has a well-known
default password or the password bootstrap generated for it."""

from django.contrib.auth import get_user_model
from django.core.checks import Error, Tags, register
from django.db import DatabaseError

KNOWN_DEFAULTS = (
    "admin",
    "administrator",
    "password",
    "Password1",
    "changeme",
    "secret",
    "root",
    "toor",
    "123456",
    "12345678",
    "qwerty",
    "letmein",
    "welcome",
    "vmware",
    "VMware1!",
    "default",
    "guest",
)


@register(Tags.security, deploy=True)
def no_default_passwords(app_configs, **kwargs):
    from accounts.models import AccountState

    errors = []
    try:
        users = list(get_user_model().objects.filter(is_active=True))
        unchanged = set(AccountState.objects.filter(must_change_password=True).values_list("user__username", flat=True))
    except DatabaseError:  # no database yet (before migrate): nothing to check
        return []
    for user in users:
        if not user.has_usable_password():
            continue
        if any(user.check_password(candidate) for candidate in (*KNOWN_DEFAULTS, user.get_username())):
            errors.append(
                Error(
                    f"User {user.get_username()!r} has a well-known default password.",
                    hint="Set a strong password: manage.py changepassword NAME",
                    id="accounts.E001",
                )
            )
        elif user.get_username() in unchanged:
            errors.append(
                Error(
                    f"User {user.get_username()!r} still has the password bootstrap generated.",
                    hint="Sign in once and change it, or: manage.py changepassword NAME",
                    id="accounts.E002",
                )
            )
    return errors

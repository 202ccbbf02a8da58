from django.shortcuts import redirect
from django.urls import reverse

from accounts.services import must_change_password

ALLOWED_PREFIXES = ("/accounts/password_change/", "/accounts/logout/", "/static/")


class PasswordChangeRequiredMiddleware:
    """A user whose password was generated for them changes it before anything else."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and not request.path.startswith(ALLOWED_PREFIXES)
            and must_change_password(user)
        ):
            return redirect(f"{reverse('password_change')}?next={request.path}")
        return self.get_response(request)

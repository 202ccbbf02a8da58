from django.contrib import messages
from django.contrib.auth import views as auth_views

from accounts.lifecycle import activation_tokens
from accounts.services import password_changed
from audit.writer import record


class ActivateView(auth_views.PasswordResetConfirmView):
    """The activation link: the person sets their first password."""

    token_generator = activation_tokens
    template_name = "accounts/activate.html"
    success_url = "/accounts/login/"
    reset_url_token = "set-password"  # noqa: S105 - the URL segment's name, not a secret

    def form_valid(self, form):
        response = super().form_valid(form)
        password_changed(form.user)
        record(
            "auth.account_activated",
            actor=form.user,
            obj=form.user,
            source_ip=self.request.META.get("REMOTE_ADDR"),
        )
        messages.success(self.request, "Your password is set. Sign in with it.")
        return response

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse_lazy
from django.views.decorators.http import require_POST

from accounts import password_reset
from accounts.directory import pages as directory_pages
from accounts.services import own_password_set, sign_out_everywhere


def _source_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR")


class LoginView(auth_views.LoginView):
    def get_context_data(self, **kwargs):
        return {
            **super().get_context_data(**kwargs),
            "password_reset_enabled": password_reset.password_reset_enabled(),
            **directory_pages.sign_in_context(self.request),
        }

    def form_valid(self, form):
        response = super().form_valid(form)
        directory_pages.after_local_sign_in(self.request)
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    success_url = "/"

    @transaction.atomic
    def form_valid(self, form):
        response = super().form_valid(form)
        own_password_set(user=self.request.user, source_ip=_source_ip(self.request))
        messages.success(self.request, "Your password was changed.")
        return response


class PasswordResetEnabledMixin:
    """Without a mail backend that delivers, password reset does not exist."""

    def dispatch(self, request, *args, **kwargs):
        if not password_reset.password_reset_enabled():
            raise Http404("Password reset is not available.")
        return super().dispatch(request, *args, **kwargs)


class PasswordResetView(PasswordResetEnabledMixin, auth_views.PasswordResetView):
    success_url = reverse_lazy("password_reset_done")

    def form_valid(self, form):
        # The same answer whether or not an account has the address, and whether or not it was throttled.
        password_reset.password_reset_request(email=form.cleaned_data["email"], source_ip=_source_ip(self.request))
        return HttpResponseRedirect(self.get_success_url())


class PasswordResetDoneView(PasswordResetEnabledMixin, auth_views.PasswordResetDoneView):
    pass


class PasswordResetConfirmView(PasswordResetEnabledMixin, auth_views.PasswordResetConfirmView):
    success_url = reverse_lazy("password_reset_complete")

    @transaction.atomic
    def form_valid(self, form):
        response = super().form_valid(form)
        password_reset.password_reset_completed(user=form.user, source_ip=_source_ip(self.request))
        return response


class PasswordResetCompleteView(PasswordResetEnabledMixin, auth_views.PasswordResetCompleteView):
    pass


@login_required
@require_POST
def logout_everywhere(request):
    sign_out_everywhere(user=request.user, source_ip=_source_ip(request))
    logout(request)  # this browser's session is gone too: start a clean one
    return redirect("login")

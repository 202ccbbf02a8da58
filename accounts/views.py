from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from accounts.services import password_changed, sign_out_everywhere
from audit.writer import record


class PasswordChangeView(auth_views.PasswordChangeView):
    success_url = "/"

    def form_valid(self, form):
        response = super().form_valid(form)
        password_changed(self.request.user)
        record(
            "auth.password_changed",
            actor=self.request.user,
            obj=self.request.user,
            source_ip=self.request.META.get("REMOTE_ADDR"),
        )
        messages.success(self.request, "Your password was changed.")
        return response


@login_required
@require_POST
def logout_everywhere(request):
    sign_out_everywhere(user=request.user, source_ip=request.META.get("REMOTE_ADDR"))
    logout(request)  # this browser's session is gone too: start a clean one
    return redirect("login")

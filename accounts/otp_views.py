from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe

from accounts import otp


def _next(request, default="/"):
    target = request.POST.get("next") or request.GET.get("next") or default
    return target if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}) else default


@login_required
def enrol(request):
    """Show the QR code of a new authenticator, then confirm it with a code."""
    if request.method == "POST" and "token" in request.POST:
        if otp.enrolment_confirm(user=request.user, token=request.POST["token"]):
            otp.mark_session_confirmed(request)
            messages.success(request, "Your authenticator is set up.")
            return redirect(_next(request))
        messages.error(request, "That code did not match. Scan the code again and enter the six digits it shows.")
    device = None if request.method == "GET" else otp.pending_device(request.user)
    device = device or otp.enrolment_start(user=request.user)
    # Safe: the SVG is drawn by qrcode from the device's own otpauth URL, never from user input.
    qr = mark_safe(otp.qr_svg(device))  # nosec  # noqa: S308
    context = {"qr": qr, "enrolled": otp.is_enrolled(request.user), "next": _next(request)}
    return render(request, "accounts/otp_enrol.html", context)


@login_required
def verify(request):
    """Confirm a one-time password for this session (needed before approvals
    whose policy requires it)."""
    if not otp.is_enrolled(request.user):
        return redirect(f"/accounts/otp/enrol/?next={_next(request)}")
    if request.method == "POST":
        if otp.confirm_for_session(request, request.POST.get("token", "")):
            return redirect(_next(request))
        messages.error(request, "That code did not match, or was used already.")
    return render(request, "accounts/otp_verify.html", {"next": _next(request)})

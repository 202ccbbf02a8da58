from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe

from accounts import otp


def _next(request, default="/"):
    target = request.POST.get("next") or request.GET.get("next") or default
    return target if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}) else default


PENDING_KEY = "twokey_otp_pending_device"
TEMPLATE = "accounts/otp_enrol.html"


def _source_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR")


def _show_qr(request, device):
    request.session[PENDING_KEY] = device.pk
    # Safe: the SVG is drawn by qrcode from the device's own otpauth URL, never from user input.
    qr = mark_safe(otp.qr_svg(device))  # nosec  # noqa: S308
    return render(request, TEMPLATE, {"qr": qr, "next": _next(request)})


def _ask_current_code(request):
    return render(request, TEMPLATE, {"ask_current": True, "next": _next(request)})


@login_required
def enrol(request):
    """Set up an authenticator: show a new one's QR code, then confirm it
    with a code. Someone who has one already first gives a code from it."""
    user = request.user
    if request.method == "POST" and "token" in request.POST:
        device_id = request.session.get(PENDING_KEY)
        if otp.enrolment_confirm(
            user=user, device_id=device_id, token=request.POST["token"], source_ip=_source_ip(request)
        ):
            request.session.pop(PENDING_KEY, None)
            otp.mark_session_confirmed(request)
            messages.success(request, "Your authenticator is set up.")
            return redirect(_next(request))
        device = otp.pending_device(user, device_id=device_id)
        if device is None:
            messages.error(request, "That set-up has expired. Start again.")
            return (
                _ask_current_code(request)
                if otp.is_enrolled(user)
                else _show_qr(request, otp.enrolment_start(user=user))
            )
        messages.error(request, "That code did not match. Scan the code again and enter the six digits it shows.")
        return _show_qr(request, device)
    if request.method == "POST" and "current_token" in request.POST:
        try:
            device = otp.enrolment_start(
                user=user, current_token=request.POST["current_token"], source_ip=_source_ip(request)
            )
        except otp.CurrentCodeRequired:
            messages.error(request, "That code from your current authenticator did not match, or was used already.")
            return _ask_current_code(request)
        return _show_qr(request, device)
    if otp.is_enrolled(user):
        return _ask_current_code(request)
    return _show_qr(request, otp.enrolment_start(user=user))


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

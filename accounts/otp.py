"""One-time passwords (TOTP, via django-otp): enrolment by QR code, and a
"recent confirmation" that policies can require before an approval."""

import time

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.db import transaction
from django_otp import match_token, user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.writer import record

SESSION_KEY = "twokey_otp_confirmed_at"


def enrolment_start(*, user) -> TOTPDevice:
    """A fresh, unconfirmed authenticator for `user` (replacing any unconfirmed one)."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        return TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)


def enrolment_confirm(*, user, token: str) -> bool:
    """Confirm the pending authenticator with a code from it."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None or not device.verify_token((token or "").strip()):
        return False
    with transaction.atomic():
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.filter(user=user, confirmed=True).exclude(pk=device.pk).delete()
        record("auth.otp_enrolled", actor=user, obj=user)
    return True


def is_enrolled(user) -> bool:
    return user_has_device(user, confirmed=True)


def check(user, token: str | None) -> bool:
    """Whether `token` is a valid, unused code of one of the user's confirmed devices."""
    if not token:
        return False
    return match_token(user, str(token).strip()) is not None


def pending_device(user) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=False).first()


def mark_session_confirmed(request) -> None:
    request.session[SESSION_KEY] = time.time()


def confirm_for_session(request, token: str) -> bool:
    if check(request.user, token):
        mark_session_confirmed(request)
        record("auth.otp_confirmed", actor=request.user, obj=request.user, source_ip=request.META.get("REMOTE_ADDR"))
        return True
    record("auth.otp_failed", actor=request.user, obj=request.user, source_ip=request.META.get("REMOTE_ADDR"))
    return False


def recently_confirmed(request) -> bool:
    """Whether this session confirmed a one-time password in the last OTP_RECENT_SECONDS."""
    at = request.session.get(SESSION_KEY) if hasattr(request, "session") else None
    return at is not None and time.time() - float(at) < settings.OTP_RECENT_SECONDS


def qr_svg(device: TOTPDevice) -> str:
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    return image.to_string(encoding="unicode")

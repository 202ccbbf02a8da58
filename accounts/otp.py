"""One-time passwords (TOTP, via django-otp): enrolment by QR code (a new
authenticator replaces the old one only with a current code from it), a
reset for lost ones, and a "recent confirmation" that policies can require
before an approval."""

import time
from datetime import timedelta

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django_otp import match_token, user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.writer import record

SESSION_KEY = "twokey_otp_confirmed_at"
# A new authenticator must be confirmed within this long of being started.
ENROLMENT_SECONDS = 15 * 60


class CurrentCodeRequired(Exception):
    """The user has a confirmed authenticator: a new one is started only
    with a current code from it."""


def _lock(user) -> None:
    # One enrolment step at a time per user, so no authenticator is started
    # unchecked while another is being confirmed.
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()


def _confirmed_ids(user) -> list[int]:
    return list(TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").values_list("pk", flat=True))


def enrolment_start(*, user, current_token: str | None = None, source_ip: str | None = None) -> TOTPDevice:
    """A fresh, unconfirmed authenticator for `user`, replacing any other
    unconfirmed one. A user who has a confirmed authenticator must give a
    current code from it (`current_token`), else CurrentCodeRequired is
    raised and the refusal audited; a lost authenticator is reset by a
    configuration request (`otp_reset`)."""
    code_ok = bool(current_token) and check(user, current_token)
    with transaction.atomic():
        _lock(user)
        current = _confirmed_ids(user)
        if not current or code_ok:
            TOTPDevice.objects.filter(user=user, confirmed=False).delete()
            device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)
            if current:
                record(
                    "auth.otp_replacement_started",
                    actor=user,
                    obj=user,
                    source_ip=source_ip,
                    details={"device_id": device.pk, "replacing": current},
                )
            return device
    record(
        "auth.otp_replace_refused",
        actor=user,
        obj=user,
        source_ip=source_ip,
        details={"step": "start", "reason": "no valid code from the current authenticator", "devices": current},
    )
    raise CurrentCodeRequired("Enter a current code from your authenticator first.")


def pending_device(user, *, device_id: int | None) -> TOTPDevice | None:
    """The authenticator `device_id` of `user`, if it awaits confirmation and was started recently."""
    if device_id is None:
        return None
    started_after = timezone.now() - timedelta(seconds=ENROLMENT_SECONDS)
    return TOTPDevice.objects.filter(user=user, pk=device_id, confirmed=False, created_at__gte=started_after).first()


def enrolment_confirm(*, user, device_id: int | None, token: str, source_ip: str | None = None) -> bool:
    """Confirm the pending authenticator `device_id` (the one enrolment_start
    gave this browser) with a code from it. It then replaces every other
    authenticator of the user. Audited either way."""
    with transaction.atomic():
        _lock(user)
        device = pending_device(user, device_id=device_id)
        if device is not None and device.verify_token((token or "").strip()):
            before = _confirmed_ids(user)
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
            record(
                "auth.otp_replaced" if before else "auth.otp_enrolled",
                actor=user,
                obj=user,
                source_ip=source_ip,
                details={"before": {"devices": before}, "after": {"devices": [device.pk]}},
            )
            return True
        enrolled = bool(_confirmed_ids(user))
    if device is None and enrolled:
        record(
            "auth.otp_replace_refused",
            actor=user,
            obj=user,
            source_ip=source_ip,
            details={
                "step": "confirm",
                "reason": "no authenticator started with a current code",
                "device_id": device_id,
            },
        )
    else:
        record(
            "auth.otp_enrol_failed",
            actor=user,
            obj=user,
            source_ip=source_ip,
            details={"device_id": device_id, "reason": "expired or unknown" if device is None else "wrong code"},
        )
    return False


def otp_reset(*, user, actor=None, actor_name: str = "") -> int:
    """Delete every authenticator of `user` (a lost device), so they enrol
    afresh; for the configuration request that approves it. Returns how
    many were deleted."""
    with transaction.atomic():
        _lock(user)
        devices = list(TOTPDevice.objects.filter(user=user).order_by("pk").values("pk", "confirmed"))
        TOTPDevice.objects.filter(user=user).delete()
        record(
            "auth.otp_reset",
            actor=actor,
            actor_name=actor_name,
            obj=user,
            details={
                "username": user.get_username(),
                "before": {"devices": [d["pk"] for d in devices if d["confirmed"]]},
                "after": {"devices": []},
            },
        )
    return len(devices)


def is_enrolled(user) -> bool:
    return user_has_device(user, confirmed=True)


def check(user, token: str | None) -> bool:
    """Whether `token` is a valid, unused code of one of the user's confirmed devices."""
    if not token:
        return False
    return match_token(user, str(token).strip()) is not None


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

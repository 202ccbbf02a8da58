"""The passkeys page: a person's own passkeys, adding one (the browser's
WebAuthn call, driven by static/portal/passkey.js) and removing one. Both
need a one-time password confirmed in this session."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts import otp, passkeys
from accounts.models import Passkey

CHALLENGE_KEY = "twokey_passkey_registration"
RP_NAME = "TwoKey"


def _source_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR")


@login_required
def passkey_list(request):
    """Your passkeys; POST removes one."""
    user = request.user
    if request.method == "POST":
        try:
            passkey = passkeys.passkey_remove(
                user=user,
                passkey_id=int(request.POST.get("passkey", "0") or 0),
                second_factor=otp.recently_confirmed(request),
                source_ip=_source_ip(request),
            )
        except passkeys.SecondFactorRequired:
            messages.error(request, "Confirm a code from your authenticator first, then remove the passkey.")
        except (Passkey.DoesNotExist, ValueError) as exc:
            raise Http404("No such passkey of yours.") from exc
        else:
            messages.success(request, f"The passkey {passkey.name} is removed.")
        return redirect("passkeys")
    context = {
        "passkeys": Passkey.objects.filter(user=user, removed_at=None),
        "second_factor": otp.recently_confirmed(request),
        "otp_enrolled": otp.is_enrolled(user),
    }
    return render(request, "accounts/passkeys.html", context)


@login_required
@require_POST
def passkey_register_options(request):
    """The options for navigator.credentials.create, with a fresh challenge."""
    if not otp.recently_confirmed(request):
        return JsonResponse({"error": "Confirm a code from your authenticator first."}, status=403)
    options, challenge = passkeys.registration_options(
        user=request.user, rp_id=passkeys.rp_id_for(request), rp_name=RP_NAME
    )
    request.session[CHALLENGE_KEY] = challenge.hex()
    return JsonResponse(json.loads(options))


@login_required
@require_POST
def passkey_register(request):
    """Register the credential the browser made for the challenge above."""
    challenge = request.session.pop(CHALLENGE_KEY, None)
    try:
        body = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = {}
    credential = body.get("credential") if isinstance(body, dict) else None
    name = body.get("name") if isinstance(body, dict) and isinstance(body.get("name"), str) else ""
    try:
        passkey = passkeys.passkey_register(
            user=request.user,
            credential=json.dumps(credential) if isinstance(credential, dict) else "{}",
            expected_challenge=bytes.fromhex(challenge) if challenge else None,
            rp_id=passkeys.rp_id_for(request),
            origin=passkeys.origin_of(request),
            name=name,
            second_factor=otp.recently_confirmed(request),
            source_ip=_source_ip(request),
        )
    except passkeys.SecondFactorRequired as exc:
        return JsonResponse({"error": str(exc)}, status=403)
    except passkeys.RegistrationRefused as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    messages.success(request, f"The passkey {passkey.name} is registered.")
    return JsonResponse({"ok": True, "credential_id": passkey.credential_id})

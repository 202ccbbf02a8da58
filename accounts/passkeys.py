"""Passkeys (WebAuthn credentials, through py_webauthn): registration and
removal. Both need a second factor confirmed in this session, and both are
audited with the credential's id and public key, so that an audit export
holds every key an offline check of approvals needs."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from webauthn import generate_registration_options, options_to_json, verify_registration_response
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.decode_credential_public_key import decode_credential_public_key
from webauthn.helpers.decoded_public_key_to_cryptography import decoded_public_key_to_cryptography
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from accounts import bindings
from accounts.models import Passkey
from audit import passkeys as proofs
from audit.writer import record


class SecondFactorRequired(Exception):
    """Passkeys are added or removed only with a second factor confirmed now."""


class RegistrationRefused(Exception):
    """The authenticator's answer does not register a passkey."""


def registration_options(*, user, rp_id: str, rp_name: str) -> tuple[str, bytes]:
    """(options JSON for navigator.credentials.create, the challenge to keep
    in the session)."""
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=rp_name,
        user_name=user.get_username(),
        user_id=f"twokey-user-{user.pk}".encode(),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=proofs.unb64url(key))
            for key in Passkey.objects.filter(user=user, removed_at=None).values_list("credential_id", flat=True)
        ],
        supported_pub_key_algs=list(proofs.ALGORITHMS),
    )
    return options_to_json(options), options.challenge


def _refused(user, step: str, reason: str, source_ip: str | None) -> None:
    record(
        "auth.passkey_refused",
        actor=user,
        obj=user,
        source_ip=source_ip,
        details={"step": step, "reason": reason},
    )


def passkey_register(
    *,
    user,
    credential: str,
    expected_challenge: bytes | None,
    rp_id: str,
    origin: str,
    name: str = "",
    second_factor: bool,
    source_ip: str | None = None,
) -> Passkey:
    """Register the credential the browser created. Needs `second_factor`
    (a one-time password confirmed in this session); SecondFactorRequired or
    RegistrationRefused otherwise, each audited."""
    if not second_factor:
        _refused(user, "register", "no second factor confirmed in this session", source_ip)
        raise SecondFactorRequired("Confirm a code from your authenticator first.")
    if not expected_challenge:
        _refused(user, "register", "no registration under way", source_ip)
        raise RegistrationRefused("No passkey registration is under way: start again.")
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=expected_challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            require_user_verification=True,
            supported_pub_key_algs=list(proofs.ALGORITHMS),
        )
        decoded = decode_credential_public_key(verified.credential_public_key)
        public_key = proofs.public_key_spki(decoded_public_key_to_cryptography(decoded))
    except (WebAuthnException, ValueError, TypeError, json.JSONDecodeError) as exc:
        _refused(user, "register", f"the authenticator's answer does not verify: {exc}", source_ip)
        raise RegistrationRefused("The authenticator's answer does not verify.") from exc
    credential_id = bytes_to_base64url(verified.credential_id)
    try:
        with transaction.atomic():
            get_user_model().objects.select_for_update().filter(pk=user.pk).first()
            passkey = Passkey(
                user=user,
                name=(name or "passkey").strip()[:80],
                credential_id=credential_id,
                public_key=public_key,
                alg=int(decoded.alg),
                rp_id=rp_id,
                sign_count=verified.sign_count,
            )
            passkey.binding = bindings.bind(bindings.of_passkey(passkey))
            passkey.save(force_insert=True)
            record(
                "auth.passkey_registered",
                actor=user,
                obj=user,
                source_ip=source_ip,
                details={
                    "credential_id": credential_id,
                    "public_key": public_key,
                    "alg": passkey.alg,
                    "rp_id": rp_id,
                    "name": passkey.name,
                },
            )
    except IntegrityError as exc:
        _refused(user, "register", "that credential is registered already", source_ip)
        raise RegistrationRefused("That passkey is registered already.") from exc
    return passkey


def passkey_retire(passkey: Passkey, field: str) -> None:
    """Mark the (locked) passkey removed or flagged now (`field`:
    "removed_at" or "flagged_at"), and bind it as retired, so that clearing
    the mark in the table does not bring it back."""
    setattr(passkey, field, timezone.now())
    passkey.binding = bindings.bind(bindings.of_passkey(passkey))
    passkey.save(update_fields=[field, "binding"])


def passkey_remove(*, user, passkey_id: int, second_factor: bool, source_ip: str | None = None) -> Passkey:
    """Remove one of the user's own passkeys: approvals it signed stop
    counting for tickets not yet carried out."""
    if not second_factor:
        _refused(user, "remove", "no second factor confirmed in this session", source_ip)
        raise SecondFactorRequired("Confirm a code from your authenticator first.")
    with transaction.atomic():
        passkey = Passkey.objects.select_for_update().get(pk=passkey_id, user=user, removed_at=None)
        passkey_retire(passkey, "removed_at")
        record(
            "auth.passkey_removed",
            actor=user,
            obj=user,
            source_ip=source_ip,
            details={"credential_id": passkey.credential_id, "public_key": passkey.public_key, "name": passkey.name},
        )
    return passkey


def rp_id_for(request) -> str:
    """The relying party id: the portal's host name, as the browser sees it."""
    return request.get_host().split(":")[0]


def origin_of(request) -> str:
    return f"{request.scheme}://{request.get_host()}"

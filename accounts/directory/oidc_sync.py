"""The background sync for OpenID Connect: a provider answers about a person
only to a client holding a grant for them, so each account keeps the refresh
token its last sign-in brought (sealed: only the worker opens it). The sync
refreshes it at the provider's token endpoint, checks the new ID token as
sign-in does (signature by a key of the JWKS, issuer, audience, expiry, the
same subject), reads the role claim (ID token and userinfo) and applies it
with the sign-in's service.

A provider that refuses the grant (revoked, expired, the person disabled or
deleted: `invalid_grant`) ends the account. A provider that cannot be
reached, or refuses the portal itself, or answers what cannot be trusted,
stops the run with words, and the accounts not yet asked stay as they are."""

from __future__ import annotations

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.db import transaction

from accounts.directory import OIDC
from accounts.directory.oidc import DirectoryOIDCBackend, ProviderUnavailable, discovery, entry_from_claims
from accounts.directory.services import Outcome, account_drop, entry_apply, grant_rotate, roles_withdraw
from accounts.models import AccountState, DirectoryGrant
from audit.writer import record

NO_GRANT = "no refresh grant from the provider to ask it with; roles return at the next sign-in"
UNREADABLE_GRANT = "its refresh grant cannot be opened with CREDENTIALS_KEY; roles return at the next sign-in"


class GrantRefused(Exception):
    """The provider refused this person's grant (words inside, never the token)."""


def _words(answer, token: str) -> str:
    """The provider's error and description, shortened, without the token
    should a provider echo it."""
    if not isinstance(answer, dict):
        return ""
    text = ": ".join(str(answer[k])[:200] for k in ("error", "error_description") if answer.get(k))
    return text.replace(token, "…") if token else text


def grant_refresh(refresh_token: str) -> dict:
    """The provider's answer to the refresh_token grant (RFC 6749, 6).
    Raises GrantRefused for `invalid_grant`, ProviderUnavailable for
    anything else that went wrong (nothing to conclude about the person)."""
    endpoint = discovery()["token_endpoint"]
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": settings.OIDC_RP_CLIENT_ID}
    auth = None
    if getattr(settings, "OIDC_TOKEN_USE_BASIC_AUTH", False):
        auth = (settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET)
    else:
        data["client_secret"] = settings.OIDC_RP_CLIENT_SECRET
    try:
        response = requests.post(
            endpoint, data=data, auth=auth, timeout=settings.OIDC_TIMEOUT, verify=settings.OIDC_VERIFY_SSL
        )
    except requests.RequestException as exc:
        raise ProviderUnavailable(f"The sign-in provider cannot be reached ({type(exc).__name__}).") from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code == 200 and isinstance(answer, dict) and answer.get("access_token"):
        return answer
    if response.status_code == 400 and isinstance(answer, dict) and answer.get("error") == "invalid_grant":
        raise GrantRefused(_words(answer, refresh_token))
    if response.status_code >= 500 or not isinstance(answer, dict):
        raise ProviderUnavailable(f"The sign-in provider answered the refresh with HTTP {response.status_code}.")
    raise ProviderUnavailable(
        f"The sign-in provider refused the portal's refresh request (HTTP {response.status_code}, "
        f"{_words(answer, refresh_token) or 'no error named'}): check OIDC_CLIENT_ID, OIDC_CLIENT_SECRET and that "
        "the client may use the refresh_token grant."
    )


def refreshed_claims(backend: DirectoryOIDCBackend, answer: dict, subject: str) -> dict:
    """The claims of a refresh answer about `subject`: its ID token checked
    as at sign-in (without the nonce, which belongs to the browser's
    sign-in), then userinfo. Raises SuspiciousOperation, jwt.PyJWTError,
    requests.RequestException."""
    id_token = answer.get("id_token")
    if id_token:
        payload = backend.verify_token(id_token)
    elif backend.OIDC_OP_USER_ENDPOINT:
        payload = {"sub": subject}  # no new ID token (OpenID Connect allows it): userinfo alone
    else:
        raise SuspiciousOperation("The provider's refresh answer has no ID token and it has no userinfo endpoint.")
    if str(payload.get("sub")) != subject:
        raise SuspiciousOperation("The refreshed ID token is about another subject than the grant.")
    return backend.provider_claims(answer.get("access_token"), id_token, payload)


def _sync_one(*, backend, user, grant_id: int, actor_name: str) -> Outcome | None:
    """Refresh one grant and apply what the provider says. Returns None when
    another sync holds the grant just now. Raises ProviderUnavailable."""
    from connectors.credentials import CredentialsUnreadable, unseal

    untrusted = None
    with transaction.atomic():
        # Locked while the provider is asked: a refresh token used twice
        # (two syncs at once) makes a rotating provider revoke the grant.
        grant = DirectoryGrant.objects.select_for_update(skip_locked=True).filter(pk=grant_id).first()
        if grant is None:
            return None
        state = AccountState.objects.select_for_update().get(user=user)
        try:
            token = unseal(grant.sealed_refresh_token)
        except CredentialsUnreadable:
            changed = roles_withdraw(user=user, kind=OIDC, reason=UNREADABLE_GRANT, actor_name=actor_name)
            return Outcome(user=user, problem=UNREADABLE_GRANT, changed=changed)
        try:
            answer = grant_refresh(token)
        except GrantRefused as exc:
            reason = f"the sign-in provider refused its refresh grant ({exc or 'invalid_grant'})"
            return account_drop(user=user, state=state, kind=OIDC, reason=reason, actor_name=actor_name, when="sync")
        # Kept even when the answer fails the checks below: the old token may be spent.
        rotated = answer.get("refresh_token")
        grant_rotate(grant=grant, refresh_token=rotated if rotated and rotated != token else None)
        try:
            claims = refreshed_claims(backend, answer, grant.subject)
        except requests.RequestException as exc:
            untrusted = ProviderUnavailable(f"The sign-in provider cannot be reached ({type(exc).__name__}).")
        except (SuspiciousOperation, jwt.PyJWTError, KeyError, ValueError) as exc:
            record(
                "directory.token_refused",
                actor_name=actor_name,
                obj=user,
                details={"directory": OIDC, "when": "sync", "reason": f"{type(exc).__name__}: {str(exc)[:200]}"},
            )
            untrusted = ProviderUnavailable(
                f"The sign-in provider's answer about {user.username} was refused ({type(exc).__name__}); "
                "nothing was changed for it."
            )
        else:
            outcome = entry_apply(
                user=user, state=state, entry=entry_from_claims(claims), kind=OIDC, actor_name=actor_name, when="sync"
            )
    if untrusted is not None:
        raise untrusted
    return outcome


def oidc_sync(*, actor_name: str) -> list[Outcome]:
    """Ask the provider about every active account it brought in, and bring
    each in line. An account without a usable grant loses its roles (it
    stays active; signing in brings a grant). Raises ProviderUnavailable
    before changing anything when the provider cannot be asked (and when
    it fails half-way: the accounts already synced stay as they now are),
    CredentialsUnavailable where this process cannot open grants."""
    from accounts.directory.services import held_roles
    from connectors.credentials import CredentialsUnavailable, can_unseal

    if not can_unseal():
        raise CredentialsUnavailable(
            "This process holds no CREDENTIALS_KEY, so it cannot open the provider's refresh grants: "
            "the worker runs this sync."
        )
    discovery()
    backend = DirectoryOIDCBackend()
    issuer = settings.TWOKEY_OIDC_ISSUER
    outcomes = []
    users = (
        get_user_model()
        .objects.filter(account_state__directory=OIDC, is_active=True)
        .select_related("account_state")
        .order_by("pk")
    )
    for user in users:
        grant_id = (
            DirectoryGrant.objects.filter(user=user, issuer=issuer, subject=user.account_state.directory_id)
            .values_list("pk", flat=True)
            .first()
        )
        if grant_id is None:
            changed = {}
            if held_roles(user):
                changed = roles_withdraw(user=user, kind=OIDC, reason=NO_GRANT, actor_name=actor_name)
            outcomes.append(Outcome(user=user, problem=NO_GRANT, changed=changed))
            continue
        outcome = _sync_one(backend=backend, user=user, grant_id=grant_id, actor_name=actor_name)
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes

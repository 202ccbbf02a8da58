"""OpenID Connect sign-in through mozilla-django-oidc: the authorization
code flow with PKCE (S256), state and nonce. The provider's endpoints come
from its discovery document, whose issuer must be exactly OIDC_ISSUER; the
ID token must be signed by a key of the provider's JWKS with OIDC_SIGN_ALGO,
issued by OIDC_ISSUER, for OIDC_CLIENT_ID, unexpired, with the nonce this
browser was given. Accounts are bound to the token's subject, never matched
by e-mail or by the name the provider suggests."""

from __future__ import annotations

import hashlib
import logging

import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from accounts.directory import OIDC, oidc_configured
from accounts.directory.services import DirectoryEntry, directory_sign_in
from audit.writer import record

logger = logging.getLogger(__name__)
DISCOVERY_SECONDS = 600
LEEWAY_SECONDS = 30


class ProviderUnavailable(Exception):
    """The provider could not be asked, or answered what cannot be trusted."""


def discovery() -> dict:
    """The provider's discovery document (cached a few minutes). Raises
    ProviderUnavailable, with words, when it cannot be read or names
    another issuer."""
    issuer = settings.TWOKEY_OIDC_ISSUER
    key = "twokey:oidc:discovery:" + hashlib.sha256(issuer.encode()).hexdigest()
    document = cache.get(key)
    if document is not None:
        return document
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT, verify=settings.OIDC_VERIFY_SSL)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnavailable(f"The sign-in provider cannot be reached ({type(exc).__name__}).") from exc
    if not isinstance(document, dict) or document.get("issuer") != issuer:
        named = document.get("issuer") if isinstance(document, dict) else None
        raise ProviderUnavailable(
            f"The sign-in provider at {issuer} calls itself {named!r}; it must be exactly OIDC_ISSUER. Refused."
        )
    missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not document.get(k)]
    if missing:
        raise ProviderUnavailable(f"The sign-in provider's discovery document lacks {', '.join(missing)}.")
    cache.set(key, document, DISCOVERY_SECONDS)
    return document


def groups_claim(claims: dict) -> frozenset[str]:
    """The role claim's values: a list of names, or one space-separated string."""
    value = claims.get(settings.TWOKEY_OIDC_ROLE_CLAIM)
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, (list, tuple)):
        return frozenset(str(v) for v in value)
    return frozenset()


class DirectoryOIDCBackend(OIDCAuthenticationBackend):
    """Does nothing unless OIDC_ISSUER is set, and then only for the
    provider's callback (never for a username and password)."""

    def __init__(self, *args, **kwargs):
        # Endpoints are read from discovery when needed, not from settings.
        from django.contrib.auth import get_user_model

        self.UserModel = get_user_model()

    @property
    def OIDC_RP_CLIENT_ID(self):  # noqa: N802 - the library's names
        return settings.OIDC_RP_CLIENT_ID

    @property
    def OIDC_RP_CLIENT_SECRET(self):  # noqa: N802
        return settings.OIDC_RP_CLIENT_SECRET

    @property
    def OIDC_RP_SIGN_ALGO(self):  # noqa: N802
        return settings.OIDC_RP_SIGN_ALGO

    OIDC_RP_IDP_SIGN_KEY = None

    @property
    def OIDC_OP_TOKEN_ENDPOINT(self):  # noqa: N802
        return discovery()["token_endpoint"]

    @property
    def OIDC_OP_USER_ENDPOINT(self):  # noqa: N802
        return discovery().get("userinfo_endpoint")

    @property
    def OIDC_OP_JWKS_ENDPOINT(self):  # noqa: N802
        return discovery()["jwks_uri"]

    def get_user(self, user_id):
        user = super().get_user(user_id)
        return user if user is not None and user.is_active else None

    def authenticate(self, request, **kwargs):
        if not oidc_configured() or request is None or "nonce" not in kwargs or "username" in kwargs:
            return None
        try:
            return super().authenticate(request, **kwargs)
        except ProviderUnavailable as exc:
            request.twokey_directory_problem = "unreachable"
            request.twokey_directory_words = str(exc)
        except (SuspiciousOperation, jwt.PyJWTError, requests.RequestException, KeyError, ValueError) as exc:
            # A token that does not verify, a provider that refuses the code:
            # no sign-in, and the log says why (never the token itself).
            request.twokey_directory_problem = "refused"
            record(
                "directory.token_refused",
                actor_name=f"directory:{OIDC}",
                source_ip=request.META.get("REMOTE_ADDR"),
                details={"directory": OIDC, "reason": f"{type(exc).__name__}: {str(exc)[:200]}"},
            )
        return None

    def verify_token(self, token, **kwargs):
        """Signature (a key of the provider's JWKS, the configured algorithm
        only), issuer, audience, expiry and nonce."""
        if not token:
            raise SuspiciousOperation("No ID token in the provider's answer.")
        header = jwt.get_unverified_header(token)
        if header.get("alg") != self.OIDC_RP_SIGN_ALGO:
            raise SuspiciousOperation(f"ID token signed with {header.get('alg')!r}, not {self.OIDC_RP_SIGN_ALGO}.")
        key = self.retrieve_matching_jwk(token)
        payload = jwt.decode(
            token,
            key,
            algorithms=[self.OIDC_RP_SIGN_ALGO],
            audience=self.OIDC_RP_CLIENT_ID,
            issuer=settings.TWOKEY_OIDC_ISSUER,
            leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "aud", "sub", "exp", "iat"]},
        )
        if "nonce" in kwargs and payload.get("nonce") != kwargs["nonce"]:
            raise SuspiciousOperation("The ID token's nonce is not the one this browser was given.")
        return payload

    def get_token(self, payload):
        # The refresh token is kept aside for directory_sign_in, which seals
        # it; nothing else sees it (the session stores no token at all).
        answer = super().get_token(payload)
        self._refresh_token = answer.pop("refresh_token", None) if isinstance(answer, dict) else None
        return answer

    def provider_claims(self, access_token, id_token, payload) -> dict:
        """The verified ID token's claims, with the userinfo endpoint's
        (which must be about the same subject) on top."""
        claims = dict(payload)
        if self.OIDC_OP_USER_ENDPOINT and access_token:
            info = self.get_userinfo(access_token, id_token, payload)
            if not isinstance(info, dict) or info.get("sub") != payload["sub"]:
                raise SuspiciousOperation("The provider's userinfo is about another subject than the ID token.")
            claims.update(info)
        return claims

    def get_or_create_user(self, access_token, id_token, payload):
        entry = entry_from_claims(self.provider_claims(access_token, id_token, payload))
        outcome = directory_sign_in(
            entry=entry,
            source_ip=self.request.META.get("REMOTE_ADDR"),
            refresh_token=getattr(self, "_refresh_token", None),
        )
        self._refresh_token = None
        self.request.twokey_directory_outcome = outcome
        return outcome.user


def entry_from_claims(claims: dict) -> DirectoryEntry:
    """The person the provider's claims describe, bound to its subject."""
    return DirectoryEntry(
        kind=OIDC,
        directory_id=str(claims["sub"]),
        username=str(claims.get("preferred_username") or claims.get("email") or claims["sub"]),
        email=str(claims.get("email") or "") if claims.get("email_verified", True) else "",
        first_name=str(claims.get("given_name") or ""),
        last_name=str(claims.get("family_name") or ""),
        groups=groups_claim(claims),
    )


class OIDCStartView(OIDCAuthenticationRequestView):
    """Sends the browser to the provider (with state, nonce and a PKCE challenge)."""

    def __init__(self, *args, **kwargs):
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)

    def get(self, request):
        if not oidc_configured():
            raise Http404("No OpenID provider is configured.")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = discovery()["authorization_endpoint"]
        except ProviderUnavailable as exc:
            messages.error(request, f"{exc} Break-glass accounts can still sign in with their password.")
            return HttpResponseRedirect(reverse("login"))
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        return super().get(request)


class OIDCCallbackView(OIDCAuthenticationCallbackView):
    """Where the provider sends the browser back: the code is exchanged and
    the token checked; the page then says what the directory gave."""

    def get(self, request):
        if not oidc_configured():
            raise Http404("No OpenID provider is configured.")
        return super().get(request)

    @property
    def failure_url(self):
        return reverse("login")

    def login_failure(self):
        problem = getattr(self.request, "twokey_directory_problem", "")
        outcome = getattr(self.request, "twokey_directory_outcome", None)
        if problem == "unreachable":
            words = getattr(self.request, "twokey_directory_words", "The sign-in provider cannot be reached.")
            messages.error(self.request, f"{words} Break-glass accounts can still sign in with their password.")
        elif outcome is not None and outcome.problem:
            messages.error(self.request, f"You cannot sign in: {outcome.problem}.")
        else:
            messages.error(self.request, "Sign-in through the provider failed; nothing was signed in. Try again.")
        return super().login_failure()

    def login_success(self):
        response = super().login_success()
        from accounts.directory.pages import say_outcome

        say_outcome(self.request, getattr(self.request, "twokey_directory_outcome", None))
        return response

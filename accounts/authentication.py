from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from accounts import bindings
from accounts.directory import directory_configured
from accounts.directory.local import token_with_directory
from accounts.models import ApiToken, token_digest
from audit.writer import record


class HashedTokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>`, checked against the stored digest. A
    revoked token is refused and the attempt audited."""

    def authenticate_credentials(self, key):
        token = ApiToken.objects.select_related("user").filter(digest=token_digest(key)).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not bindings.holds(token.binding, bindings.of_token(token)):
            bindings.forged(
                credential="api_token",
                user=token.user,
                source_ip=getattr(self, "_source_ip", None),
                token_prefix=token.prefix,
                problem="the token's row is not one the portal issued to this account",
            )
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.revoked_at is not None:
            record(
                "auth.revoked_token_used",
                actor_name=token.user.get_username(),
                obj=token.user,
                source_ip=getattr(self, "_source_ip", None),
                details={"token_prefix": token.prefix},
            )
            raise exceptions.AuthenticationFailed("This token was revoked.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        if directory_configured():
            token_with_directory(token=token, source_ip=getattr(self, "_source_ip", None))
        now = timezone.now()
        # Remember use, but write at most once a minute per token.
        if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate(self, request):
        self._source_ip = request.META.get("REMOTE_ADDR")
        return super().authenticate(request)

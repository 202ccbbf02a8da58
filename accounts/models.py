import hashlib

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower


def token_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiToken(models.Model):
    """An API token. Only its SHA-256 digest is stored, bound to its owner
    (accounts/bindings.py): the key is shown once when issued and cannot be
    read back."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    prefix = models.CharField(max_length=8, help_text="The key's first characters, to tell tokens apart.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # accounts/bindings.py: ties the digest to its owner.
    binding = models.CharField(max_length=64, blank=True, default="", editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.prefix}… ({self.user})"


class AccountState(models.Model):
    """Per-user security state: a password that bootstrap or adduser generated
    must be changed at first sign-in; the person's own account on the
    hypervisor, which they may never approve access for."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_state")
    must_change_password = models.BooleanField(default=False)
    hypervisor_principal = models.CharField(
        max_length=200,
        blank=True,
        help_text="This person's own account on the hypervisor (DOMAIN\\name or name@domain).",
    )
    # With a directory configured: the directory this account comes from
    # ("ldap" or "oidc") and its identity there (the entry's DN, or the
    # provider's subject); empty for local accounts.
    directory = models.CharField(max_length=8, blank=True, default="")
    directory_id = models.CharField(max_length=512, blank=True, default="")
    # Deactivated because the directory disabled or dropped the person; the
    # directory may then reactivate it (never one the portal deactivated).
    directory_disabled = models.BooleanField(default=False)
    # A local account made on the server's shell to get in while the
    # directory is down; every page warns while it is used.
    break_glass = models.BooleanField(default=False)
    # accounts/bindings.py: ties the directory identity to this account.
    identity_binding = models.CharField(max_length=64, blank=True, default="", editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                Lower("hypervisor_principal"),
                condition=~models.Q(hypervisor_principal=""),
                name="account_principal_unique",
            ),
            models.UniqueConstraint(
                fields=["directory", "directory_id"],
                condition=~models.Q(directory=""),
                name="account_directory_identity_unique",
            ),
            models.CheckConstraint(
                condition=models.Q(directory="") | models.Q(break_glass=False),
                name="account_break_glass_is_local",
            ),
        ]

    def __str__(self):
        return f"{self.user} (must change password: {self.must_change_password})"


class PasswordBinding(models.Model):
    """What ties a person's password hash to them (accounts/bindings.py),
    set whenever the portal sets a password."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="password_binding"
    )
    binding = models.CharField(max_length=64, editable=False)

    def __str__(self):
        return f"password binding of {self.user}"


class UserSession(models.Model):
    """The sessions a user signed in with, so "sign out everywhere" can end
    them. `session_key` is the key as the session table stores it
    (accounts/sessions.py), never the cookie's."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    session_key = models.CharField(max_length=40, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.user} since {self.created_at:%Y-%m-%d %H:%M}"


class DirectoryGrant(models.Model):
    """The OpenID provider's refresh token for one account, sealed to the
    worker's public key: the web seals it at sign-in and cannot open it;
    the worker's background sync opens it to ask the provider about the
    person again. Never logged, audited or shown."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="directory_grant")
    issuer = models.CharField(max_length=512)
    subject = models.CharField(max_length=512)
    sealed_refresh_token = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="directory_grant_identity_unique"),
            # Only what connectors.credentials.seal makes, never a token in the clear.
            models.CheckConstraint(
                condition=models.Q(sealed_refresh_token__startswith="sealed:"),  # noqa: S106 - a prefix, not a secret
                name="directory_grant_is_sealed",
            ),
        ]

    def __str__(self):
        return f"refresh grant of {self.user} at {self.issuer}"


class Passkey(models.Model):
    """A person's WebAuthn credential. The public key (base64url
    SubjectPublicKeyInfo) is also in the audit entry that registered it, so
    an export carries everything an offline check of approvals needs. A
    removed or flagged passkey proves nothing any more; rows are kept, as
    approvals name them."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="passkeys")
    name = models.CharField(max_length=80, blank=True)
    credential_id = models.CharField(max_length=1400, unique=True)
    public_key = models.TextField()
    alg = models.SmallIntegerField()
    rp_id = models.CharField(max_length=253)
    sign_count = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    # Set when the sign count went backwards: a second copy of the key exists.
    flagged_at = models.DateTimeField(null=True, blank=True)
    # accounts/bindings.py: ties the key to its owner, active or retired.
    binding = models.CharField(max_length=64, blank=True, default="", editable=False)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"passkey {self.name or self.credential_id[:12]} of {self.user}"


class PasskeyChallenge(models.Model):
    """A nonce handed to one person for signing one ticket: used once, and
    only within a few minutes."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    ticket_id = models.PositiveBigIntegerField()
    nonce = models.CharField(max_length=64, unique=True)
    challenge = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"passkey challenge for ticket {self.ticket_id} to {self.user}"

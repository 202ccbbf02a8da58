from django.db import models

from connectors import credentials
from connectors.base import ConnectionConfig, ConnectorIdentity


class Connector(models.Model):
    """One hypervisor the portal acts on, pinned to the vCenter that answered
    at registration. The password is sealed to the worker's key: only the
    worker can open it."""

    class Kind(models.TextChoices):
        VSPHERE = "vsphere", "VMware vSphere"

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.VSPHERE)
    url = models.URLField(max_length=300)
    username = models.CharField(max_length=150)
    # Sealed (connectors.credentials.seal); legacy rows hold a Fernet token.
    password_encrypted = models.TextField(editable=False)
    verify_tls = models.BooleanField(default=True)
    # The pin, taken at registration and after a URL change: vCenter's
    # content.about.instanceUuid and the SHA-256 (hex, lowercase, no colons)
    # of its TLS certificate, empty over plain http.
    instance_uuid = models.CharField(max_length=64, blank=True, default="", editable=False)
    tls_fingerprint = models.CharField(max_length=64, blank=True, default="", editable=False)
    # Set when the drift baseline (VMs present at registration) was taken.
    baseline_taken_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(kind__in=["vsphere"]), name="connector_kind_known"),
        ]

    def __str__(self):
        return self.name

    def set_password(self, plaintext: str) -> None:
        """Seal `plaintext` to the worker's key (works in every process)."""
        self.password_encrypted = credentials.seal(plaintext)

    def set_sealed_password(self, token: str) -> None:
        """Store a password sealed elsewhere (by the web, to the worker's key)."""
        if not credentials.is_sealed(token):
            raise ValueError("not a sealed connector password")
        self.password_encrypted = token

    @property
    def identity(self) -> ConnectorIdentity:
        return ConnectorIdentity(instance_uuid=self.instance_uuid, tls_fingerprint=self.tls_fingerprint)

    def connection_config(self) -> ConnectionConfig:
        """The config a backend connects with, pin included. Opens the
        password: worker (and shell) only; CredentialsUnavailable elsewhere."""
        return ConnectionConfig(
            url=self.url,
            username=self.username,
            password=credentials.unseal(self.password_encrypted),
            verify_tls=self.verify_tls,
            instance_uuid=self.instance_uuid or None,
            tls_fingerprint=self.tls_fingerprint or None,
        )

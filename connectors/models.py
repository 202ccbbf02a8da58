from django.db import models

from connectors import credentials
from connectors.base import ConnectionConfig


class Connector(models.Model):
    """One hypervisor the portal acts on. Only the worker ever reads the
    decrypted password."""

    class Kind(models.TextChoices):
        VSPHERE = "vsphere", "VMware vSphere"

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.VSPHERE)
    url = models.URLField(max_length=300)
    username = models.CharField(max_length=150)
    password_encrypted = models.TextField(editable=False)
    verify_tls = models.BooleanField(default=True)
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

    def set_password(self, password: str) -> None:
        self.password_encrypted = credentials.encrypt(password)

    def connection_config(self) -> ConnectionConfig:
        return ConnectionConfig(
            url=self.url,
            username=self.username,
            password=credentials.decrypt(self.password_encrypted),
            verify_tls=self.verify_tls,
        )

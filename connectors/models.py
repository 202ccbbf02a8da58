from django.db import models
from django.db.models.functions import Lower

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


class InventoryObject(models.Model):
    """One object of a connector's inventory as the sync last saw it, keyed by
    its managed object id. `type` is one of approvals.inventory.index
    KIND_WORDS' keys; the fields a type does not have stay blank."""

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="inventory_objects")
    moid = models.CharField(max_length=200)
    type = models.CharField(max_length=32)
    name = models.CharField(max_length=255)
    parent_id = models.CharField(max_length=200, blank=True, default="")  # "" for the root folder
    path = models.TextField()  # as the connector gives it, names escaped
    instance_uuid = models.CharField(max_length=64, blank=True, default="")  # VMs and templates
    host_id = models.CharField(max_length=200, blank=True, default="")
    cluster_id = models.CharField(max_length=200, blank=True, default="")
    datastore_cluster_id = models.CharField(max_length=200, blank=True, default="")
    resource_pool_id = models.CharField(max_length=200, blank=True, default="")
    datastore_ids = models.JSONField(default=list, blank=True)
    nics = models.JSONField(default=list, blank=True)  # [{"key", "label", "network_id"}]
    host_ids = models.JSONField(default=list, blank=True)  # resource pools: the owner's hosts
    power_state = models.CharField(max_length=32, blank=True, default="")
    attrs = models.JSONField(default=dict, blank=True)  # anything else (cpus, memory_mb, …)
    version = models.CharField(max_length=64, blank=True, default="")  # the update version that last wrote it
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connector", "moid"], name="inventory_object_unique_moid"),
        ]
        indexes = [
            models.Index(fields=["connector", "type", "name"], name="inventory_type_name"),
            models.Index(fields=["connector", "path"], name="inventory_path"),
            models.Index(fields=["connector", "instance_uuid"], name="inventory_instance_uuid"),
            # Search: names in any case; "everything beneath this path" (LIKE
            # 'prefix%', which PostgreSQL answers from a pattern-ops index
            # whatever the collation); VMs by the host they run on (zones).
            # Names containing a word use a trigram index on PostgreSQL
            # (migration 0004, not expressible here for SQLite).
            models.Index("connector", "type", Lower("name"), name="inventory_type_lower_name"),
            models.Index(
                fields=["connector", "type", "path"],
                name="inventory_type_path_prefix",
                opclasses=["", "", "text_pattern_ops"],
            ),
            models.Index(fields=["connector", "type", "host_id"], name="inventory_type_host"),
        ]

    def __str__(self):
        return f"{self.type} {self.name} ({self.moid})"


class InventoryState(models.Model):
    """Where a connector's sync stands: how far it has read, when it last
    confirmed the table is current, and what is wrong when something is."""

    connector = models.OneToOneField(Connector, on_delete=models.CASCADE, related_name="inventory_state")
    version = models.CharField(max_length=64, blank=True, default="")  # last WaitForUpdatesEx version
    root_folder_id = models.CharField(max_length=200, blank=True, default="")
    roles = models.JSONField(default=list, blank=True)  # [{"id", "name"}]
    full_read_at = models.DateTimeField(null=True, blank=True)
    # A heartbeat: refreshed every few seconds while the sync follows updates.
    synced_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")  # the last error in words, "" when fine
    holder = models.CharField(max_length=200, blank=True, default="")  # the active sync process
    # The key of the last vCenter event drift has looked at (resumes there).
    event_key = models.BigIntegerField(null=True, blank=True)
    # The permissions as last read ([{principal, role, entity_id, …}]).
    permissions = models.JSONField(default=list, blank=True)
    permissions_read_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"inventory state of {self.connector}"

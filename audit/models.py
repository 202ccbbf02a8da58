from django.conf import settings
from django.db import models

from approvals.models import ticket_ref


class ChainHead(models.Model):
    """The single row appends lock on, so concurrent writers cannot fork the
    chain; it holds the last sequence number, hash and time, making an append
    O(1)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="")
    created_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="audit_chain_head_singleton")]

    def __str__(self):
        return f"chain head at #{self.seq}"


class AuditEntry(models.Model):
    """Append-only. Each entry carries the previous entry's hash and an HMAC
    over its own canonical encoding, so an edit, deletion, reordering or
    forged insert breaks the chain at that entry. On PostgreSQL triggers
    refuse UPDATE, DELETE and TRUNCATE."""

    seq = models.BigIntegerField(unique=True)
    # Non-decreasing with seq (the writer sees to it).
    created_at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    ticket = models.ForeignKey(
        "approvals.Ticket", null=True, blank=True, on_delete=models.PROTECT, related_name="audit_entries"
    )
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=200, blank=True)
    # Text, not inet: the stored spelling must be the hashed one. NULL, not
    # "", for none: the hash covers null.
    source_ip = models.CharField(max_length=45, null=True, blank=True)  # noqa: DJ001
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["actor", "seq"]),
            models.Index(fields=["actor_name", "seq"]),
            models.Index(fields=["action", "seq"]),
            models.Index(fields=["ticket", "seq"]),
            models.Index(fields=["object_type", "object_id", "seq"]),
        ]

    def __str__(self):
        return f"#{self.seq} {self.action}"

    @property
    def ticket_ref(self) -> str:
        return ticket_ref(self.ticket_id)


class Checkpoint(models.Model):
    """The chain as of one entry, signed with the portal's Ed25519 key
    (AUDIT_SIGNING_KEY) by the worker, for the witness to countersign. A
    database user can delete these rows but cannot forge one; the witness
    keeps its own copies (see audit.witness)."""

    seq = models.BigIntegerField(unique=True)
    hash = models.CharField(max_length=64)
    # ISO 8601 text, as signed (audit.signing.checkpoint_message).
    signed_at = models.CharField(max_length=40)
    public_key = models.CharField(max_length=64)
    signature = models.CharField(max_length=100)

    class Meta:
        ordering = ["-seq"]

    def __str__(self):
        return f"checkpoint at #{self.seq}"


class FindingKind(models.TextChoices):
    VM_UNEXPLAINED = "vm_unexplained", "VM that no ticket created"
    VM_MOVED = "vm_moved", "VM on a host no ticket moved it to"
    PERMISSION_UNEXPLAINED = "permission_unexplained", "Permission no active ticket explains"
    ACCESS_AFTER_END = "access_after_end", "Access still present after its ticket ended"
    RECORDS_UNVERIFIED = "records_unverified", "Ticket records whose seals do not verify"
    CONNECTOR_IDENTITY = "connector_identity", "Connector endpoint is not the pinned hypervisor"
    VM_REMOVED = "vm_removed", "VM that no ticket removed"
    VM_CHANGED = "vm_changed", "VM renamed or changed without a ticket"
    OBJECT_CHANGED = "object_changed", "Inventory object created, removed or changed without a ticket"
    PERMISSION_REMOVED = "permission_removed", "Permission removed without a ticket"
    PORTAL_ACCOUNT = "portal_account", "The portal's account acted without a ticket"
    EMERGENCY_UNREVIEWED = "emergency_unreviewed", "Emergency change not reviewed in time"
    TEMPLATE_CHANGED = "template_changed", "Template changed after it was vetted"


class Finding(models.Model):
    """A difference between a hypervisor and what succeeded tickets explain,
    raised once and open until an approver acknowledges it."""

    # None for findings about the portal's own records (a configuration request).
    connector = models.ForeignKey(
        "connectors.Connector", null=True, blank=True, on_delete=models.PROTECT, related_name="findings"
    )
    kind = models.CharField(max_length=32, choices=FindingKind.choices)
    # What the finding is about, stable across runs: "vm:<instance uuid>",
    # "permission:<entity id>:<user|group>:<principal>".
    object_ref = models.CharField(max_length=300)
    observed = models.JSONField(default=dict)
    expected = models.JSONField(default=dict)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    ack_comment = models.TextField(blank=True)

    class Meta:
        ordering = ["-first_seen", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connector", "kind", "object_ref"],
                condition=models.Q(acknowledged_at__isnull=True),
                name="finding_open_once",
            ),
            models.CheckConstraint(condition=models.Q(kind__in=FindingKind.values), name="finding_kind_valid"),
            models.CheckConstraint(
                condition=models.Q(acknowledged_at__isnull=True)
                | (models.Q(acknowledged_by__isnull=False) & ~models.Q(ack_comment="")),
                name="finding_ack_complete",
            ),
        ]
        indexes = [models.Index(fields=["connector", "kind", "object_ref"])]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.object_ref}"

    @property
    def is_open(self) -> bool:
        return self.acknowledged_at is None


class DriftBaseline(models.Model):
    """What a connector's hypervisor held when it was registered: those VMs
    (with their hosts) and permissions need no ticket to explain them."""

    connector = models.OneToOneField(
        "connectors.Connector", on_delete=models.PROTECT, primary_key=True, related_name="drift_baseline"
    )
    taken_at = models.DateTimeField()
    # [{"uuid", "id", "name", "host"}]
    vms = models.JSONField(default=list)
    # [{"principal", "is_group", "role", "entity", "entity_id"}]
    permissions = models.JSONField(default=list)

    def __str__(self):
        return f"baseline of {self.connector_id} at {self.taken_at:%Y-%m-%d %H:%M}"

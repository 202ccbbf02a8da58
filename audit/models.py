from django.conf import settings
from django.db import models


class ChainHead(models.Model):
    """The single row appends lock on, so concurrent writers cannot fork the
    chain; it holds the last sequence number and hash, making an append O(1)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="")

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="audit_chain_head_singleton")]


class AuditEntry(models.Model):
    """Append-only. Each entry carries the previous entry's hash and an HMAC
    over its own canonical encoding, so an edit, deletion, reordering or
    forged insert breaks the chain at that entry."""

    seq = models.BigIntegerField(unique=True)
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
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["actor", "seq"]),
            models.Index(fields=["action", "seq"]),
            models.Index(fields=["ticket", "seq"]),
            models.Index(fields=["object_type", "object_id", "seq"]),
        ]

    def __str__(self):
        return f"#{self.seq} {self.action}"

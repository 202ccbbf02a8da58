import hashlib
import json
import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models.fields.json import KeyTextTransform

from approvals.choices import Decision, TicketKind, TicketState


class Zone(models.Model):
    """A security zone on one connector: the clusters, hosts, datastores
    (and datastore clusters) and networks labelled with it, each by
    managed-object id. Higher trust_level = more trusted."""

    connector = models.ForeignKey("connectors.Connector", on_delete=models.PROTECT, related_name="zones")
    name = models.SlugField(max_length=64)
    trust_level = models.PositiveSmallIntegerField()
    clusters = models.JSONField(default=list, blank=True)
    hosts = models.JSONField(default=list, blank=True)
    networks = models.JSONField(default=list, blank=True)
    datastores = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["connector", "-trust_level", "name"]
        constraints = [models.UniqueConstraint(fields=["connector", "name"], name="zone_unique_name")]

    def __str__(self):
        return f"{self.name} ({self.trust_level})"


class CatalogueTemplate(models.Model):
    """A template VM that portal admins vetted for vm_create: that very VM
    (by managed-object id), not whatever carries its name."""

    connector = models.ForeignKey("connectors.Connector", on_delete=models.PROTECT, related_name="templates")
    name = models.CharField(max_length=80)
    template_id = models.CharField(max_length=80, blank=True, help_text="The template VM's managed-object id.")
    description = models.TextField(blank=True)
    # The vetting: who vouched for the image (the requester of the approved
    # vetting request), when the worker applied it, until when it holds,
    # and the template as it was then (TemplateImage.fingerprint(), read live).
    vetted_by = models.CharField(max_length=150, blank=True, default="", db_default="")
    vetted_at = models.DateTimeField(null=True, blank=True)
    vetted_until = models.DateTimeField(null=True, blank=True)
    fingerprint = models.JSONField(default=dict, blank=True, db_default={})

    class Meta:
        ordering = ["connector", "name"]
        constraints = [models.UniqueConstraint(fields=["connector", "name"], name="template_unique_name")]

    def __str__(self):
        return self.name


class Policy(models.Model):
    """How a kind of ticket is approved, optionally narrowed to a zone."""

    kind = models.CharField(max_length=20, choices=TicketKind.choices)
    zone = models.ForeignKey(Zone, null=True, blank=True, on_delete=models.PROTECT, related_name="policies")
    required_approvals = models.PositiveSmallIntegerField(default=1)
    approver_group = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="+")
    pending_ttl_minutes = models.PositiveIntegerField(default=7 * 24 * 60)
    max_duration_minutes = models.PositiveIntegerField(default=8 * 60)
    max_cpus = models.PositiveSmallIntegerField(default=16)
    max_memory_mb = models.PositiveIntegerField(default=65536)
    # vm_reconfigure only (with max_cpus and max_memory_mb): the most network
    # cards a VM may have after the change.
    max_nics = models.PositiveSmallIntegerField(default=4, db_default=4)
    require_otp = models.BooleanField(default=False)
    # Every approval signed by the approver's passkey over the exact change.
    require_passkey = models.BooleanField(default=False, db_default=False)
    # vm_migrate only: [{"source": zone name, "target": zone name,
    # "required_approvals": n}] — the cross-zone moves this policy allows.
    allowed_zone_pairs = models.JSONField(default=list, blank=True)
    # admin_access only: the hypervisor roles this policy lets people ask
    # for (none listed: none), and the top-level objects (the root folder,
    # datacenters, by id) it lets access be granted on at all.
    grantable_roles = models.JSONField(default=list, blank=True)
    top_level_entities = models.JSONField(default=list, blank=True)
    # A narrowly scoped standard change ({} = none): a ticket that fits is
    # approved at submission by this policy. The fields are the kind's own
    # (approvals/standard.py, Kind.standard_scope).
    standard_scope = models.JSONField(default=dict, blank=True, db_default={})

    class Meta:
        ordering = ["kind", "zone__name"]
        verbose_name_plural = "policies"
        constraints = [
            models.UniqueConstraint(fields=["kind"], condition=models.Q(zone__isnull=True), name="policy_one_default"),
            models.UniqueConstraint(fields=["kind", "zone"], name="policy_one_per_zone"),
            models.CheckConstraint(condition=models.Q(required_approvals__gte=1), name="policy_needs_approval"),
        ]

    def __str__(self):
        return f"{self.kind} ({self.zone.name if self.zone else 'any zone'})"

    TERMS = (
        "kind",
        "zone_id",
        "required_approvals",
        "approver_group_id",
        "max_duration_minutes",
        "max_cpus",
        "max_memory_mb",
        "require_otp",
        "allowed_zone_pairs",
        "grantable_roles",
        "top_level_entities",
    )

    def digest(self) -> str:
        """A digest of the terms a ticket is judged by."""
        terms = {name: getattr(self, name) for name in self.TERMS}
        if self.require_passkey:
            # Only when set, so policies (and tickets) from before passkeys keep their digest.
            terms["require_passkey"] = True
        if self.kind == TicketKind.VM_RECONFIGURE:
            # Only for the kind it limits, so other policies keep their digest.
            terms["max_nics"] = self.max_nics
        if self.standard_scope:
            # Likewise only when set.
            terms["standard_scope"] = self.standard_scope
        return hashlib.sha256(json.dumps(terms, sort_keys=True, default=str).encode()).hexdigest()


def ticket_ref(ticket_id: int | None) -> str:
    """A ticket's reference as people quote it (CHG-000042); "" for none."""
    return f"CHG-{ticket_id:06d}" if ticket_id else ""


class Ticket(models.Model):
    kind = models.CharField(max_length=20, choices=TicketKind.choices)
    state = models.CharField(max_length=20, choices=TicketState.choices, default=TicketState.PENDING)
    # None only for configuration changes, which act on the portal itself.
    connector = models.ForeignKey(
        "connectors.Connector", null=True, blank=True, on_delete=models.PROTECT, related_name="tickets"
    )
    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="tickets")
    justification = models.TextField()
    params = models.JSONField()
    not_before = models.DateTimeField(null=True, blank=True)
    not_after = models.DateTimeField(null=True, blank=True)
    content_hash = models.CharField(max_length=64)
    # Copied from the policy at submission so later policy edits move nothing.
    required_approvals = models.PositiveSmallIntegerField()
    approver_group = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="+")
    require_otp = models.BooleanField(default=False)
    require_passkey = models.BooleanField(default=False, db_default=False)
    zone = models.CharField(max_length=64, blank=True)
    # The policy the ticket was filed under and a digest of its terms then:
    # the worker refuses to act once either differs ("needs a new ticket").
    policy_id = models.PositiveBigIntegerField(null=True, blank=True)
    policy_digest = models.CharField(max_length=64, blank=True)
    # The requester's submission, sealed (approvals/seals.py).
    seal = models.CharField(max_length=80, blank=True, editable=False)
    pending_expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Execution
    operation_uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    hypervisor_task_id = models.CharField(max_length=100, blank=True)
    progress = models.CharField(max_length=200, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    access_expires_at = models.DateTimeField(null=True, blank=True)
    # Approved at submission by its policy's standard-change scope; the
    # verdict says why it was or was not standard, in words.
    is_standard = models.BooleanField(default=False, db_default=False)
    standard_verdict = models.JSONField(default=dict, blank=True, db_default={})
    # Break-glass: filed by a break_glass holder, run at once without
    # approvals, reviewed afterwards by review_due_at.
    is_emergency = models.BooleanField(default=False, db_default=False)
    emergency_reason = models.TextField(blank=True, default="", db_default="")
    review_due_at = models.DateTimeField(null=True, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_reminded_at = models.DateTimeField(null=True, blank=True)
    # Pending tickets nearing their TTL remind their approver group once.
    ttl_reminded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["state", "created_at"]),
            models.Index(fields=["requester", "created_at"]),
            models.Index(fields=["state", "access_expires_at"]),
            models.Index(
                fields=["review_due_at"],
                condition=models.Q(is_emergency=True, reviewed_at__isnull=True),
                name="ticket_emergency_unreviewed",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(state__in=TicketState.values), name="ticket_state_valid"),
            models.CheckConstraint(condition=models.Q(kind__in=TicketKind.values), name="ticket_kind_valid"),
            models.CheckConstraint(condition=~models.Q(justification=""), name="ticket_justified"),
            models.CheckConstraint(condition=models.Q(required_approvals__gte=1), name="ticket_needs_approval"),
            models.CheckConstraint(
                condition=models.Q(kind=TicketKind.CONFIG_CHANGE) | models.Q(connector__isnull=False),
                name="ticket_hypervisor_kinds_have_connector",
            ),
            models.CheckConstraint(
                condition=models.Q(is_emergency=False) | ~models.Q(emergency_reason=""), name="emergency_has_reason"
            ),
            models.CheckConstraint(
                condition=~models.Q(is_emergency=True, is_standard=True), name="emergency_or_standard"
            ),
            # Two open tickets may not create the same VM name on one connector.
            models.UniqueConstraint(
                KeyTextTransform("name", "params"),
                models.F("connector"),
                condition=models.Q(
                    kind=TicketKind.VM_CREATE,
                    state__in=[TicketState.PENDING, TicketState.APPROVED, TicketState.RUNNING],
                ),
                name="ticket_open_vm_name_unique",
            ),
        ]

    def __str__(self):
        return self.ref

    @property
    def ref(self) -> str:
        return ticket_ref(self.pk) if self.pk else "CHG-new"


class Approval(models.Model):
    """One person's decision on one ticket, bound to the content they saw."""

    ticket = models.ForeignKey(Ticket, on_delete=models.PROTECT, related_name="approvals")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="decisions")
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField(blank=True)
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    # The decision, sealed (approvals/seals.py): the worker counts it only if this verifies.
    seal = models.CharField(max_length=80, blank=True, editable=False)
    # Where the ticket requires passkeys: the approver's WebAuthn assertion
    # over the ticket's statement (audit/passkeys.py), base64url.
    # Database defaults too: rows written by plain SQL carry no proof.
    passkey_credential_id = models.CharField(max_length=1400, blank=True, default="", db_default="")
    passkey_nonce = models.CharField(max_length=64, blank=True, default="", db_default="")
    passkey_authenticator_data = models.TextField(blank=True, default="", db_default="")
    passkey_client_data_json = models.TextField(blank=True, default="", db_default="")
    passkey_signature = models.TextField(blank=True, default="", db_default="")

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["ticket", "approver"], name="approval_once_per_person"),
            models.CheckConstraint(
                condition=~models.Q(decision=Decision.REJECT) | ~models.Q(comment=""), name="rejection_has_comment"
            ),
            models.CheckConstraint(
                condition=~models.Q(decision=Decision.REVIEW) | ~models.Q(comment=""), name="review_has_comment"
            ),
        ]

    def __str__(self):
        return f"{self.approver} {self.decision} {self.ticket}"


class FreezeWindow(models.Model):
    """A blackout period on one connector, or on one zone of it: no execution
    starts inside it. One-off (starts_at to ends_at), or recurring: each
    occurrence of `rrule` (an iCalendar RRULE from starts_at, in UTC, or on
    the wall clock of the zone a leading DTSTART;TZID= names) lasts as long
    as the first one. Set by configuration requests; the
    worker believes the audit log's applied requests, not this table
    (approvals/freezes.py)."""

    connector = models.ForeignKey("connectors.Connector", on_delete=models.PROTECT, related_name="freezes")
    name = models.SlugField(max_length=64)
    # A zone name on the connector; empty: the whole connector.
    zone = models.SlugField(max_length=64, blank=True)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    rrule = models.CharField(max_length=500, blank=True)
    reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["connector", "starts_at", "name"]
        constraints = [
            models.UniqueConstraint(fields=["connector", "name"], name="freeze_unique_name"),
            models.CheckConstraint(condition=models.Q(ends_at__gt=models.F("starts_at")), name="freeze_ends_after"),
        ]

    def __str__(self):
        return self.name


class ChatHook(models.Model):
    """An incoming webhook (Slack, Mattermost, Microsoft Teams) that hears of
    the tickets of one policy, of one zone, or (neither) of every ticket. The
    URL is a secret: sealed to the worker's key like connector passwords;
    people see only its hint (scheme and host)."""

    class Service(models.TextChoices):
        SLACK = "slack", "Slack"
        MATTERMOST = "mattermost", "Mattermost"
        TEAMS = "teams", "Microsoft Teams"

    name = models.SlugField(max_length=64, unique=True)
    service = models.CharField(max_length=20, choices=Service.choices)
    url_sealed = models.TextField(editable=False)
    url_hint = models.CharField(max_length=200, editable=False)
    policy = models.ForeignKey(Policy, null=True, blank=True, on_delete=models.PROTECT, related_name="chat_hooks")
    zone = models.ForeignKey(Zone, null=True, blank=True, on_delete=models.PROTECT, related_name="chat_hooks")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(service__in=["slack", "mattermost", "teams"]), name="chat_service"
            ),
        ]

    def __str__(self):
        return self.name


class GuestPassword(models.Model):
    """The administrator password a vm_create ticket's VM was customized
    with, sealed to the web's key (approvals.guest_passwords). Revealed once
    to the requester; then `sealed` is emptied and the reveal remembered."""

    ticket = models.OneToOneField(Ticket, on_delete=models.PROTECT, related_name="guest_password")
    sealed = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revealed_at = models.DateTimeField(null=True, blank=True)
    revealed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    def __str__(self):
        return f"guest password of ticket {self.ticket_id}"

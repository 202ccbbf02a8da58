"""The one audit writer. Every service that changes something calls `record`
inside its own transaction, passing the actor explicitly."""

import ipaddress
import json
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.ipv6 import clean_ipv6_address

from audit.chain import Signer, canonical, hashed_fields
from audit.models import AuditEntry, ChainHead

# Keys that must never reach the log, wherever they appear in details.
SECRET_KEYS = frozenset({"password", "password_encrypted", "token", "key", "secret", "otp", "api_token"})


def scrub(value: Any) -> Any:
    """`value` with any secret-looking field replaced."""
    if isinstance(value, dict):
        return {k: ("[redacted]" if k.lower() in SECRET_KEYS else scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def normalize_ip(value: str | None) -> str | None:
    """One spelling per address (the hash covers the text), or None when
    `value` is not an IP address."""
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    return clean_ipv6_address(str(address)) if address.version == 6 else str(address)


def entry_fields(*, created_at: datetime, **fields: Any) -> dict[str, Any]:
    """What the hash covers (every field but the hash itself; see
    audit.chain.hashed_fields for the names), the time as ISO 8601 text."""
    return hashed_fields(created_at=created_at.isoformat(), **fields)


@lru_cache(maxsize=4)
def _signer(key: str) -> Signer:
    return Signer(key)


def entry_hash(fields: dict[str, Any]) -> str:
    return _signer(settings.AUDIT_HMAC_KEY).digest(fields)


def _locked_head() -> ChainHead:
    """The chain head, locked until the transaction ends: appends serialise
    here, and each costs the same whatever the table's size."""
    try:
        return ChainHead.objects.select_for_update().get(id=1)
    except ChainHead.DoesNotExist:
        ChainHead.objects.bulk_create([ChainHead(id=1)], ignore_conflicts=True)
        return ChainHead.objects.select_for_update().get(id=1)


def record(
    action: str,
    *,
    actor=None,
    actor_name: str = "",
    ticket=None,
    obj=None,
    object_type: str = "",
    object_id: str = "",
    source_ip: str | None = None,
    details: dict | None = None,
) -> AuditEntry:
    """Append one entry to the chain. `actor` is a user or None for the system
    (then `actor_name` says which part of it, e.g. "worker")."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
    details = json.loads(canonical(scrub(details or {})))
    source_ip = normalize_ip(source_ip)
    # No savepoint inside a caller's transaction (two statements fewer an
    # entry): an entry that fails to append fails the caller's work with it.
    with transaction.atomic(savepoint=False):
        head = _locked_head()
        # Never earlier than the entry before: time filters then map onto
        # ranges of seq, and the log reads in order even if the clock steps back.
        now = timezone.now()
        if head.created_at is not None and now < head.created_at:
            now = head.created_at
        fields = entry_fields(
            seq=head.seq + 1,
            created_at=now,
            actor_id=actor.pk if actor is not None else None,
            actor_name=actor.get_username() if actor is not None else (actor_name or "system"),
            action=action,
            ticket_id=ticket.pk if ticket is not None else None,
            object_type=object_type,
            object_id=str(object_id),
            source_ip=source_ip,
            details=details,
            prev_hash=head.hash,
        )
        digest = entry_hash(fields)
        entry = AuditEntry.objects.create(
            seq=fields["seq"],
            created_at=now,
            actor=actor,
            actor_name=fields["actor_name"],
            action=action,
            ticket=ticket,
            object_type=object_type,
            object_id=fields["object_id"],
            source_ip=source_ip,
            details=details,
            prev_hash=head.hash,
            hash=digest,
        )
        ChainHead.objects.filter(id=1).update(seq=fields["seq"], hash=digest, created_at=now)
    return entry

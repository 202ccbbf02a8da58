"""Checking the audit chain: every entry's HMAC, its link to the entry before
and its sequence number, streamed in constant memory."""

from __future__ import annotations

import json
import uuid
from contextlib import closing
from dataclasses import dataclass
from itertools import islice

from django.conf import settings
from django.db import connection, transaction

from audit.chain import GENESIS_HASH, HASHED_FIELDS, ChainWalker, Signer, canonical_entry
from audit.models import AuditEntry, ChainHead

CHUNK_SIZE = 5000

# What verification reads of each entry: the hashed fields in HASHED_FIELDS
# order, then the hash.
COLUMNS = (*HASHED_FIELDS, "hash")


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_broken: int | None  # seq of the first entry whose hash, link or sequence is wrong
    reason: str


def verify_chain(queryset=None, *, chunk_size: int = CHUNK_SIZE) -> ChainReport:
    """Verify the whole log (queryset None), or a contiguous run of entries
    such as ``AuditEntry.objects.filter(seq__gte=n)``, whose first entry is
    then taken as the anchor.

    The whole log must start at seq 1 with an empty prev_hash and end at the
    chain head, so deleting the newest entries or appending outside the
    writer is caught too."""
    whole_log = queryset is None
    entries = (AuditEntry.objects.all() if whole_log else queryset).order_by("seq").values_list(*COLUMNS)
    # One snapshot for the entries and the head: appends made while this runs
    # are neither half-seen nor mistaken for forgeries.
    snapshot = connection.vendor == "postgresql" and not connection.in_atomic_block
    with transaction.atomic():
        if snapshot:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        head = ChainHead.objects.filter(id=1).values_list("seq", "hash").first() or (0, GENESIS_HASH)
        # On PostgreSQL rows carry details as JSON text (see read_chunks).
        details_as_text = connection.vendor == "postgresql"
        # closing(): a walk that stops at a break closes the cursor in this transaction.
        with closing(read_chunks(entries, chunk_size)) as chunks:
            return _walk(chunks, head=head if whole_log else None, details_as_text=details_as_text)


def read_chunks(entries, chunk_size: int = CHUNK_SIZE):
    """The rows of a values_list queryset, `chunk_size` at a time, through a
    server-side cursor. On PostgreSQL the query runs on psycopg directly with
    its C loaders, times as datetimes and JSON as text (Django's own loaders
    would halve the speed); elsewhere through Django, JSON decoded."""
    if connection.vendor != "postgresql":
        rows = entries.iterator(chunk_size=chunk_size)
        while chunk := list(islice(rows, chunk_size)):
            yield chunk
        return
    from psycopg.types.datetime import TimestamptzLoader
    from psycopg.types.string import TextLoader

    sql, params = entries.query.sql_with_params()
    connection.ensure_connection()
    # Outside a transaction the cursor must outlive each statement's commit.
    hold = not connection.in_atomic_block
    with connection.connection.cursor(name=f"audit_{uuid.uuid4().hex}", withhold=hold) as cursor:
        cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        cursor.adapters.register_loader("jsonb", TextLoader)
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(chunk_size):
            yield chunk


def _walk(chunks, *, head: tuple[int, str] | None, details_as_text: bool) -> ChainReport:
    walker = ChainWalker(Signer(settings.AUDIT_HMAC_KEY), from_genesis=head is not None)
    step = walker.step
    parse = json.JSONDecoder().raw_decode
    for chunk in chunks:
        for (
            seq,
            created_at,
            actor_id,
            actor_name,
            action,
            ticket_id,
            object_type,
            object_id,
            source_ip,
            details,
            prev_hash,
            digest,
        ) in chunk:
            if details_as_text:
                details = parse(details)[0]
            message = canonical_entry(
                seq,
                created_at.isoformat(),
                actor_id,
                actor_name,
                action,
                ticket_id,
                object_type,
                object_id,
                source_ip,
                details,
                prev_hash,
            )
            reason = step(seq, prev_hash, digest, message)
            if reason:
                return _broken(walker.checked, seq, reason)
    if head is not None:
        last_seq, (head_seq, head_hash) = walker.last_seq, head
        if head_seq > last_seq:
            return _broken(
                walker.checked,
                last_seq + 1,
                f"entries #{last_seq + 1} to #{head_seq} are missing (the chain head is at #{head_seq})",
            )
        if head_seq < last_seq:
            return _broken(
                walker.checked,
                head_seq + 1,
                f"entry #{head_seq + 1} lies beyond the chain head: not written by the portal",
            )
        if head_hash != walker.last_hash:
            return _broken(walker.checked, last_seq, f"the chain head does not hold entry #{last_seq}'s hash")
    return ChainReport(ok=True, checked=walker.checked, first_broken=None, reason="")


def _broken(checked: int, seq: int, reason: str) -> ChainReport:
    return ChainReport(ok=False, checked=checked, first_broken=seq, reason=reason)

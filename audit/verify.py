"""Checking the audit chain: every entry's HMAC, its link to the entry before
and its sequence number, streamed in constant memory; then, where a witness
is configured (WITNESS_URL), that the log still holds what the witness saw."""

from __future__ import annotations

import json
import uuid
from contextlib import closing
from dataclasses import dataclass, replace
from itertools import islice

from django.conf import settings
from django.db import connection, transaction

from audit.chain import GENESIS_HASH, HASHED_FIELDS, ChainWalker, Signer, canonical_entry
from audit.models import AuditEntry, ChainHead
from audit.witnessed import WitnessClient, WitnessDisowned, WitnessUnavailable, compare_with_witness

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
    # "checked", "not configured", or why the witness could not be asked.
    witness: str = "not configured"
    witnessed_seq: int | None = None  # the newest witnessed checkpoint
    witnessed_at: str | None = None


_FROM_SETTINGS = object()


def configured_witness() -> WitnessClient | None:
    """The witness named by WITNESS_URL and WITNESS_PUBLIC_KEY, or None."""
    if not settings.WITNESS_URL:
        return None
    return WitnessClient(
        settings.WITNESS_URL, witness_key=settings.WITNESS_PUBLIC_KEY, portal_key=settings.AUDIT_SIGNING_PUBLIC_KEY
    )


def verify_chain(queryset=None, *, chunk_size: int = CHUNK_SIZE, witness=_FROM_SETTINGS) -> ChainReport:
    """Verify the whole log (queryset None), or a contiguous run of entries
    such as ``AuditEntry.objects.filter(seq__gte=n)``, whose first entry is
    then taken as the anchor.

    The whole log must start at seq 1 with an empty prev_hash and end at the
    chain head, so deleting the newest entries or appending outside the
    writer is caught too. And it must hold what the witness (`witness`, by
    default the configured one) cosigned: every witnessed entry, unchanged,
    so that a table owner who deletes the newest entries and moves the head
    back, or rewrites entries with the key, or restores an older copy, is
    caught at the first entry that differs."""
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
            report = _walk(chunks, head=head if whole_log else None, details_as_text=details_as_text)
        if whole_log:
            report = _against_witness(report, configured_witness() if witness is _FROM_SETTINGS else witness)
        return report


def _against_witness(report: ChainReport, witness: WitnessClient | None) -> ChainReport:
    """`report` with what the witness says added (called inside the walk's
    snapshot, so the entries compared are the entries walked)."""
    if witness is None:
        return report
    try:
        newest = witness.newest()
        if newest is None:
            return replace(report, witness="checked: nothing witnessed yet")
        found = None
        if report.ok:

            def hash_at(seq: int) -> str | None:
                return AuditEntry.objects.filter(seq=seq).values_list("hash", flat=True).first()

            found = compare_with_witness(
                last_seq=report.checked, hash_at=hash_at, newest=newest, witnessed_at=witness.witnessed_at
            )
    except WitnessUnavailable as exc:
        return replace(report, witness=f"unavailable: {exc}")
    except WitnessDisowned as exc:
        return replace(report, ok=False, first_broken=None, reason=f"witness: {exc}", witness=f"refused: {exc}")
    report = replace(report, witness="checked", witnessed_seq=newest["seq"], witnessed_at=newest["witnessed_at"])
    if found is not None:
        report = replace(report, ok=False, first_broken=found[0], reason=found[1])
    return report


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

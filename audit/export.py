"""Streaming exports of audit entries, with every hashed field and the hash,
so an auditor can verify them offline (python -m audit.verify_export).

CSV: one header row, then one row per entry; empty cells for absent ids and
addresses; `details` as JSON. JSON: an array with one entry object per line.
Both read through a server-side cursor in chunks: memory stays flat however
many entries are exported."""

import csv
import io
import json
from collections.abc import Iterator

from django.db import connection, transaction

from approvals.models import ticket_ref
from audit.chain import csv_escape
from audit.verify import COLUMNS, read_chunks

CHUNK_SIZE = 2000

EXPORT_COLUMNS = (
    "seq",
    "created_at",
    "actor_id",
    "actor_name",
    "action",
    "ticket_id",
    "ticket_ref",
    "object_type",
    "object_id",
    "source_ip",
    "details",
    "prev_hash",
    "hash",
)
_TEXT = json.encoder.encode_basestring


def _chunks(queryset) -> Iterator[list[tuple]]:
    """Rows in COLUMNS order, oldest first, details as JSON text."""
    details_are_text = connection.vendor == "postgresql"
    # One transaction for the whole stream: the cursor lives in it.
    with transaction.atomic():
        for chunk in read_chunks(queryset.order_by("seq").values_list(*COLUMNS), CHUNK_SIZE):
            if details_are_text:
                yield chunk
            else:
                yield [(*row[:9], json.dumps(row[9], ensure_ascii=False), *row[10:]) for row in chunk]


def stream_csv(queryset) -> Iterator[str]:
    """The entries of `queryset` in seq order as CSV text chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    for chunk in _chunks(queryset):
        writer.writerows(
            (
                seq,
                created_at.isoformat(),
                "" if actor_id is None else actor_id,
                csv_escape(actor_name),
                csv_escape(action),
                "" if ticket_id is None else ticket_id,
                ticket_ref(ticket_id),
                csv_escape(object_type),
                csv_escape(object_id),
                "" if source_ip is None else csv_escape(source_ip),
                details,
                prev_hash,
                digest,
            )
            for seq, created_at, actor_id, actor_name, action, ticket_id, object_type, object_id, source_ip, details, prev_hash, digest in chunk
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def stream_json(queryset) -> Iterator[str]:
    """The entries of `queryset` in seq order as a JSON array, one entry per
    line, in text chunks."""
    yield "["
    separator = "\n"
    for chunk in _chunks(queryset):
        lines = []
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
            lines.append(
                f'{separator}{{"seq":{seq},"created_at":"{created_at.isoformat()}",'
                f'"actor_id":{"null" if actor_id is None else actor_id},"actor_name":{_TEXT(actor_name)},'
                f'"action":{_TEXT(action)},"ticket_id":{"null" if ticket_id is None else ticket_id},'
                f'"ticket_ref":"{ticket_ref(ticket_id)}","object_type":{_TEXT(object_type)},"object_id":{_TEXT(object_id)},'
                f'"source_ip":{"null" if source_ip is None else _TEXT(source_ip)},"details":{details},'
                f'"prev_hash":{_TEXT(prev_hash)},"hash":{_TEXT(digest)}}}'
            )
            separator = ",\n"
        yield "".join(lines)
    yield "\n]\n"

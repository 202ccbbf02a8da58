"""Freeze windows: when no execution may start. One evaluation (`Freeze`)
serves the submission check and the pages, which read the table, and the
worker, which reads the freezes from the audit log instead: a freeze exists
for the worker when an applied configuration request created it and no
applied request deleted it since, each of those entries carrying a valid
HMAC (AUDIT_HMAC_KEY) and linked to the entry after it. A row deleted or
edited in the database lifts nothing; a row inserted there holds nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dateutil.rrule import DAILY, HOURLY, MONTHLY, WEEKLY, YEARLY, rrulestr
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from approvals.errors import InvalidInput
from approvals.models import FreezeWindow, Ticket
from audit.models import AuditEntry
from audit.writer import entry_fields, entry_hash

AUDIT_ACTION = "config.freeze."
# Finer recurrences than hourly would be a rule, not a window.
FREQUENCIES = {HOURLY, DAILY, WEEKLY, MONTHLY, YEARLY}
# Occurrences that overlap are merged, up to this many.
MERGE_LIMIT = 1000


class Unverified(Exception):
    """A freeze entry in the audit log does not verify."""


def parse_rule(text: str, starts_at: datetime):
    """The dateutil rrule for `text` (with or without "RRULE:"), from
    starts_at. ValueError in words when it is not one we evaluate."""
    text = (text or "").strip()
    body = text[len("RRULE:") :] if text.upper().startswith("RRULE:") else text
    if not body or "\n" in body or "DTSTART" in body.upper():
        raise ValueError("Give one RRULE line, e.g. FREQ=WEEKLY;BYDAY=FR;BYHOUR=16 (the start is starts_at).")
    try:
        rule = rrulestr(body, dtstart=starts_at, cache=False)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"Not an RRULE dateutil reads: {exc}.") from exc
    if rule._freq not in FREQUENCIES:
        raise ValueError("Recur at most hourly (FREQ=HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY).")
    return rule


@dataclass(frozen=True)
class Freeze:
    id: int
    name: str
    connector: int
    zone: str
    starts_at: datetime
    ends_at: datetime
    rrule: str = ""

    @classmethod
    def of_row(cls, row: FreezeWindow) -> Freeze:
        return cls(row.pk, row.name, row.connector_id, row.zone, row.starts_at, row.ends_at, row.rrule)

    @classmethod
    def of_state(cls, pk: int, state: dict) -> Freeze:
        return cls(
            pk,
            state["name"],
            state["connector"],
            state.get("zone") or "",
            parse_datetime(state["starts_at"]),
            parse_datetime(state["ends_at"]),
            state.get("rrule") or "",
        )

    def applies_to(self, connector_id: int | None, zone: str) -> bool:
        return connector_id == self.connector and (not self.zone or self.zone == zone)

    def covering(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The occurrence (start, end) that `at` lies in, overlapping
        occurrences merged; None when `at` is outside the freeze."""
        if not self.rrule:
            return (self.starts_at, self.ends_at) if self.starts_at <= at < self.ends_at else None
        length = self.ends_at - self.starts_at
        rule = parse_rule(self.rrule, self.starts_at)
        start = rule.before(at, inc=True)
        if start is None or at >= start + length:
            return None
        end = start + length
        following = rule.after(start)
        for _ in range(MERGE_LIMIT):
            if following is None or following >= end:
                break
            end = max(end, following + length)
            following = rule.after(following)
        return start, end

    def holds_whole(self, begin: datetime, end: datetime) -> tuple[datetime, datetime] | None:
        """The occurrence that the whole of [begin, end] lies in, or None."""
        occurrence = self.covering(begin)
        return occurrence if occurrence and end <= occurrence[1] else None


def freezes_in_table(connector_id: int | None, zone: str) -> list[Freeze]:
    if connector_id is None:
        return []
    rows = FreezeWindow.objects.filter(connector_id=connector_id)
    return [f for f in map(Freeze.of_row, rows) if f.applies_to(connector_id, zone)]


def _verified(entry: AuditEntry) -> None:
    fields = entry_fields(
        seq=entry.seq,
        created_at=entry.created_at,
        actor_id=entry.actor_id,
        actor_name=entry.actor_name,
        action=entry.action,
        ticket_id=entry.ticket_id,
        object_type=entry.object_type,
        object_id=entry.object_id,
        source_ip=entry.source_ip,
        details=entry.details,
        prev_hash=entry.prev_hash,
    )
    if entry_hash(fields) != entry.hash:
        raise Unverified(f"audit entry #{entry.seq} ({entry.action}) does not verify")
    after = AuditEntry.objects.filter(seq=entry.seq + 1).values_list("prev_hash", flat=True).first()
    if after is not None and after != entry.hash:
        raise Unverified(f"audit entry #{entry.seq + 1} does not link to #{entry.seq}")


def freezes_in_log(connector_id: int | None, zone: str) -> list[Freeze]:
    """The freezes the audit log says are in force for (connector, zone):
    every applied create, update and delete replayed in order. Raises
    Unverified when one of those entries does not verify."""
    if connector_id is None:
        return []
    state: dict[int, dict] = {}
    for entry in AuditEntry.objects.filter(action__startswith=AUDIT_ACTION, ticket__isnull=False).order_by("seq"):
        _verified(entry)
        pk = int(entry.object_id)
        if entry.action.endswith(".delete"):
            state.pop(pk, None)
        else:
            state[pk] = entry.details["after"]
    found = (Freeze.of_state(pk, after) for pk, after in state.items())
    return [f for f in found if f.applies_to(connector_id, zone)]


@dataclass(frozen=True)
class Hold:
    freeze: Freeze
    until: datetime

    def words(self) -> str:
        return f"held by freeze {self.freeze.name} until {self.until.isoformat(timespec='minutes')}"


def holding(freezes: list[Freeze], at: datetime) -> Hold | None:
    """The freeze that holds work at `at` longest, or None."""
    holds = [Hold(f, occurrence[1]) for f in freezes if (occurrence := f.covering(at))]
    return max(holds, key=lambda h: h.until, default=None)


def ticket_hold(ticket: Ticket, *, source: str = "table", at: datetime | None = None) -> Hold | None:
    """Whether a freeze holds the ticket now: judged by the table (pages,
    API) or by the audit log (the worker; may raise Unverified)."""
    if ticket.connector_id is None:
        return None  # configuration requests act on the portal, never frozen
    read = freezes_in_log if source == "log" else freezes_in_table
    return holding(read(ticket.connector_id, ticket.zone), at or timezone.now())


def check_not_frozen(*, connector, zone: str, not_before: datetime | None, not_after: datetime | None) -> None:
    """Refuse a change window that lies wholly inside a freeze (InvalidInput
    on not_after). A window that ends after the freeze is filed: the worker
    holds it until the freeze ends."""
    if connector is None or not_after is None:
        return
    begin = not_before or timezone.now()
    for freeze in freezes_in_table(connector.pk, zone):
        occurrence = freeze.holds_whole(begin, not_after)
        if occurrence:
            raise InvalidInput(
                {
                    "not_after": [
                        f"The change window lies wholly inside the freeze {freeze.name} "
                        f"({occurrence[0].isoformat(timespec='minutes')} to {occurrence[1].isoformat(timespec='minutes')}"
                        f"{', recurring' if freeze.rrule else ''}); choose a window that reaches past it."
                    ]
                }
            )

"""Freeze windows: when no execution may start. One evaluation (`Freeze`)
serves the submission check and the pages, which read the table, and the
worker, which reads the freezes from the audit log instead: a freeze exists
for the worker when an applied configuration request created it and no
applied request deleted it since, each of those entries carrying a valid
HMAC (AUDIT_HMAC_KEY) and linked to the entry after it. A row deleted or
edited in the database lifts nothing; a row inserted there holds nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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


# DTSTART;TZID=Europe/Berlin:20261023T180000, or DTSTART:20261023T160000Z.
DTSTART = re.compile(r"DTSTART(?:;TZID=(?P<tzid>[^:;]+))?:(?P<local>\d{8}T\d{6})(?P<utc>Z?)", re.IGNORECASE)


def _dtstart(line: str, starts_at: datetime) -> datetime:
    """The start a DTSTART line names, in the zone it names; it must be the
    same moment as starts_at (which the pages and the one-off check read)."""
    match = DTSTART.fullmatch(line)
    if match is None:
        raise ValueError(f"Not a DTSTART dateutil reads: {line!r} (e.g. DTSTART;TZID=Europe/Berlin:20261023T180000).")
    local = datetime.strptime(match["local"], "%Y%m%dT%H%M%S")
    if match["utc"]:
        if match["tzid"]:
            raise ValueError("A DTSTART names its zone by TZID or ends in Z for UTC, not both.")
        zone = UTC
    elif match["tzid"]:
        try:
            zone = ZoneInfo(match["tzid"])
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"Unknown time zone {match['tzid']!r}; name one like Europe/Berlin.") from None
    else:
        raise ValueError("Name the DTSTART's time zone (DTSTART;TZID=Europe/Berlin:...) or end it in Z for UTC.")
    start = local.replace(tzinfo=zone)
    if start != starts_at:
        raise ValueError(
            f"The rule starts {start.isoformat()} ({start.astimezone(UTC):%Y-%m-%d %H:%M} UTC), "
            f"but starts_at is {starts_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC; make them the same."
        )
    return start


def parse_rule(text: str, starts_at: datetime):
    """The dateutil rrule for `text`: one RRULE (with or without "RRULE:"),
    optionally after a DTSTART that names a time zone, e.g.
    "DTSTART;TZID=Europe/Berlin:20261023T180000 RRULE:FREQ=WEEKLY;BYDAY=FR".
    Without one, occurrences recur in UTC from starts_at; with one, in that
    zone's wall-clock time, across its daylight-saving changes. ValueError in
    words when it is not one we evaluate."""
    lines = (text or "").split()
    dtstart = starts_at
    if lines and lines[0].upper().startswith("DTSTART"):
        dtstart = _dtstart(lines.pop(0), starts_at)
    body = lines[0] if len(lines) == 1 else ""
    body = body[len("RRULE:") :] if body.upper().startswith("RRULE:") else body
    if not body or "DTSTART" in body.upper() or ":" in body:
        raise ValueError(
            "Give one RRULE, e.g. FREQ=WEEKLY;BYDAY=FR;BYHOUR=16, optionally after a DTSTART naming its time zone "
            "(DTSTART;TZID=Europe/Berlin:20261023T180000 RRULE:FREQ=WEEKLY)."
        )
    try:
        rule = rrulestr(body, dtstart=dtstart, cache=False)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"Not an RRULE dateutil reads: {exc}.") from exc
    if rule._freq not in FREQUENCIES:
        raise ValueError("Recur at most hourly (FREQ=HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY).")
    return rule


def _wall(moment: datetime, zone) -> datetime:
    """`moment` as the wall clock of `zone` shows it (naive)."""
    return moment.astimezone(zone).replace(tzinfo=None)


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
        # In the rule's zone, an occurrence lasts as long on the wall clock
        # as the first (22:00 to 06:00 stays so across a DST change): aware
        # arithmetic in a ZoneInfo zone is wall-clock arithmetic.
        rule = parse_rule(self.rrule, self.starts_at)
        zone = rule._dtstart.tzinfo
        length = _wall(self.ends_at, zone) - _wall(self.starts_at, zone)
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
        return start.astimezone(UTC), end.astimezone(UTC)

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

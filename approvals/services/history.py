"""No replays: before acting, the worker checks that the audit log shows the
ticket approved and just claimed, in a log that verifies up to its head.

The cost per ticket stays constant as the log grows: each worker process
remembers how far it has verified the chain (the entry's seq and hash, and
the log's first hash, which tells one log from another) and the state each
ticket's entries put it in, as read from entries it verified. For a ticket
it verifies only the entries appended since, and reads the ticket's history
from memory. The first check in a process verifies the whole log once.

A database writer can set a finished ticket back to approved (its seals
still verify) but cannot rewrite the log without the key; deleting entries
breaks the chain where they were (caught when walked) or below what this
process already walked, where its memory still has the ticket as it was;
moving the head back below what it verified is refused in words."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Subquery

from approvals.choices import TicketState
from audit.chain import ChainWalker, Signer, canonical_entry
from audit.models import AuditEntry, ChainHead
from audit.verify import CHUNK_SIZE, COLUMNS, configured_witness, verify_chain
from audit.witnessed import WitnessDisowned, WitnessUnavailable


@dataclass
class _TicketLog:
    submitted: bool = False
    state: str = TicketState.PENDING
    said: list[str] = field(default_factory=list)  # states the log moved it to, newest last
    broken: str | None = None  # the first move that does not follow


@dataclass
class _Verified:
    first_hash: str = ""
    seq: int = 0
    hash: str = ""
    tickets: dict[int, _TicketLog] = field(default_factory=dict)


_lock = threading.Lock()
_verified = _Verified()


def forget() -> None:
    """Start over: the next check verifies the whole log again."""
    global _verified
    with _lock:
        _verified = _Verified()


def history_problem(ticket) -> str | None:
    """Why the audit log does not show this ticket as approved and claimed
    now, in words, or None: every state the log shows must follow from the
    one before, from pending on, and end where the ticket is now (claimed by
    this worker just now: running after approved); the log must verify up
    to its head, and the head must hold what the witness saw (when one is
    configured)."""
    with _lock:
        problem, head = _catch_up()
        if problem:
            return problem
        log = _verified.tickets.get(ticket.pk)
    if log is None or not log.submitted:
        return "its submission is not in the audit log"
    if log.broken:
        return log.broken
    said = log.said[::-1]
    expected = [TicketState.RUNNING, TicketState.APPROVED] if ticket.state == TicketState.RUNNING else [ticket.state]
    if said[: len(expected)] != expected:
        return f"the audit log has it {log.state}, not approved and then claimed"
    return _witness_problem(head)


def _catch_up() -> tuple[str | None, tuple[int, str]]:
    """Verify the entries appended since this process last looked, and
    learn the ticket moves they hold: two statements, the head (with the
    log's first hash) and the entries from the last one verified on."""
    global _verified
    first_hash = AuditEntry.objects.filter(seq=1).values("hash")[:1]
    row = ChainHead.objects.filter(id=1).values_list("seq", "hash", Subquery(first_hash)).first()
    if row is None:
        head, first = (0, ""), AuditEntry.objects.filter(seq=1).values_list("hash", flat=True).first() or ""
    else:
        head, first = (row[0], row[1]), row[2] or ""
    if first != _verified.first_hash:
        _verified = _Verified(first_hash=first)  # another log (or the first look): from the start
    known = _verified
    if head[0] < known.seq:
        return f"the log now ends at #{head[0]}, though this worker verified it up to #{known.seq}", head
    if known.seq == 0:
        report = verify_chain(witness=None)
        if not report.ok:
            return f"the audit log does not verify (entry {report.first_broken}: {report.reason})", head
        end = report.checked
        if end < head[0]:
            return f"the audit log does not reach the chain head (#{head[0]})", head
        moves = (
            AuditEntry.objects.filter(seq__lte=end, action__startswith="ticket.")
            .exclude(ticket_id=None)
            .order_by("seq")
            .values_list("ticket_id", "action", "details")
        )
        for ticket_id, action, details in moves.iterator():
            _learn(known, ticket_id, action, details)
        known.seq = end
        known.hash = AuditEntry.objects.filter(seq=end).values_list("hash", flat=True).first() or ""
        return None, head
    problem = _walk_tail(known, head)
    return problem, head


def _walk_tail(known: _Verified, head: tuple[int, str]) -> str | None:
    """Verify the entries from `known.seq` (the last one this process
    verified, whose hash must be unchanged) to the end of the log, as
    audit.verify does (HMAC, link, sequence), and learn their ticket moves."""
    walker = ChainWalker(Signer(settings.AUDIT_HMAC_KEY), from_genesis=False)
    learnt = []
    start = known.seq
    while True:  # a page at a time: one statement while the tail is short
        rows = list(
            AuditEntry.objects.filter(seq__gte=start, seq__lt=start + CHUNK_SIZE).order_by("seq").values_list(*COLUMNS)
        )
        for row in rows:  # COLUMNS: the hashed fields in order, then the hash
            seq, action, ticket_id, details, prev, digest = row[0], row[4], row[5], row[9], row[10], row[11]
            if walker.checked == 0 and (seq != known.seq or digest != known.hash):
                return f"entry #{known.seq} differs from what this worker verified"
            reason = walker.step(seq, prev, digest, canonical_entry(seq, row[1].isoformat(), *row[2:-1]))
            if reason:
                return f"the audit log does not verify (entry {seq}: {reason})"
            if seq > known.seq and ticket_id is not None and action.startswith("ticket."):
                learnt.append((ticket_id, action, details))
        if len(rows) < CHUNK_SIZE:
            break
        start += CHUNK_SIZE
    if walker.checked == 0:
        return f"entry #{known.seq} differs from what this worker verified"
    if walker.last_seq < head[0]:
        return f"the audit log does not reach the chain head (#{head[0]})"
    for move in learnt:
        _learn(known, *move)
    known.seq, known.hash = walker.last_seq, walker.last_hash
    return None


def _learn(known: _Verified, ticket_id: int, action: str, details) -> None:
    log = known.tickets.setdefault(ticket_id, _TicketLog())
    if action == "ticket.submitted":
        log.submitted = True
    if not isinstance(details, dict) or "to" not in details or log.broken:
        return
    if details.get("from") != log.state:
        log.broken = f"the audit log has it move from {details.get('from')} although it was {log.state}"
    log.state = details.get("to")
    log.said = [*log.said[-1:], log.state]


def _witness_problem(head: tuple[int, str]) -> str | None:
    witness = configured_witness()
    if witness is None:
        return None
    try:
        newest = witness.newest()
    except (WitnessUnavailable, WitnessDisowned) as exc:
        return f"the witness cannot vouch for the log ({exc})"
    if newest is None:
        return None
    if newest["seq"] > head[0]:
        return f"entries up to #{newest['seq']} were witnessed; the log now ends at #{head[0]}"
    at = AuditEntry.objects.filter(seq=newest["seq"]).values_list("hash", flat=True).first()
    if at != newest["hash"]:
        return f"entry #{newest['seq']} differs from what the witness saw"
    return None

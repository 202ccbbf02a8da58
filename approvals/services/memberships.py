"""Who holds which role, as the worker believes it: what the audit log says,
never the database's group rows alone. A database writer can add their own
user row to the approver group, or give it break_glass, but cannot write the
audit entry that grants a role (accounts/role_log.py): its HMAC needs the
audit key, which the database does not hold. So an approval counts only when
the approver's membership of the ticket's approver group stands in the
newest role entry of theirs, an emergency only when its requester's
break_glass role does, and a standard change (approved by no person) only
when its requester's requester role does. A membership the database shows
but the log does not fails the ticket, with a finding and an audit entry.

The cost per check stays constant as the log grows: each worker process
remembers the roles each person's newest entry gave, read from entries whose
HMAC it checked, and how far it has read (seq and hash). A check reads the
entries from the last one it read on, in one query: the first must still be
the one it read, and the rest must follow on without a gap; it takes in their
role entries. After a long pause (many entries appended) it counts the new
range instead and reads only its role entries (on the (action, seq) index).
The first check in a process reads the whole log's role entries once. Like the history replay (history.py), an
entry deleted below what this process already read changes nothing: its
memory still has the person as the entry left them."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from accounts.role_log import ROLE_ACTIONS, ROLE_GROUPS
from approvals.choices import Decision, Role
from audit.chain import HASHED_FIELDS
from audit.models import AuditEntry
from audit.verify import COLUMNS
from audit.writer import entry_fields, entry_hash

# Fewer new entries than this are read whole, in one query.
SMALL_SPAN = 500
ACTION, OBJECT_TYPE = COLUMNS.index("action"), COLUMNS.index("object_type")


@dataclass(frozen=True)
class Held:
    username: str
    groups: dict[str, int]  # role name -> group id, as the entry gave them
    seq: int  # the entry that says so


@dataclass
class _Read:
    seq: int = 0
    hash: str = ""
    people: dict[int, Held] = field(default_factory=dict)


_lock = threading.Lock()
_read = _Read()


def forget() -> None:
    """Start over: the next check reads the whole log's role entries again."""
    global _read
    with _lock:
        _read = _Read()


def _learn(known: _Read, row: tuple) -> str | None:
    """Take one role entry (a COLUMNS row) into what this process knows."""
    fields = dict(zip(HASHED_FIELDS, row[:-1], strict=True))
    if entry_hash(entry_fields(**fields)) != row[-1]:
        return f"audit entry #{fields['seq']} ({fields['action']}) does not verify"
    details = fields["details"]
    groups = details.get(ROLE_GROUPS) if isinstance(details, dict) else None
    if isinstance(groups, dict):  # else an entry about the person that does not speak about roles
        username = details.get("username") or details.get("label") or ""
        known.people[int(fields["object_id"])] = Held(str(username), dict(groups), fields["seq"])
    return None


def _is_role_entry(row: tuple) -> bool:
    return row[ACTION] in ROLE_ACTIONS and row[OBJECT_TYPE] == "auth.user"


def _catch_up() -> str | None:
    """Read the role entries appended since this process last looked: in
    one query (from the last entry read on) when few were appended, else by
    counting the new range and reading only its role entries."""
    global _read
    known = _read
    if known.seq:
        rows = list(AuditEntry.objects.filter(seq__gte=known.seq).order_by("seq").values_list(*COLUMNS)[:SMALL_SPAN])
        if rows and rows[0][0] == known.seq and rows[0][-1] == known.hash:
            if len(rows) < SMALL_SPAN:
                return _take(known, rows)
        else:
            # Another log (the history check refuses a rewritten one before
            # this runs): read it from the start.
            known = _read = _Read()
    # The newest entry, not the chain head's row: a head set back would
    # otherwise hide the entries after it from this reading.
    head = AuditEntry.objects.order_by("-seq").values_list("seq", "hash").first() or (0, "")
    if head[0] < known.seq:
        return f"the log now ends at #{head[0]}, though this worker read it up to #{known.seq}"
    span = AuditEntry.objects.filter(seq__gt=known.seq, seq__lte=head[0])
    if span.count() != head[0] - known.seq:
        return f"entries between #{known.seq + 1} and #{head[0]} are missing"
    roles = span.filter(action__in=ROLE_ACTIONS, object_type="auth.user").order_by("seq").values_list(*COLUMNS)
    for row in roles:
        problem = _learn(known, row)
        if problem:
            return problem
    known.seq, known.hash = head
    return None


def _take(known: _Read, rows: list[tuple]) -> str | None:
    """The entries from the last one read to the newest, all in hand."""
    for before, row in itertools.pairwise(rows):
        if row[0] != before[0] + 1:
            return f"entries between #{before[0] + 1} and #{row[0] - 1} are missing"
        if _is_role_entry(row):
            problem = _learn(known, row)
            if problem:
                return problem
    known.seq, known.hash = rows[-1][0], rows[-1][-1]
    return None


def read_roles() -> tuple[str | None, dict[int, Held]]:
    """(problem, {user id: what their newest role entry gave them}), caught
    up with the log; `problem` in words when it cannot be read for roles."""
    with _lock:
        problem = _catch_up()
        return problem, _read.people


def _holds(people: dict[int, Held], user, *, role: str | None = None, group_id: int | None = None) -> bool:
    roles = people.get(user.pk)
    if roles is None or roles.username != user.get_username():
        return False
    return role in roles.groups if role is not None else group_id in roles.groups.values()


def _words(user, roles: Held | None, role: str) -> str:
    name = user.get_username()
    if roles is None:
        return f"{name} holds {role} in the database, but no audit entry ever gave {name} a role"
    if roles.username != name:
        return f"{name} holds {role} in the database, but the audit log gave those roles to {roles.username}"
    had = ", ".join(sorted(roles.groups)) or "none"
    return f"{name} holds {role} in the database, but audit entry #{roles.seq} left {name} with: {had}"


def forged_roles_problem(ticket, decisions) -> str | None:
    """Role memberships the ticket rests on that the database shows and the
    audit log does not, in words, or None: the approvers' membership of the
    ticket's approver group; an emergency's break_glass; a standard change's
    requester role. (A membership the log shows and the database no longer
    does is a role taken away: the usual checks count it for nothing.) When
    the log shows every one, the database is not asked."""
    problem, people = read_roles()
    if ticket.is_emergency or ticket.is_standard:
        requester = ticket.requester
        role = Role.BREAK_GLASS if ticket.is_emergency else Role.REQUESTER
        if not problem and _holds(people, requester, role=role):
            return None
        if not requester.groups.filter(name=role).exists():
            return None
        claims = [(requester, role)]
    else:
        group_id = ticket.approver_group_id
        unlogged = {
            a.approver_id: a.approver
            for a in decisions
            if a.decision == Decision.APPROVE and (problem or not _holds(people, a.approver, group_id=group_id))
        }
        if not unlogged:
            return None
        members = (
            get_user_model()
            .groups.through.objects.filter(group_id=group_id, user_id__in=unlogged)
            .values_list("user_id", flat=True)
        )
        if not members:
            return None
        name = Group.objects.filter(pk=group_id).values_list("name", flat=True).first()
        claims = [(unlogged[pk], name) for pk in sorted(members)]
    if problem:
        return f"the audit log cannot say who holds which role ({problem})"
    return "; ".join(_words(user, people.get(user.pk), role) for user, role in claims)


def logged_roles(user) -> frozenset[str] | None:
    """The roles the audit log says `user` holds now (None: the log cannot
    be read for roles, or no entry ever gave them any)."""
    problem, people = read_roles()
    roles = None if problem else people.get(user.pk)
    return frozenset(roles.groups) if roles is not None and roles.username == user.get_username() else None

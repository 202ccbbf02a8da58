"""The audit chain: every change to the log is caught at the right entry, the
database refuses changes outright, and concurrent writers cannot fork it.
Real PostgreSQL; tampering is done with the triggers off, as a table owner
could."""

import hashlib
import threading
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.chain import canonical
from audit.models import AuditEntry, ChainHead
from audit.verify import verify_chain
from audit.writer import entry_fields, entry_hash, record
from tests.audit.conftest import tamper, triggers_off
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def last_seq() -> int:
    return AuditEntry.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def test_entries_form_a_chain_that_verifies(entries):
    entries(6)
    rows = list(AuditEntry.objects.order_by("seq"))
    assert [e.seq for e in rows] == list(range(1, len(rows) + 1))
    assert rows[0].prev_hash == ""
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(rows, rows[1:], strict=False))
    report = verify_chain()
    assert (report.ok, report.checked, report.first_broken, report.reason) == (True, len(rows), None, "")


def test_hash_is_keyed(entries, settings):
    entries(3)
    assert verify_chain().ok
    # Someone who can write the table but lacks the key cannot rebuild the chain.
    settings.AUDIT_HMAC_KEY = "another-key-" + "x" * 50
    report = verify_chain()
    assert not report.ok and report.first_broken == 1


def test_an_edited_entry_is_named(entries):
    entries(6)
    tamper("UPDATE audit_auditentry SET details = '{\"n\": 99}' WHERE seq = 3")
    report = verify_chain()
    assert (report.ok, report.first_broken) == (False, 3)
    assert "hash mismatch" in report.reason
    assert report.checked == 3


def test_an_edited_actor_on_the_newest_entry_is_named(entries):
    entries(4)
    tamper("UPDATE audit_auditentry SET actor_name = 'someone-else' WHERE seq = 4")
    assert verify_chain().first_broken == 4


def test_a_deleted_entry_breaks_the_chain_at_the_next(entries):
    entries(6)
    tamper("DELETE FROM audit_auditentry WHERE seq = 3")
    report = verify_chain()
    assert (report.ok, report.first_broken) == (False, 4)
    assert "jumps from #2 to #4" in report.reason


def test_deleting_the_first_entry_is_caught(entries):
    entries(3)
    tamper("DELETE FROM audit_auditentry WHERE seq = 1")
    assert verify_chain().first_broken == 2


def test_deleting_the_newest_entries_is_caught_by_the_chain_head(entries):
    entries(6)
    tamper("DELETE FROM audit_auditentry WHERE seq >= 5")
    report = verify_chain()
    assert (report.ok, report.first_broken) == (False, 5)
    assert "missing" in report.reason


def test_reordered_entries_are_named(entries):
    entries(6)
    # Swap #3 and #4 (through negative numbers: seq is unique at every row).
    with triggers_off(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditentry SET seq = -seq WHERE seq IN (3, 4)")
        cursor.execute("UPDATE audit_auditentry SET seq = CASE seq WHEN -3 THEN 4 ELSE 3 END WHERE seq < 0")
    report = verify_chain()
    assert (report.ok, report.first_broken) == (False, 3)


def test_a_forged_entry_is_named(entries):
    entries(5)
    last = AuditEntry.objects.order_by("-seq").first()
    now = timezone.now()
    fields = entry_fields(
        seq=last.seq + 1,
        created_at=now,
        actor_id=None,
        actor_name="worker",
        action="ticket.approved",
        ticket_id=None,
        object_type="",
        object_id="",
        source_ip=None,
        details={},
        prev_hash=last.hash,
    )
    # The forger links it properly and moves the head, but has no HMAC key.
    forged_hash = hashlib.sha256(canonical(fields)).hexdigest()
    with triggers_off():
        AuditEntry.objects.create(
            seq=last.seq + 1,
            created_at=now,
            actor_name="worker",
            action="ticket.approved",
            prev_hash=last.hash,
            hash=forged_hash,
        )
        ChainHead.objects.filter(id=1).update(seq=last.seq + 1, hash=forged_hash)
    report = verify_chain()
    assert (report.ok, report.first_broken) == (False, last.seq + 1)
    assert "hash mismatch" in report.reason


def test_a_forged_entry_in_the_middle_is_named(entries):
    entries(6)
    # Make room at #3 by moving every later entry up, then insert a forgery
    # that links to #2 and is hashed without the key.
    with triggers_off():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE audit_auditentry SET seq = -seq WHERE seq >= 3")
            cursor.execute("UPDATE audit_auditentry SET seq = -seq + 1 WHERE seq < 0")
        second = AuditEntry.objects.get(seq=2)
        AuditEntry.objects.create(
            seq=3,
            created_at=second.created_at,
            actor_name="mallory",
            action="config.user.roles_changed",
            prev_hash=second.hash,
            hash="0" * 64,
        )
    assert verify_chain().first_broken == 3


def test_an_entry_appended_behind_the_writers_back_is_caught(entries):
    entries(3)
    head, now = ChainHead.objects.get(id=1), timezone.now()
    fields = entry_fields(
        seq=head.seq + 1,
        created_at=now,
        actor_id=None,
        actor_name="x",
        action="x",
        ticket_id=None,
        object_type="",
        object_id="",
        source_ip=None,
        details={},
        prev_hash=head.hash,
    )
    # Even with a valid hash (say, the key leaked), the head does not know it.
    AuditEntry.objects.create(
        seq=head.seq + 1,
        created_at=now,
        actor_name="x",
        action="x",
        prev_hash=head.hash,
        hash=entry_hash(fields),
    )
    report = verify_chain()
    assert (report.ok, report.first_broken) == (False, head.seq + 1)
    assert "beyond the chain head" in report.reason


def test_a_contiguous_run_verifies_from_its_own_first_entry(entries):
    entries(8)
    assert verify_chain(AuditEntry.objects.filter(seq__gte=4)).ok
    report = verify_chain(AuditEntry.objects.filter(seq__in=[2, 3, 5]))
    assert (report.ok, report.first_broken) == (False, 5)


def test_small_chunks_give_the_same_answer(entries):
    entries(9)
    assert verify_chain(chunk_size=2).checked == 9
    tamper("UPDATE audit_auditentry SET object_id = 'changed' WHERE seq = 7")
    assert verify_chain(chunk_size=2).first_broken == 7


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditentry SET action = 'x'",
        "DELETE FROM audit_auditentry",
        "TRUNCATE audit_auditentry",
        "UPDATE audit_chainhead SET seq = seq - 1",
        "DELETE FROM audit_chainhead",
    ],
)
def test_postgresql_refuses_changes_to_the_log(entries, statement):
    entries(3)
    with pytest.raises(DatabaseError, match="append-only|only moves one entry forward"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # else TRUNCATE trips on pending FK checks first
            cursor.execute(statement)
    assert AuditEntry.objects.count() == 3 and verify_chain().ok


def test_the_orm_cannot_change_entries_either(entries):
    [entry] = entries(1)
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(action="x")
    with pytest.raises(DatabaseError), transaction.atomic():
        entry.delete()
    assert verify_chain().ok


def test_an_append_costs_the_same_few_queries_however_long_the_log(entries):
    def queries_for_one_append():
        with CaptureQueriesContext(connection) as captured:
            record("test.append")
        return [q["sql"] for q in captured.captured_queries]

    short = queries_for_one_append()
    entries(300)
    long = queries_for_one_append()
    assert len(short) == len(long) <= 5
    # Locks the head row by key, inserts, moves the head: no scans, no aggregates.
    assert not any(word in sql.upper() for sql in long for word in ("COUNT(", "MAX(", "ORDER BY"))


def test_entry_times_never_go_backwards(entries):
    entries(1)
    ahead = timezone.now() + timedelta(hours=1)
    with triggers_off():
        ChainHead.objects.filter(id=1).update(created_at=ahead)
    entry = record("test.after-clock-step")
    assert entry.created_at == ahead
    assert verify_chain().ok


def test_source_addresses_are_stored_as_hashed(db):
    record("test.ip", source_ip="2001:DB8:0:0::1")
    record("test.ip", source_ip="::ffff:10.0.0.1")
    record("test.ip", source_ip="not an address")
    stored = list(AuditEntry.objects.order_by("seq").values_list("source_ip", flat=True))
    assert stored == ["2001:db8::1", "::ffff:10.0.0.1", None]
    assert verify_chain().ok


def test_secrets_never_enter_the_log(db, client):
    UserFactory(username="victim")
    record("test.secret", details={"password": "hunter2-long-secret", "nested": {"token": "abc123-token-value"}})
    client.post("/accounts/login/", {"username": "victim", "password": "wrong-password-value-42"})
    text = " ".join(str(row) for row in AuditEntry.objects.values_list("details", "actor_name", "object_id"))
    for secret in ("hunter2-long-secret", "abc123-token-value", "wrong-password-value-42"):
        assert secret not in text
    failed = AuditEntry.objects.get(action="auth.login_failed")
    assert (failed.actor_name, failed.source_ip) == ("victim", "127.0.0.1")
    assert verify_chain().ok


def test_verify_audit_command_exit_status(entries, capsys):
    entries(4)
    call_command("verify_audit")
    assert "OK: 4 entries verified" in capsys.readouterr().out
    tamper("DELETE FROM audit_auditentry WHERE seq = 2")
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit")
    assert failure.value.returncode == 1
    assert "BROKEN at entry #3" in str(failure.value)


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_do_not_fork_the_chain():
    writers, each = 6, 15
    barrier = threading.Barrier(writers)
    errors = []

    def write(n):
        try:
            barrier.wait()
            for i in range(each):
                record("test.concurrent", actor_name=f"writer{n}", details={"i": i})
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    seqs = list(AuditEntry.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, writers * each + 1))
    assert verify_chain().ok


@pytest.mark.parametrize(
    "values",
    [
        dict(actor_id=None, ticket_id=None, source_ip=None, details={}),
        dict(actor_id=7, ticket_id=42, source_ip="10.0.0.1", details={"b": [1, 2.5, None, True], "a": {"z": "ü"}}),
        dict(
            actor_id=1,
            ticket_id=None,
            source_ip="::1",
            details={"q": 'quote " and \\ backslash', "c": "\x00\n\t\u2028"},
        ),
    ],
)
def test_the_fast_encoding_is_the_canonical_one(values):
    from audit.chain import canonical_entry, hashed_fields

    fields = dict(
        seq=12,
        created_at="2026-11-27T10:00:00.123456+00:00",
        actor_name='Dan "the man" Ö',
        action="ticket.approval",
        object_type="approvals.ticket",
        object_id="=1+2",
        prev_hash="ab" * 32,
        **values,
    )
    assert canonical_entry(**fields) == canonical(hashed_fields(**fields))


@pytest.mark.django_db(transaction=True)
def test_verification_outside_a_transaction_stops_cleanly_at_a_break():
    for i in range(5):
        record("test.committed", details={"i": i})
    with transaction.atomic():
        tamper("DELETE FROM audit_auditentry WHERE seq = 3")
    assert verify_chain().first_broken == 4
    # The cursor of the first walk is gone; the connection works as before.
    assert verify_chain().first_broken == 4
    assert not connection.in_atomic_block and AuditEntry.objects.count() == 4

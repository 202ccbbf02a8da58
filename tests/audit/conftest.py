from contextlib import contextmanager

import pytest
from django.db import connection

from audit.writer import record


@contextmanager
def triggers_off():
    """Let a test change the audit log as a table owner could: its triggers
    off until the block ends (inside the test's transaction, which is rolled
    back afterwards)."""
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        # ALTER TABLE refuses to run while foreign-key checks are pending.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER USER")
        cursor.execute("ALTER TABLE audit_chainhead DISABLE TRIGGER USER")
    try:
        yield connection
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE audit_auditentry ENABLE TRIGGER USER")
            cursor.execute("ALTER TABLE audit_chainhead ENABLE TRIGGER USER")


def tamper(sql: str, params=()):
    with triggers_off(), connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.fixture
def entries(db):
    """write(n) appends n varied entries and returns them."""

    def write(n: int = 6, **common):
        return [
            record(
                "test.event",
                actor_name=f"tester{i % 2}",
                object_type="test.thing",
                object_id=str(i),
                details={"n": i, "note": f"entry {i}", "nested": {"list": [i, "x"]}},
                **common,
            )
            for i in range(n)
        ]

    return write

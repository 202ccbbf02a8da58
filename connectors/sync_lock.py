"""One active inventory sync per connector. On PostgreSQL a session-level
advisory lock on a connection of its own (freed by the server when the
holder dies); on SQLite, the zero-setup default, a file lock in the data
folder (freed by the kernel when the holder dies)."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from django.conf import settings
from django.db import connection


class SyncLock:
    """Held by at most one process per connector name."""

    def __init__(self, name: str):
        self.name = name
        self._conn = None
        self._file = None

    @property
    def key(self) -> int:
        digest = hashlib.sha256(f"twokey-sync:{self.name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False when another process holds it."""
        if connection.vendor == "postgresql":
            conn = connection.get_new_connection(connection.get_connection_params())
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [self.key])
                held = bool(cursor.fetchone()[0])
            if held:
                self._conn = conn
            else:
                conn.close()
            return held
        path = Path(settings.DATA_DIR) / f"sync-{self.name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return True

    def still_held(self) -> bool:
        """Whether the lock is still ours (the database connection holding it
        may have dropped)."""
        if self._file is not None:
            return True
        if self._conn is None:
            return False
        try:
            # A session lock lasts as long as its session: alive means held.
            with self._conn.cursor() as cursor:
                cursor.execute("SELECT 1")
                return True
        except Exception:  # the connection is gone, and the lock with it
            self.release()
            return False

    def release(self) -> None:
        conn, self._conn = self._conn, None
        handle, self._file = self._file, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: S110 - closing a dead connection
                pass
        if handle is not None:
            handle.close()

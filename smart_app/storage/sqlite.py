"""Local SQLite files (sessions, the time-entry outbox, care-plan drafts): one way to open them safely."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

# Switching to WAL or creating tables while another process opens the same file can fail with
# "database is locked" before SQLite's busy timeout applies: retry for this long.
SETUP_RETRY_SECONDS = 30.0


def open_sqlite(
    path: Path | str, schema: Sequence[str], *, timeout: float = 30.0, wal: bool = True
) -> sqlite3.Connection:
    """Open (and create) `path` readable by its owner only, in autocommit mode, with `schema` applied.

    Safe when several threads or processes open the same new file at once.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=timeout)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)
    deadline = time.monotonic() + SETUP_RETRY_SECONDS
    delay = 0.01
    while True:
        try:
            if wal:
                conn.execute("PRAGMA journal_mode=WAL")
            for statement in schema:
                conn.execute(statement)
            return conn
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection, lock: threading.RLock) -> Iterator[sqlite3.Connection]:
    """A write transaction on an autocommit connection: BEGIN IMMEDIATE, COMMIT, or ROLLBACK on error.

    `lock` serialises the threads sharing `conn`; IMMEDIATE makes other processes wait for the file."""
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

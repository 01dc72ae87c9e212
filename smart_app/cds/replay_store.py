"""The CDS `jti` replay cache in the app's database, shared by every process and instance.

Same contract as `smart_app.cds.auth.ReplayCache` (which stays the in-memory version for tests and
single-process use): `check_and_remember(iss, jti, exp, now)` is True once per (iss, jti) until it expires.
On SQLite the file commits with `synchronous=NORMAL` (see StoredReplayCache).
"""

from __future__ import annotations

import threading
from pathlib import Path

from smart_app.cds.auth import LEEWAY
from smart_app.storage import Database, as_database

PURGE_EVERY = 200  # inserts between purges of expired rows


class StoredReplayCache:
    """(iss, jti) pairs remembered in a table until their token expires (plus the clock-skew leeway)."""

    def __init__(self, db: Database | Path | str) -> None:
        self.db = as_database(db)
        self.db.migrate("cds_replay")  # tables: storage/migrations/versions/cds_replay_*.py
        if self.db.dialect == "sqlite":
            # Its own file (DATA_DIR/cds_replay.sqlite3): WAL commits without an fsync each (the default
            # FULL fsyncs every commit: ~6 ms a call, serialised across the service's threads). A commit
            # is still atomic and seen at once by every process; only an OS crash or power loss can drop
            # the last moments' jti rows, whose tokens expire within minutes anyway.
            with self.db.read() as tx:
                tx.run("PRAGMA synchronous=NORMAL")
        self._inserts = 0
        self._lock = threading.Lock()

    def check_and_remember(self, iss: str, jti: str, exp: float, now: float) -> bool:
        """True when (iss, jti) is new (and remember it); False when it is a replay."""
        with self._lock:
            self._inserts += 1
            purge = self._inserts % PURGE_EVERY == 1
        with self.db.transaction() as tx:
            if purge:
                tx.run("DELETE FROM cds_replay WHERE expires < ?", (now - LEEWAY,))
            # An expired row for the same pair no longer counts: replace it.
            tx.run(
                "DELETE FROM cds_replay WHERE iss = ? AND jti = ? AND expires < ?", (iss, jti, now - LEEWAY)
            )
            added = tx.run(
                "INSERT INTO cds_replay (iss, jti, expires) VALUES (?, ?, ?)"
                " ON CONFLICT (iss, jti) DO NOTHING",
                (iss, jti, float(exp)),
            )
        return added == 1

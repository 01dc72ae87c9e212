"""ledger: the hash-chained record of every entry the app captured, and per-server write profiles.

`IF NOT EXISTS`: a ledger.sqlite3 made before migrations (same tables) is adopted as it is.
"""

from __future__ import annotations

from alembic import op

revision = "ledger_0001"
down_revision = None
branch_labels = ("ledger",)
depends_on = None


def upgrade() -> None:
    seq = "BIGINT" if op.get_bind().dialect.name == "postgresql" else "INTEGER"
    op.execute(
        f"CREATE TABLE IF NOT EXISTS ledger (seq {seq} PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
        " kind TEXT NOT NULL, fhir_base TEXT NOT NULL, patient_id TEXT NOT NULL, user_ref TEXT,"
        " recorded TEXT NOT NULL, facts TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"
    )
    op.execute("CREATE INDEX IF NOT EXISTS ledger_patient ON ledger (fhir_base, patient_id)")
    op.execute(
        "CREATE TABLE IF NOT EXISTS write_profile (fhir_base TEXT NOT NULL, resource_type TEXT NOT NULL,"
        " profile TEXT NOT NULL, reason TEXT NOT NULL, updated DOUBLE PRECISION NOT NULL,"
        " PRIMARY KEY (fhir_base, resource_type))"
    )


def downgrade() -> None:
    op.execute("DROP TABLE write_profile")
    op.execute("DROP TABLE ledger")

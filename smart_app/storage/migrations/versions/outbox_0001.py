"""outbox: time entries and consents waiting to be written to the EHR."""

from __future__ import annotations

from alembic import op

revision = "outbox_0001"
down_revision = None
branch_labels = ("outbox",)
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
        ' fhir_base TEXT NOT NULL, patient_id TEXT NOT NULL, mode TEXT NOT NULL, "user" TEXT,'
        " payload TEXT NOT NULL,"
        " summary TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " next_attempt DOUBLE PRECISION NOT NULL, last_error TEXT, created DOUBLE PRECISION NOT NULL,"
        " saved_at DOUBLE PRECISION, result TEXT)"
    )
    op.execute("CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt)")
    op.execute("CREATE INDEX IF NOT EXISTS outbox_patient ON outbox (fhir_base, patient_id)")


def downgrade() -> None:
    op.execute("DROP TABLE outbox")

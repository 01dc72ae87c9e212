"""remittance: claims handed off, remittances loaded (835 / FHIR) and their service lines.

Amounts are TEXT (exact decimals). `IF NOT EXISTS`: a remittance.sqlite3 made before migrations is adopted.
"""

from __future__ import annotations

from alembic import op

revision = "remittance_0001"
down_revision = None
branch_labels = ("remittance",)
depends_on = None


def upgrade() -> None:
    rid = "BIGINT" if op.get_bind().dialect.name == "postgresql" else "INTEGER"
    op.execute(
        "CREATE TABLE IF NOT EXISTS claims (claim_id TEXT PRIMARY KEY, patient TEXT NOT NULL,"
        " month TEXT NOT NULL, medicare_id TEXT, codes TEXT NOT NULL, billed TEXT NOT NULL,"
        " verdict_id TEXT NOT NULL, verdict_status TEXT NOT NULL, rendering_npi TEXT, billing_npi TEXT,"
        " created TEXT NOT NULL)"
    )
    op.execute(
        f"CREATE TABLE IF NOT EXISTS remittances (id {rid} PRIMARY KEY, rkey TEXT NOT NULL UNIQUE,"
        " source TEXT NOT NULL, file_name TEXT, payer TEXT, payer_id TEXT, trace TEXT, paid_date TEXT,"
        " total_paid TEXT NOT NULL, loaded TEXT NOT NULL)"
    )
    op.execute(
        f"CREATE TABLE IF NOT EXISTS lines (remittance_id {rid} NOT NULL REFERENCES remittances(id),"
        " seq INTEGER NOT NULL, claim_id TEXT, claim_status TEXT, payer_claim TEXT, member_id TEXT,"
        " patient TEXT, month TEXT, code TEXT, units INTEGER, charge TEXT NOT NULL, paid TEXT NOT NULL,"
        " outcome TEXT NOT NULL, service_date TEXT, adjustments TEXT NOT NULL, remarks TEXT NOT NULL,"
        " matched TEXT NOT NULL, PRIMARY KEY (remittance_id, seq))"
    )
    op.execute("CREATE INDEX IF NOT EXISTS lines_month ON lines (month)")


def downgrade() -> None:
    op.execute("DROP TABLE lines")
    op.execute("DROP TABLE remittances")
    op.execute("DROP TABLE claims")

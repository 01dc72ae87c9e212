"""careplan_drafts: one kept care-plan draft per (FHIR server, patient, user or browser session)."""

from __future__ import annotations

from alembic import op

revision = "careplan_drafts_0001"
down_revision = None
branch_labels = ("careplan_drafts",)
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE TABLE IF NOT EXISTS drafts (key TEXT PRIMARY KEY, payload TEXT NOT NULL, "
        "state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', updated DOUBLE PRECISION NOT NULL)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE drafts")

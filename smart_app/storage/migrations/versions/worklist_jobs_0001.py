"""worklist_jobs: worklist jobs (progress, heartbeat) and their results, shared by every instance."""

from __future__ import annotations

from alembic import op

revision = "worklist_jobs_0001"
down_revision = None
branch_labels = ("worklist_jobs",)
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE TABLE IF NOT EXISTS worklist_jobs (key TEXT PRIMARY KEY, stage TEXT NOT NULL,"
        " done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0, error TEXT, result TEXT,"
        " started DOUBLE PRECISION NOT NULL, finished DOUBLE PRECISION, owner TEXT,"
        " heartbeat DOUBLE PRECISION NOT NULL)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE worklist_jobs")

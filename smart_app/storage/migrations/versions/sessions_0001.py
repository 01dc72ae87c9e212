"""sessions: one row per browser session (data, launch context, OAuth metadata)."""

from __future__ import annotations

from alembic import op

revision = "sessions_0001"
down_revision = None
branch_labels = ("sessions",)
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, data TEXT NOT NULL,"
        " context TEXT, oauth TEXT, touched DOUBLE PRECISION NOT NULL)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE sessions")

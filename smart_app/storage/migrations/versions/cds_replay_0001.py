"""cds_replay: (iss, jti) pairs of CDS Hooks tokens already seen, until they expire."""

from __future__ import annotations

from alembic import op

revision = "cds_replay_0001"
down_revision = None
branch_labels = ("cds_replay",)
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE TABLE IF NOT EXISTS cds_replay (iss TEXT NOT NULL, jti TEXT NOT NULL,"
        " expires DOUBLE PRECISION NOT NULL, PRIMARY KEY (iss, jti))"
    )
    op.execute("CREATE INDEX IF NOT EXISTS cds_replay_expires ON cds_replay (expires)")


def downgrade() -> None:
    op.execute("DROP TABLE cds_replay")

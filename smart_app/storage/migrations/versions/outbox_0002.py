"""outbox: who holds a `sending` lease (instance:pid), so a stopping process can hand its leases back."""

from __future__ import annotations

from alembic import op

revision = "outbox_0002"
down_revision = "outbox_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE outbox ADD COLUMN lease_owner TEXT")


def downgrade() -> None:
    op.execute("ALTER TABLE outbox DROP COLUMN lease_owner")

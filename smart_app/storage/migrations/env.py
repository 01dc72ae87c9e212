"""Alembic environment for CCM Ready: one migration branch per store (`versions/`), no ORM metadata.

The app runs it through `smart_app.storage.schema.upgrade`, which passes an open connection (inside a
transaction holding the migration lock) in `config.attributes["connection"]`. From a shell, use
`python -m smart_app.storage.schema` (it does the same), not the `alembic` command on its own.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run CCM Ready's migrations with `python -m smart_app.storage.schema upgrade`")
context.configure(
    connection=connection,
    target_metadata=None,
    on_version_apply=context.config.attributes.get("on_version_apply") or (),
)
with context.begin_transaction():  # joins the caller's transaction (committed by the caller)
    context.run_migrations()

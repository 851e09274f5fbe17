"""Alembic's environment: migrations run on the connection core.history.migrate hands over, never their own."""

from __future__ import annotations

from alembic import context

from core.history.schema import metadata


def run() -> None:
    """Run the pending migrations on the caller's connection, in its transaction."""
    config = context.config
    if context.is_offline_mode():
        context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `python -m core.history upgrade` (core.history.migrate)")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters tables by copying them; batch mode does that for later migrations.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run()

"""Alembic's entry point for the desk's migrations: run by ``triage.desk.store.migrate``
(with the connection it opened) or by the ``alembic`` command with ``-x url=...``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from triage.desk.schema import metadata

config = context.config
target_metadata = metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url")
    if not url:
        raise SystemExit("desk migrations: give the database, e.g. alembic -x url=sqlite:///desk.db")
    engine = create_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
